"""Bringing PortSentry history files (1.2 and 2.x) into the shared events table, each file
from where the last import stopped."""

from __future__ import annotations

from pathlib import Path

from nightwarden.lib.portsentry import read_history


def import_file(state, path: Path) -> tuple[int, list[str]]:
    """Bring new lines of a history file into state; a cursor remembers how far it got."""
    key = f"history:{path}"
    cursor = state.get_cursor(key) or {}
    try:
        st = path.stat()
    except OSError as e:
        return 0, [f"{path}: cannot read: {e.strerror}"]
    start = (
        cursor.get("line", 0)
        if cursor.get("inode") == st.st_ino and cursor.get("size", 0) <= st.st_size
        else 0
    )
    result = read_history(path, start)
    lines = start + len(result.rows) + len(result.errors)
    with state:
        state.add_events(
            [
                (t, "scan", ip, port, proto, "portsentry", {"type": kind, "blocked": blocked})
                for t, ip, port, proto, kind, blocked in result.rows
            ]
        )
        state.set_cursor(key, {"inode": st.st_ino, "size": st.st_size, "line": lines})
    return len(result.rows), result.errors
