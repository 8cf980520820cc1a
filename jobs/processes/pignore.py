"""csf.pignore's format: `exe:/path`, `user:name`, `cmd:command line`, and the regular
expression forms `pexe:` and `pcmd:`. A bad line is said with file:line and skipped; a file
that cannot be read is said and its rules are missing (the job reports more, never less)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nightwarden.lib.fsutil import read_regular

KINDS = ("exe", "user", "cmd", "pexe", "pcmd")
MAX_FILE = 1 << 20


@dataclass
class IgnoreList:
    exes: set = field(default_factory=set)
    users: set = field(default_factory=set)
    cmds: set = field(default_factory=set)
    exe_patterns: list = field(default_factory=list)
    cmd_patterns: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def ignores(self, user: str, exe: str, cmdline: str) -> bool:
        return (
            user in self.users
            or exe in self.exes
            or cmdline in self.cmds
            or any(p.fullmatch(exe) for p in self.exe_patterns)
            or any(p.fullmatch(cmdline) for p in self.cmd_patterns)
        )


def parse(text: str, origin: str, into: IgnoreList) -> None:
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, value = line.partition(":")
        kind = kind.strip().lower()
        value = value.strip()
        if not sep or kind not in KINDS or not value:
            into.errors.append(f"{origin}:{n}: not one of {', '.join(k + ':' for k in KINDS)}: {raw[:80]!r}")
            continue
        if kind in ("pexe", "pcmd"):
            try:
                pattern = re.compile(value)
            except re.error as e:
                into.errors.append(f"{origin}:{n}: bad regular expression: {e}")
                continue
            (into.exe_patterns if kind == "pexe" else into.cmd_patterns).append(pattern)
        else:
            {"exe": into.exes, "user": into.users, "cmd": into.cmds}[kind].add(value)


def load(files: list[Path]) -> IgnoreList:
    out = IgnoreList()
    for path in files:
        try:
            text = read_regular(path, MAX_FILE, "process ignore list", follow=True).decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        except Exception as e:  # said, never fatal: without the rules more is reported, not less
            out.errors.append(f"{path}: {getattr(e, 'message', None) or e}")
            continue
        parse(text, str(path), out)
    return out
