"""What the commands print: tables and times, one way everywhere."""

from __future__ import annotations

import time


def table(rows, headers) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers, tablefmt="simple") if rows else "(none)"


def when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def left(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    secs = int(ts - now)
    if secs <= 0:
        return "expired"
    if secs >= 86400:
        return f"in {secs // 86400}d{secs % 86400 // 3600}h"
    if secs >= 3600:
        return f"in {secs // 3600}h{secs % 3600 // 60:02d}m"
    return f"in {secs // 60}m" if secs >= 60 else f"in {secs}s"
