"""A race-free walk of world-writable directories, looking for suspicious entries.

This runs as root where any user can write, so: every directory is opened relative to its
parent's descriptor with O_NOFOLLOW and checked to be the one examined; files are opened the
same way (O_NONBLOCK, so a FIFO swapped in cannot hang us) and read through that descriptor;
symlinked directories are never descended; other file systems are never entered; at most
max_depth directory descriptors are open at once. The walk hands each finding to a handler
while the directory descriptor (and the file's) are still open.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ignore import IgnoreRules

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
HEAD = 4096
BAD_CHARS = re.compile(rb"[;|`\\]")
CORE_NAME = re.compile(rb"^core(\.\d+)?$")


@dataclass
class Finding:
    path: bytes
    kind: str  # "file", "symlink", "dir", "other"
    reasons: list[str]
    st: os.stat_result
    link_target: bytes | None = None


@dataclass
class SweepStats:
    dirs: int = 0
    entries: int = 0
    examined: int = 0  # files whose content was read
    ignored: int = 0
    findings: int = 0
    skipped: list[str] = field(default_factory=list)  # what was left out, and why
    stopped: str = ""  # why the sweep stopped early, if it did


class Detector:
    """The detection rules, each with the reason it gives."""

    def __init__(self, qcfg: dict):
        self.rules = set(qcfg.rules)
        self.extensions = tuple(e.lower().encode() for e in qcfg.extensions)
        self.exploits = [n.lower().encode() for n in qcfg.exploit_names]

    def by_name(self, name: bytes, kind: str) -> list[str]:
        reasons = []
        lower = name.lower()
        if "bad_name" in self.rules and (BAD_CHARS.search(name) or name.startswith(b"-")):
            reasons.append("dangerous characters in the name")
        if "exploit_name" in self.rules:
            hit = next((e for e in self.exploits if e in lower), None)
            if hit:
                reasons.append(f"known exploit name ({hit.decode()})")
        if kind == "dir" and "hidden_dir" in self.rules:
            if not name.strip() or name.strip(b". ") == b"" or name.startswith(b"."):
                reasons.append("hidden or blank directory name")
        if kind == "file":
            if "extension" in self.rules and lower.endswith(self.extensions):
                reasons.append(f"script extension {os.path.splitext(lower)[1].decode(errors='replace')}")
            if "core" in self.rules and CORE_NAME.match(name):
                reasons.append("core dump name")
        return reasons

    def wants_content(self) -> bool:
        return bool(self.rules & {"elf", "shebang", "core"})

    def by_content(self, head: bytes) -> list[str]:
        if head.startswith(b"\x7fELF") and len(head) >= 18:
            little = head[5] == 1
            e_type = int.from_bytes(head[16:18], "little" if little else "big")
            if e_type == 4 and "core" in self.rules:
                return ["core dump"]
            if "elf" in self.rules:
                return ["ELF binary"]
        if head.startswith(b"#!") and "shebang" in self.rules:
            interp = head[2:].split(b"\n", 1)[0].strip()[:60].decode("utf-8", "replace")
            return [f"script (#!{interp})"]
        return []


class Handler:
    """What to do with findings. Called with the directory descriptor still open."""

    def file(self, dfd: int, name: str, finding: Finding, fd: int) -> None: ...
    def symlink(self, dfd: int, name: str, finding: Finding) -> None: ...
    def report(self, finding: Finding) -> None: ...
    def too_large(self, finding: Finding, fd: int) -> None: ...
    def over_limit(self, finding: Finding) -> None: ...
    def begin(self, deadline: float) -> None: ...
    def directory_done(self, dfd: int, moved: bool = False) -> None: ...


class Sweep:
    def __init__(self, qcfg: dict, ignore: IgnoreRules, handler: Handler):
        self.cfg = qcfg
        self.detector = Detector(qcfg)
        self.ignore = ignore
        self.handler = handler
        self.stats = SweepStats()
        self.deadline = 0.0
        self._top: set[str] | None = None  # the top-level names to look at (None: all)
        self.progress = None  # a lib.progress.Progress for a person at a terminal

    def run(self, roots: list[Path], only: dict[Path, set[str]] | None = None) -> SweepStats:
        """Walk the roots; with `only`, just the named top-level entries of each root in it
        (what arrived there: the listener's sweep on arrival), the rest of the walk the same."""
        self.deadline = time.monotonic() + self.cfg.time_limit
        self.handler.begin(self.deadline)
        seen: set[tuple[int, int]] = set()
        for root in roots:
            self._top = None if only is None else only.get(root)
            if only is not None and not self._top:
                continue
            try:
                fd = os.open(root, OPEN_DIR)
            except FileNotFoundError:
                continue
            except OSError as e:
                self.stats.skipped.append(f"{root}: not opened ({e.strerror}; a symlink is never followed)")
                continue
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in seen:  # /var/tmp bound onto /tmp, say
                os.close(fd)
                continue
            seen.add((st.st_dev, st.st_ino))
            try:
                self._walk(fd, os.fsencode(root), st.st_dev, 0, None)
            finally:
                os.close(fd)
            if self.stats.stopped:
                break
        return self.stats

    def _limit_hit(self) -> bool:
        if time.monotonic() > self.deadline:
            self.stats.stopped = f"time limit of {self.cfg.time_limit} s reached"
        return bool(self.stats.stopped)

    def _walk(self, dfd: int, dpath: bytes, dev: int, depth: int, hidden: bytes | None) -> None:
        self.stats.dirs += 1
        try:
            with os.scandir(dfd) as it:
                names = sorted(e.name for e in it if depth or self._top is None or e.name in self._top)
        except OSError as e:
            self.stats.skipped.append(f"{dpath.decode(errors='replace')}: cannot list ({e.strerror})")
            return
        subdirs = []
        try:
            for name in names:
                if self._limit_hit():
                    return
                self.stats.entries += 1
                if self.progress is not None:
                    self.progress.update(self.stats.entries)
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except OSError:
                    continue  # vanished: nothing to do
                bname = os.fsencode(name)
                path = dpath.rstrip(b"/") + b"/" + bname
                if self.ignore.ignores(path, st.st_uid) or (
                    self.cfg.ignore_root and st.st_uid == 0 and not stat.S_ISDIR(st.st_mode)
                ):
                    self.stats.ignored += 1
                    continue
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append((name, bname, path, st))
                elif stat.S_ISLNK(st.st_mode):
                    self._symlink(dfd, name, bname, path, st, hidden)
                elif stat.S_ISREG(st.st_mode):
                    self._file(dfd, name, bname, path, st, hidden)
                else:
                    reasons = self.detector.by_name(bname, "other")
                    if reasons:
                        finding = Finding(path, "other", reasons, st)
                        self._found(finding)
                        self.handler.report(finding)
        finally:  # what this directory gave is committed while its descriptor is open
            moved = not self._in_place(dfd, dpath)
            self.handler.directory_done(dfd, moved)
        if moved:
            self.stats.skipped.append(
                f"{dpath.decode(errors='replace')}: left the watched tree during the sweep; "
                "its files were left in place and it was not entered further"
            )
            return
        for name, bname, path, st in subdirs:
            self._descend(dfd, name, bname, path, st, dev, depth, hidden)
            if self.stats.stopped:
                return

    @staticmethod
    def _in_place(dfd: int, dpath: bytes) -> bool:
        """The directory is still where the walk found it: its path leads to its inode."""
        try:
            there = os.stat(dpath, follow_symlinks=False)
        except OSError:
            return False
        here = os.fstat(dfd)
        return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)

    def _descend(self, dfd, name, bname, path, st, dev, depth, hidden) -> None:
        shown = path.decode(errors="replace")
        if st.st_dev != dev:
            self.stats.skipped.append(f"{shown}: another file system; not entered")
            return
        if depth + 1 > self.cfg.max_depth:
            self.stats.skipped.append(f"{shown}: deeper than {self.cfg.max_depth} levels; not entered")
            return
        reasons = self.detector.by_name(bname, "dir")
        if reasons and not (self.cfg.ignore_root and st.st_uid == 0):
            finding = Finding(path, "dir", reasons, st)
            self._found(finding)
            self.handler.report(finding)
            if "hidden or blank directory name" in reasons and hidden is None:
                hidden = path
        try:
            sub = os.open(name, OPEN_DIR, dir_fd=dfd)
        except OSError:
            return  # swapped for a symlink, or gone
        try:
            now = os.fstat(sub)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                self.stats.skipped.append(f"{shown}: changed during the sweep; not entered")
                return
            self._walk(sub, path, dev, depth + 1, hidden)
        finally:
            os.close(sub)

    def _found(self, finding: Finding) -> None:
        self.stats.findings += 1

    def _symlink(self, dfd, name, bname, path, st, hidden) -> None:
        if "symlink" not in self.detector.rules:
            return
        try:
            target = os.readlink(name, dir_fd=dfd)
        except OSError:
            return
        finding = Finding(path, "symlink", [f"symbolic link to {target}"], st, os.fsencode(target))
        self._found(finding)
        if self.stats.findings > self.cfg.max_files:
            self.handler.over_limit(finding)
        else:
            self.handler.symlink(dfd, name, finding)

    def _file(self, dfd, name, bname, path, st, hidden) -> None:
        reasons = self.detector.by_name(bname, "file")
        if hidden is not None:
            reasons.append(f"in a hidden directory ({hidden.decode(errors='replace')})")
        fd = None
        try:
            if reasons or self.detector.wants_content():
                try:
                    fd = os.open(name, OPEN_FILE, dir_fd=dfd)
                except OSError:
                    return  # swapped for a symlink, or gone
                now = os.fstat(fd)
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
                    return  # not what we examined: leave it
                st = now
                self.stats.examined += 1
                if self.detector.wants_content():
                    reasons += [
                        r for r in self.detector.by_content(os.pread(fd, HEAD, 0)) if r not in reasons
                    ]
            if not reasons:
                return
            finding = Finding(path, "file", reasons, st)
            self._found(finding)
            if self.stats.findings > self.cfg.max_files:
                self.handler.over_limit(finding)
            elif st.st_size > self.cfg.max_size:
                self.handler.too_large(finding, fd)
            else:
                self.handler.file(dfd, name, finding, fd)
        finally:
            if fd is not None:
                os.close(fd)
