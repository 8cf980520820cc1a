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


def iso(ts: float | None) -> str | None:
    """A time for JSON: ISO 8601 in UTC, seconds."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def duration(seconds: int | None) -> str:
    """A TTL as a person writes it: 6h, 30m, 7d, 90s (0 or None: until purged)."""
    if not seconds:
        return "until purged"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cut(text, width: int, middle: bool = False) -> str:
    """At most `width` characters; a cut says so with an ellipsis (in the middle for a path,
    so that its file name stays)."""
    text = str(text)
    if len(text) <= width:
        return text
    if middle:
        head = (width - 1) // 2
        return text[:head] + "\u2026" + text[len(text) - (width - 1 - head) :]
    return text[: width - 1] + "\u2026"


def printable(value: str | bytes) -> str:
    """Text to show: bytes that are not UTF-8, and control characters (a newline in a file
    name that would start a line of its own in a mail), escaped."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
