"""What is suspicious about one process, from /proc (through psutil where it reads well): an
executable deleted since it started, one in a directory anyone can write, a name that pretends
(a kernel thread's [brackets] on a process with an executable; an absolute argv[0] that is
another program). Everything read is the process's own word only where the kernel keeps it:
the executable's path comes from /proc/PID/exe, never from the command line."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from nightwarden.lib.cli.output import printable

DELETED = " (deleted)"


@dataclass
class Proc:
    """What the pass keeps of a process it judged (not root's unless all_users, not ignored)."""

    pid: int
    started: float
    user: str
    ppid: int
    exe: str
    cmdline: str


@dataclass
class Finding(Proc):
    """A process and what is wrong with it; details: lfd's sockets, files and maps."""

    reasons: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)


def _exe_link(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:  # a kernel thread, gone, or not ours to read
        return None


def _in_writable(path: str, writable: list[str], dirs: dict) -> str | None:
    """The directory anyone can write that holds path: a listed one, or its own directory
    when that is world-writable. dirs: what was found of each directory in this pass."""
    for d in writable:
        if path == d or path.startswith(d.rstrip("/") + "/"):
            return d
    parent = os.path.dirname(path)
    open_to_all = dirs.get(parent)
    if open_to_all is None:
        try:
            open_to_all = dirs[parent] = bool(os.stat(parent).st_mode & stat.S_IWOTH)
        except OSError:
            return None
    return parent if open_to_all else None


def examine(pid: int, argv: list[str], cfg, writable: list[str], dirs: dict) -> tuple[str, list[str]]:
    """(executable, reasons): the reasons are empty for a process that looks as it should.
    dirs: a per-pass cache of which directories anyone can write."""
    link = _exe_link(pid)
    if link is None:
        return "", []
    deleted = link.endswith(DELETED)
    exe = link[: -len(DELETED)] if deleted else link
    reasons = []
    shown = printable(exe)
    if cfg.deleted and deleted:
        reasons.append(f"its executable {shown} was deleted since it started")
    if cfg.writable:
        where = _in_writable(exe, writable, dirs)
        if where is not None:
            reasons.append(f"it runs from {printable(where)}, which anyone can write")
    if cfg.names and argv:
        first = argv[0]
        if first.startswith("[") and first.rstrip().endswith("]"):
            reasons.append(f"it calls itself {first[:60]!r}, a kernel thread's name, but runs {shown}")
        elif first.startswith("/") and not deleted:
            try:
                claimed = os.path.realpath(first)
            except (OSError, ValueError):
                claimed = first
            if claimed != exe and os.path.basename(claimed) != os.path.basename(exe):
                reasons.append(f"its argv[0] says {printable(first[:80])} but it runs {shown}")
    return exe, reasons
