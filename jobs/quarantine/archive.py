"""The quarantine archive: suspicious files appended to a tar archive that `tar -xpf`
restores with path, owner, mode and mtime, a manifest row per file in state, and the
original removed only once both are safely written and only if it is still the same inode.

Crash safety: the archive's committed length is kept in state. Members are appended after
it, the file is fsynced, then the manifest rows and the new length are committed in one
transaction, then the originals are removed. A run that dies half-way leaves a tail that the
next run cuts off (and originals still in place, which it quarantines again).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nightwarden.lib.cli.output import printable
from nightwarden.lib.errors import CantCreateError, DataError, NoInputError
from nightwarden.lib.fsutil import ensure_dir

from .settings import archive_dir
from .store import QuarantineStore
from .sweep import Finding, Handler

CHUNK = 1 << 20


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def member_name(path: bytes) -> str:
    return os.fsdecode(path.lstrip(b"/"))


@dataclass
class Record:
    finding: Finding
    action: str
    member: str | None = None
    member_offset: int | None = None
    sha256: str | None = None
    unlink: tuple | None = None  # (dfd, name, dev, ino) to remove after commit


@dataclass
class Outcome:
    records: list[Record] = field(default_factory=list)
    archive: str = ""

    def count(self, action: str) -> int:
        return sum(1 for r in self.records if r.action == action)


class Quarantine(Handler):
    """A sweep handler: archives (or, in report mode, just records) what the sweep finds."""

    def __init__(self, config, state, report_only: bool, dry_run: bool = False):
        self.config = config
        self.state = state
        self.report_only = report_only or dry_run
        self.dry_run = dry_run
        self.outcome = Outcome()
        self.pending: list[Record] = []
        self.tar: tarfile.TarFile | None = None
        self.archive_file = None
        self.archive_name = ""
        self.deadline = float("inf")  # the sweep's time limit (begin)
        # sweeps run every few minutes: say what is only reported once, not at every sweep
        self.store = QuarantineStore(state)
        self.reported = self.store.reported()

    def _new(self, finding: Finding) -> bool:
        return (finding.path, finding.st.st_size, finding.st.st_mtime) not in self.reported

    # -- the archive -------------------------------------------------------------
    def _open_archive(self) -> None:
        qdir = ensure_dir(archive_dir(self.config), 0o700)
        row = self.store.current_archive()
        limit = self.config.quarantine.archive_max_size
        if row is None or row["committed"] >= limit:
            name, committed = self.store.new_archive(), 0
        else:
            name, committed = row["name"], row["committed"]
        path = qdir / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise CantCreateError(f"{path}: cannot open the quarantine archive: {e.strerror}") from None
        self.archive_file = os.fdopen(fd, "r+b")
        self.archive_file.truncate(committed)  # cut off what a dead run left
        self.archive_file.seek(committed)
        self.tar = tarfile.open(
            fileobj=self.archive_file,
            mode="w",
            format=tarfile.GNU_FORMAT,
            encoding="utf-8",
            errors="surrogateescape",
        )
        self.archive_name = name
        self.outcome.archive = str(path)

    def _tarinfo(self, finding: Finding, size: int = 0) -> tarfile.TarInfo:
        st = finding.st
        info = tarfile.TarInfo(member_name(finding.path))
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname, info.gname = _owner(st.st_uid), _group(st.st_gid)
        info.mtime = int(st.st_mtime)
        if finding.kind == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = os.fsdecode(finding.link_target)
        else:
            info.size = size
        return info

    def _append(self, finding: Finding, content=None, size: int = 0) -> tuple[str, int]:
        if self.tar is None:
            self._open_archive()
        info = self._tarinfo(finding, size)
        offset = self.tar.offset
        self.tar.addfile(info, content)
        return info.name, offset

    # -- handler -----------------------------------------------------------------
    def begin(self, deadline: float) -> None:
        self.deadline = deadline

    def file(self, dfd: int, name: str, finding: Finding, fd: int) -> None:
        if self.report_only:
            self.report(finding)
            return
        if self.tar is None:
            self._open_archive()  # its directory holds the temporary copy too
        limit = self.config.quarantine.max_size
        digest = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=CHUNK, dir=archive_dir(self.config)) as copy:
            offset = 0
            # through the verified descriptor, at most max_size bytes whatever the file does
            # meanwhile (ftruncate grows it in an instant), and only until the time limit
            while offset <= limit:
                if time.monotonic() > self.deadline:
                    self.pending.append(Record(finding, "left: the time limit was reached while copying"))
                    return
                chunk = os.pread(fd, min(CHUNK, limit + 1 - offset), offset)
                if not chunk:
                    break
                digest.update(chunk)
                copy.write(chunk)
                offset += len(chunk)
            if offset > limit:
                self.too_large(finding, fd, grew=True)
                return
            copy.seek(0)
            member, member_offset = self._append(finding, copy, offset)
        self.pending.append(
            Record(
                finding,
                "quarantined",
                member,
                member_offset,
                digest.hexdigest(),
                (dfd, name, finding.st.st_dev, finding.st.st_ino),
            )
        )

    def symlink(self, dfd: int, name: str, finding: Finding) -> None:
        if self.report_only:
            self.report(finding)
            return
        member, offset = self._append(finding)
        self.pending.append(
            Record(
                finding,
                "quarantined",
                member,
                offset,
                None,
                (dfd, name, finding.st.st_dev, finding.st.st_ino),
            )
        )

    def report(self, finding: Finding) -> None:
        if self._new(finding):
            self.pending.append(Record(finding, "reported"))

    def too_large(self, finding: Finding, fd: int, grew: bool = False) -> None:
        what = "grew past max_size while being copied" if grew else "too large to archive"
        if self.report_only:
            if self._new(finding):
                self.pending.append(Record(finding, f"reported ({what})"))
            return
        # fchmod changes the inode, so every name it has: only an inode whose one name is this
        # one, still owned by whom the rule judged, is made unreadable
        now = os.fstat(fd)
        if now.st_nlink > 1:
            self.pending.append(
                Record(finding, f"reported ({what}; {now.st_nlink} hard links: left unchanged)")
            )
        elif now.st_uid != finding.st.st_uid:
            self.pending.append(Record(finding, f"reported ({what}; its owner changed: left unchanged)"))
        else:
            os.fchmod(fd, 0)  # on the verified descriptor, not the name
            self.pending.append(Record(finding, f"made unreadable ({what})"))

    def over_limit(self, finding: Finding) -> None:
        self.pending.append(Record(finding, "left: file limit per sweep reached"))

    def directory_done(self, dfd: int, moved: bool = False) -> None:
        """Commit what this directory gave; a directory that left the watched tree during the
        sweep keeps its files (the archive keeps the copies)."""
        if moved:
            for r in self.pending:
                if r.unlink is not None:
                    r.unlink = None
                    r.action = "copied, left in place: its directory left the watched tree during the sweep"
        self.commit()

    # -- commit ------------------------------------------------------------------
    def commit(self) -> None:
        """Make the archived members durable, record them, then remove the originals."""
        if not self.pending:
            return
        if self.tar is not None:
            self.archive_file.flush()
            os.fsync(self.archive_file.fileno())
        now = time.time()
        rows = {}
        if not self.dry_run:
            with self.state:
                for r in self.pending:
                    rows[id(r)] = self._record(r, now)
                if self.tar is not None:
                    self.store.set_committed(self.archive_name, self.tar.offset)
        for r in self.pending:  # only what is committed is removed; a failed removal is said
            if r.unlink is not None and not self._remove(r) and id(r) in rows:
                with self.state:
                    self.store.set_action(rows[id(r)], r.action)
        self.outcome.records += self.pending
        self.pending = []

    def _record(self, r: Record, now: float) -> int:
        st = r.finding.st
        return self.store.add(
            time=now,
            path=r.finding.path,
            kind=r.finding.kind,
            reason="; ".join(r.finding.reasons),
            action=r.action,
            archive=self.archive_name if r.member else None,
            member=os.fsencode(r.member) if r.member else None,
            member_offset=r.member_offset,
            sha256=r.sha256,
            size=st.st_size,
            uid=st.st_uid,
            gid=st.st_gid,
            owner=_owner(st.st_uid),
            mode=stat.S_IMODE(st.st_mode),
            mtime=st.st_mtime,
            link_target=r.finding.link_target,
        )

    @staticmethod
    def _remove(r: Record) -> bool:
        """Remove the original if its name still holds the archived inode; False (and the
        action says why) when it was not removed."""
        dfd, name, dev, ino = r.unlink
        try:
            now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            return True  # gone already
        if (now.st_dev, now.st_ino) != (dev, ino):
            r.action = "quarantined (the name now holds another file: left in place)"
            return False
        try:
            os.unlink(name, dir_fd=dfd)  # unlinkat never follows a link
        except OSError as e:
            r.action = f"quarantined (not removed: {e.strerror})"
            return False
        return True

    def close(self) -> None:
        self.commit()
        if self.tar is not None:
            self.tar.close()  # end-of-archive blocks
            self.archive_file.close()
            self.tar = None


# -- list / show / restore ---------------------------------------------------------------
def shown(path: bytes) -> str:
    """A path as text; bytes that are not UTF-8 and control characters escaped."""
    return printable(path)


def get_row(state, ident: int):
    row = QuarantineStore(state).get(ident)
    if row is None:
        raise NoInputError(f"no quarantine entry with id {ident}")
    return row


def read_member(config, row) -> tuple[tarfile.TarInfo, bytes]:
    if not row["archive"]:
        raise NoInputError(
            f"quarantine entry {row['id']} has no archive any more ({row['action']}): "
            "retention.quarantine_days removed it"
        )
    path = archive_dir(config) / row["archive"]
    try:
        with tarfile.open(
            path, "r", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
        ) as tar:
            tar.firstmember = None  # jump straight to the recorded member
            tar.offset = row["member_offset"]
            tar.fileobj.seek(tar.offset)
            info = tar.next()
            if info is None or os.fsencode(info.name) != row["member"]:
                raise DataError(
                    f"{path}: no member {shown(row['member'])} at offset "
                    f"{row['member_offset']}: the archive is damaged"
                )
            data = tar.extractfile(info).read() if info.isfile() else b""
    except (OSError, tarfile.TarError) as e:
        raise DataError(f"{path}: cannot read the quarantine archive: {e}") from None
    if row["sha256"] and hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise DataError(f"{path}: member {shown(row['member'])} does not match its recorded sha256")
    return info, data


def _open_parent(target: bytes) -> tuple[int, bytes]:
    """Open the parent directory of target component by component, never following a link;
    missing directories are created (mode 0700)."""
    parts = [p for p in target.split(b"/") if p]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            if part in (b".", b".."):
                raise DataError(f"refusing a path with {part.decode()}: {shown(target)}")
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o700, dir_fd=fd)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError as e:
        os.close(fd)
        raise CantCreateError(
            f"{shown(target)}: cannot reach its directory without following a link: {e.strerror}"
        ) from None
    return fd, parts[-1]


def _chown(fd: int, uid: int, gid: int) -> None:
    try:
        os.fchown(fd, uid, gid)
    except PermissionError:
        if os.geteuid() == 0:
            raise  # a normal user cannot give files away, as with tar


def restore_member(config, state, ident: int, to: Path | None = None) -> bytes:
    """Put a quarantined file back (at its path, or under `to`); never overwrites."""
    to = Path(to).absolute() if to else None  # relative to the current directory
    row = get_row(state, ident)
    if not row["member"]:
        raise DataError(f"entry {ident} was {row['action']}: there is nothing to restore")
    info, data = read_member(config, row)
    original = bytes(row["path"])
    target = (os.fsencode(to).rstrip(b"/") + b"/" + original.lstrip(b"/")) if to else original
    dfd, name = _open_parent(target)
    try:
        if info.issym():
            os.symlink(info.linkname, name, dir_fd=dfd)
            if os.geteuid() == 0:
                os.chown(name, info.uid, info.gid, dir_fd=dfd, follow_symlinks=False)
        else:
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view[:CHUNK]) :]
                _chown(fd, info.uid, info.gid)
                os.fchmod(fd, info.mode)
                os.utime(fd, (info.mtime, info.mtime))
            finally:
                os.close(fd)
    except FileExistsError:
        raise CantCreateError(f"{shown(target)} exists; not overwritten (use --to DIR)") from None
    except PermissionError as e:
        raise CantCreateError(f"{shown(target)}: {e.strerror}") from None
    finally:
        os.close(dfd)
    QuarantineStore(state).mark_restored(ident)
    return target
