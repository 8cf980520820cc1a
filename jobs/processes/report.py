"""The daily report's processes part: what the processes job found in the period (suspicious
processes, resource use, process counts, load, kills), from its events."""

from __future__ import annotations

import json

KINDS = {
    "process": "suspicious",
    "process_resource": "resource",
    "process_count": "processes",
    "load": "load",
    "process_killed": "killed",
}
SHOWN = 50  # rows in the table; the count says how many there were


def findings(state, since: float, until: float) -> list[tuple[float, str, dict]]:
    """(time, kind, detail) of the period, oldest first."""
    out = []
    for kind in KINDS:
        for e in state.events(since, until, kind=kind):
            try:
                detail = json.loads(e["detail"] or "{}")
            except ValueError:
                detail = {}
            out.append((e["time"], kind, detail))
    return sorted(out, key=lambda r: r[0])


def describe(kind: str, d: dict) -> tuple[str, str, str]:
    """(user, pid, what) of one finding."""
    user, pid = str(d.get("user", "-")), str(d.get("pid", "-"))
    if kind == "process":
        return user, pid, f"{d.get('exe', '?')}: {'; '.join(d.get('why', []))}"
    if kind in ("process_resource", "process_killed"):
        what = (
            f"{d.get('resource', '?')} {d.get('value', '?')} over {d.get('limit', '?')} ({d.get('exe', '?')})"
        )
        return user, pid, ("killed: " if kind == "process_killed" else "") + what
    if kind == "process_count":
        return user, "-", f"{d.get('count', '?')} processes, over {d.get('limit', '?')}"
    loads = " ".join(f"{x:.2f}" for x in d.get("loads", []))
    return "-", "-", f"load {loads} over {d.get('level', '?')}"


def section(state, since: float, until: float, when) -> dict:
    rows = findings(state, since, until)
    table = [[when(t), KINDS[kind], *describe(kind, d)] for t, kind, d in rows[-SHOWN:]]
    note = f"{len(rows)} in all; the newest {SHOWN} shown." if len(rows) > SHOWN else ""
    return {
        "title": "Processes",
        "headers": ["time", "kind", "user", "pid", "what"],
        "rows": table,
        "note": note,
    }
