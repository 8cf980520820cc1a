"""Comparing a scan with the database: added, removed, and changed entries with the before
and after of every attribute the entry's rule checks."""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass, field

from .attrs import ACL_ACCESS, ACL_DEFAULT, CAPABILITY, acl_text, caps_text, flag_names, flags_text
from .policy import GROWING_IGNORES
from .scan import CTIME, FLAGS, GID, INODE, MODE, MTIME, NLINK, SHA256, SIZE, TARGET, TYPE, UID, XATTRS

SPECIAL_XATTRS = (ACL_ACCESS, ACL_DEFAULT, CAPABILITY)
TYPES = {
    "f": "regular file",
    "d": "directory",
    "l": "symbolic link",
    "p": "FIFO",
    "c": "character device",
    "b": "block device",
    "s": "socket",
}


@dataclass
class Change:
    path: str
    severity: str
    attrs: list[tuple[str, str, str]]  # (attribute, before, after)
    explained: str = ""  # "explained by the upgrade of package X at T"


@dataclass
class Comparison:
    added: list[tuple[str, str, str]] = field(default_factory=list)  # (path, severity, what)
    removed: list[tuple[str, str, str]] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def exit_bits(self) -> int:
        return (
            (1 if self.added else 0)
            | (2 if self.removed else 0)
            | (4 if any(not c.explained for c in self.changed) else 0)
        )


def mode_text(mode: int, kind: str) -> str:
    text = f"{mode:04o}"
    notes = [
        n
        for bit, n in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky"))
        if mode & bit
    ]
    return text + (f" ({', '.join(notes)})" if notes else "")


def _ts(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9)) + f".{ns % 10**9:09d}"[:4]


def _plain_xattrs(x: dict) -> dict:
    return {k: v for k, v in x.items() if k not in SPECIAL_XATTRS}


def _hex(x: dict, name: str) -> bytes | None:
    return bytes.fromhex(x[name]) if name in x else None


def describe(rec: list) -> str:
    kind = TYPES.get(rec[TYPE], rec[TYPE])
    extra = f" -> {rec[TARGET]}" if rec[TYPE] == "l" else ""
    return (
        f"{kind}, mode {mode_text(rec[MODE], rec[TYPE])}, uid {rec[UID]}, gid {rec[GID]}, "
        f"size {rec[SIZE]}{extra}"
    )


def diff_record(old: list, new: list, attrs: frozenset, growing: bool) -> list[tuple[str, str, str]]:
    out = []
    if old[TYPE] != new[TYPE]:
        return [("type", TYPES.get(old[TYPE], old[TYPE]), TYPES.get(new[TYPE], new[TYPE]))]
    checks = [
        ("mode", MODE, lambda r: mode_text(r[MODE], r[TYPE])),
        ("uid", UID, lambda r: str(r[UID])),
        ("gid", GID, lambda r: str(r[GID])),
        ("size", SIZE, lambda r: str(r[SIZE])),
        ("inode", INODE, lambda r: str(r[INODE])),
        ("nlink", NLINK, lambda r: str(r[NLINK])),
        ("mtime", MTIME, lambda r: _ts(r[MTIME])),
        ("ctime", CTIME, lambda r: _ts(r[CTIME])),
        ("target", TARGET, lambda r: str(r[TARGET])),
        ("sha256", SHA256, lambda r: str(r[SHA256])),
    ]
    skip = GROWING_IGNORES if growing else set()
    for name, index, show in checks:
        if name in attrs and name not in skip and old[index] != new[index]:
            if name in ("mtime", "ctime") and old[TYPE] == "d":
                continue  # a directory's times move with every entry in it
            out.append((name, show(old), show(new)))
    if growing and new[SIZE] < old[SIZE]:
        out.append(("size", f"{old[SIZE]}", f"{new[SIZE]} (shrank: this file may only grow)"))
    ox, nx = old[XATTRS], new[XATTRS]
    if "xattrs" in attrs and _plain_xattrs(ox) != _plain_xattrs(nx):
        a, b = _plain_xattrs(ox), _plain_xattrs(nx)
        names = sorted(set(a) | set(b))
        out.append(
            (
                "xattrs",
                ", ".join(f"{n}={a[n][:32]}" for n in names if n in a) or "none",
                ", ".join(f"{n}={b[n][:32]}" for n in names if n in b) or "none",
            )
        )
    if "acl" in attrs:
        for name, label in ((ACL_ACCESS, "acl"), (ACL_DEFAULT, "default acl")):
            if ox.get(name) != nx.get(name):
                out.append((label, acl_text(_hex(ox, name)) or "none", acl_text(_hex(nx, name)) or "none"))
    if "caps" in attrs and ox.get(CAPABILITY) != nx.get(CAPABILITY):
        out.append(
            ("caps", caps_text(_hex(ox, CAPABILITY)) or "none", caps_text(_hex(nx, CAPABILITY)) or "none")
        )
    if "flags" in attrs and old[FLAGS] != new[FLAGS]:
        out.append(
            (
                "flags",
                f"{flags_text(old[FLAGS])} ({flag_names(old[FLAGS])})",
                f"{flags_text(new[FLAGS])} ({flag_names(new[FLAGS])})",
            )
        )
    return out


def compare(old: dict[str, list], new: dict[str, list], policy) -> Comparison:
    result = Comparison()
    for path in sorted(new.keys() - old.keys()):
        result.added.append((path, policy.rule_for(path).severity, describe(new[path])))
    for path in sorted(old.keys() - new.keys()):
        result.removed.append((path, policy.rule_for(path).severity, describe(old[path])))
    for path in sorted(old.keys() & new.keys()):
        if old[path] == new[path]:
            continue
        rule = policy.rule_for(path)
        attrs = diff_record(old[path], new[path], rule.attrs, rule.growing)
        if attrs:
            result.changed.append(Change(path, rule.severity, attrs))
    return result
