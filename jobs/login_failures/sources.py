"""Reading what is new in a log since the last run, across rotation, and the journal.

A file cursor is (device, inode, offset, hash of the first line). At the next run:
- same inode, same first line, not shorter: read on from the offset;
- otherwise the file was rotated (renamed and re-created, or copied and truncated, maybe
  twice): the old content is found among the siblings (`.1`, `.2.gz`, `-20261121`, ...) by
  inode or by its first line, read from the offset to its end, then every newer sibling
  whole, then the current file from its start.
A last line without a newline stays for the next run in the current file, and is read as a
line once its file has been rotated away. Files are opened with O_NOFOLLOW: a symlink in
place of a log is refused.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nightwarden.lib.errors import DataError, NoInputError, UnavailableError
from nightwarden.lib.fsutil import open_regular
from nightwarden.lib.logsetup import get

log = get("logs")

CHUNK = 4 << 20
HEAD = 1024
MAX_LINE = 64 << 10  # a longer "line" is counted and skipped, never held whole in memory
KNOWN = 20  # rotated files whose first lines a cursor on an empty file remembers
PLAN_TRIES = 5  # plans made again when the log was rotated while one was being made
TAIL = 256  # the bytes before a cursor's offset that must still be there at the next run


@dataclass
class Part:
    """One file read in this run: where it starts, whether it is still being written, and
    (once read) the offset after its last whole line."""

    path: Path
    start: int
    current: bool
    mtime: float = 0.0
    end: int | None = None
    overlong: int = 0  # lines longer than MAX_LINE, skipped
    # the current file as plan() examined it: read through this descriptor, so a rotation
    # between the plan and the read cannot swap the file under it
    fd: int | None = None
    head: str | None = None  # the file's first line as plan() saw it
    # what was read: dev, ino, head, tail (the current part); dev, ino, size, mtime (a rotated one)
    seen: dict | None = None
    broken: str = ""  # a rotated .gz that ends in the middle: what was not read


@dataclass
class Plan:
    parts: list[Part]
    lost: str = ""  # why lines may be missing (the old file was not found)
    # the first lines of the rotated copies when the plan was made: a cursor left on an
    # empty current file remembers these (what a later copy is told from), not those of
    # copies that a rotation after the read made
    known: list[str] | None = None
    # the file that was the log before the current one, where its writer may still append
    # until it reopens the log: {head, offset, dev, ino, size, mtime} of where it was read
    # to. Kept while the current file is empty (a cursor on an empty file has nothing else
    # to find those lines by).
    prev: dict | None = None

    def close(self) -> None:
        """Descriptors of parts that were not read."""
        for part in self.parts:
            if part.fd is not None:
                os.close(part.fd)
                part.fd = None


def _head_of(fd: int) -> str:
    first = os.pread(fd, HEAD, 0)
    newline = first.find(b"\n")
    if newline >= 0:
        first = first[: newline + 1]
    return hashlib.sha256(first).hexdigest()[:32] if first else ""


def _tail_of(fd: int, offset: int) -> str:
    start = max(0, offset - TAIL)
    return hashlib.sha256(os.pread(fd, offset - start, start)).hexdigest()[:32]


def _open(path: Path) -> int:
    """A log for reading: never through a link, never blocking on a FIFO (one in place of a
    log is refused, not waited on)."""
    return open_regular(path, "log")[0]


def tail_hash(path: Path, offset: int) -> str:
    """sha256 of the TAIL bytes before offset: still the same at the next run unless the
    file was truncated (or rewritten) in place."""
    try:
        fd = _open(path)
    except (OSError, DataError):
        return ""
    try:
        start = max(0, offset - TAIL)
        return hashlib.sha256(os.pread(fd, offset - start, start)).hexdigest()[:32]
    except OSError:
        return ""
    finally:
        os.close(fd)


def _is_gz(path: Path) -> bool:
    return path.name.endswith(".gz")


def head_hash(path: Path) -> str:
    """sha256 of the first line (at most HEAD bytes); "" for an empty file."""
    try:
        fd = _open(path)
    except OSError:
        return ""
    try:
        with os.fdopen(fd, "rb") as raw:
            f = gzip.GzipFile(fileobj=raw) if _is_gz(path) else raw
            try:
                first = f.readline(HEAD)
            except (OSError, EOFError):
                return ""
    except OSError:
        return ""
    return hashlib.sha256(first).hexdigest()[:32] if first else ""


def siblings(path: Path) -> list[Path]:
    """Rotated copies of path, newest first: name.1, name.2.gz, name-20261121[.gz] ..."""
    out = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for e in entries:
        if e.name == path.name or not e.name.startswith(path.name):
            continue
        rest = e.name[len(path.name) :]
        if rest[:1] not in (".", "-") or not e.is_file(follow_symlinks=False):
            continue
        core = rest[1:].removesuffix(".gz")
        if not core.replace("-", "").replace("_", "").isdigit():
            continue
        try:
            out.append((e.stat(follow_symlinks=False).st_mtime, rest, Path(e.path)))
        except OSError:
            continue

    # newest first. Numbered copies (.1, .2.gz) by their number, which logrotate keeps in
    # order (a copy compressed after a newer one was last written has the later mtime);
    # dated or mixed names by mtime, a lower number first on equal times. A copy being
    # compressed (.1 beside .1.gz) comes uncompressed first.
    def number(rest: str) -> int | None:
        core = rest[1:].removesuffix(".gz")
        return int(core) if core.isdigit() and len(core) < 6 else None

    numbered = all(number(rest) is not None for _, rest, _ in out)

    def rank(item):
        mtime, rest, _ = item
        num = number(rest)
        gz = rest.endswith(".gz")
        return (num, gz) if numbered else (-mtime, num or 0, gz)

    return [p for _, _, p in sorted(out, key=rank)]


def distinct(sibs: list[Path]) -> list[tuple[Path, str]]:
    """(path, hash of its first line) per content, newest first: while logrotate compresses
    `.1` into `.1.gz` both are there with the same lines, and reading both would count them
    twice. The uncompressed one is kept (the other may be half written, too short yet to
    show a first line)."""
    names = {s.name for s in sibs}
    sibs = [s for s in sibs if not (_is_gz(s) and s.name.removesuffix(".gz") in names)]
    heads = [(s, head_hash(s)) for s in sibs]
    firsts: dict[str, Path] = {}
    for s, head in heads:
        kept = firsts.get(head) if head else None
        if head and (kept is None or (_is_gz(kept) and not _is_gz(s))):
            firsts[head] = s
    return [(s, head) for s, head in heads if not head or firsts[head] == s]


def plan(path: Path, cursor: dict | None) -> Plan:
    """What to read this run: the old file's rest, newer rotated copies, the current file
    (opened here: the caller reads it, or calls Plan.close).

    A plan is made on files that stay where they are while it is made: a rotation in
    between (the file just opened becoming a copy, read twice; a copy renamed away before
    its first line was read, not found) makes it again, a few times (a log rotated that
    often is read as the last plan says)."""
    for attempt in range(PLAN_TRIES):
        last = attempt == PLAN_TRIES - 1
        before = _listing(path)
        fd, st = _open_current(path)
        try:
            made = _plan(path, fd, st, cursor)
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            os.close(fd)
            if last:
                raise NoInputError(f"{path}: no such log file") from None
            continue
        except BaseException:
            os.close(fd)
            raise
        if last or ((now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) and _listing(path) == before):
            return made
        made.close()
    raise AssertionError("unreachable")


def _listing(path: Path) -> frozenset:
    """The log's and its copies' names and inodes, to tell whether they moved meanwhile."""
    try:
        with os.scandir(path.parent) as it:
            return frozenset((e.name, e.inode()) for e in it if e.name.startswith(path.name))
    except OSError:
        return frozenset()


def _open_current(path: Path) -> tuple[int, os.stat_result]:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such log file") from None
    except OSError as e:
        raise NoInputError(f"{path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise DataError(f"{path}: is a symlink; refusing to follow it")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file; refused")
    try:
        return open_regular(path, "log")
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such log file") from None


def _plan(path: Path, fd: int, st: os.stat_result, cursor: dict | None) -> Plan:
    head = _head_of(fd)
    here = Part(path, 0, True, st.st_mtime, fd=fd, head=head)
    found: list[tuple[Path, str]] | None = None
    if not head:  # an empty file: a cursor taken on it remembers the rotated copies there now
        found = distinct(siblings(path))
    if not cursor:
        return Plan([here], known=_known(found))
    same_file = (st.st_dev, st.st_ino) == (cursor.get("dev"), cursor.get("ino"))
    offset = cursor.get("offset", 0)
    # a cursor taken on an empty file has no first line to compare: the inode says it
    was_empty = not cursor.get("head") and offset == 0
    if was_empty and "known" in cursor:
        # renamed, or copied and truncated since (maybe twice, maybe compressed): the rotated
        # files whose first line none had when the cursor was taken hold only new lines (a
        # file compressed later keeps its first line). A copy with the current file's first
        # line is copytruncate's copy before the truncation: the current file holds it all.
        known = set(cursor.get("known", ()))
        found = found if found is not None else distinct(siblings(path))
        prev = cursor.get("prev")
        copies, grown = [], []
        for s, first in found:
            try:
                sst = os.stat(s, follow_symlinks=False)
            except OSError:
                continue
            if sst.st_ino == st.st_ino and sst.st_dev == st.st_dev:
                continue
            if prev and first == prev.get("head") and not grown:
                # the file before this one: written after it was read (its writer had not
                # reopened the log yet)? read on from where it was left
                if _moved(sst, prev):
                    grown.append(Part(s, prev.get("offset", 0), False, sst.st_mtime, head=first))
            elif first and first not in known and first != head:
                copies.append(Part(s, 0, False, sst.st_mtime, head=first))
        parts = [*grown, *reversed(copies), here]
        return Plan(parts, known=_known(found), prev=None if len(parts) > 1 else prev)
    # the same inode and first line, not shorter, and the bytes before the offset still the
    # same: truncated in place and written again (a first line like the old one) is not
    untouched = "tail" not in cursor or (st.st_size >= offset and _tail_of(fd, offset) == cursor["tail"])
    if same_file and head == cursor.get("head") and st.st_size >= offset and untouched:
        here.start = offset
        return Plan([here], known=_known(found))
    found = found if found is not None else distinct(siblings(path))
    sibs = []
    for s, first in found:
        try:
            sst = os.stat(s, follow_symlinks=False)
        except OSError:
            continue
        if sst.st_ino != st.st_ino or sst.st_dev != st.st_dev:  # never the current file again
            sibs.append((s, first, sst))
    old = None
    for i, (_, first, sst) in enumerate(sibs):
        same = (sst.st_dev, sst.st_ino) == (cursor.get("dev"), cursor.get("ino"))
        if cursor.get("head") and first == cursor["head"] or (same and not cursor.get("head")):
            old = i
            break
    if old is None:
        why = (
            f"{path}: rotated and the part after offset {cursor.get('offset', 0)} of the "
            f"previous file was not found among {len(sibs)} rotated copies; lines written "
            f"there since the last run were not read"
        )
        # the copies written since the cursor was taken hold lines after it (the previous
        # file, whose first line they would have, is not among them): read whole
        since = cursor.get("time") or float("inf")
        later = [
            Part(s, 0, False, sst.st_mtime, head=first)
            for s, first, sst in reversed(sibs)
            if sst.st_mtime >= since and first and first != head
        ]
        return Plan([*later, here], lost=why, known=_known(found))
    s, first, sst = sibs[old]
    parts = [Part(s, cursor.get("offset", 0), False, sst.st_mtime, head=first)]
    # newer copies, but not one with the current file's first line: copytruncate's copy
    # before the truncation (the current file holds those lines)
    newer = [(s, first, sst) for s, first, sst in sibs[:old] if not (head and first == head)]
    parts += [Part(s, 0, False, sst.st_mtime, head=first) for s, first, sst in reversed(newer)]
    parts.append(here)
    return Plan(parts, known=_known(found))


def _moved(sst: os.stat_result, prev: dict) -> bool:
    """Whether a rotated file is not the one `prev` recorded as read to its end (another
    inode, size or mtime: grown, or compressed since)."""
    return (sst.st_dev, sst.st_ino, sst.st_size, sst.st_mtime_ns) != (
        prev.get("dev"),
        prev.get("ino"),
        prev.get("size"),
        prev.get("mtime"),
    )


def _known(found: list[tuple[Path, str]] | None) -> list[str] | None:
    """The first lines of the rotated copies the plan saw (None: it looked at none)."""
    if found is None:
        return None
    return [h for _, h in found[:KNOWN] if h]


def read_part(part: Part, chunk: int = CHUNK) -> Iterator[tuple[bytes, int]]:
    """(text, offset of its first byte): whole lines only; a rotated file's last line is
    whole even without its newline. part.end is set to the offset after the last line."""
    fd = part.fd if part.fd is not None else _open(part.path)
    part.fd = None
    with os.fdopen(fd, "rb") as raw:
        f = gzip.GzipFile(fileobj=raw) if _is_gz(part.path) else raw
        pos = 0
        try:
            if part.start:
                if _is_gz(part.path):
                    while pos < part.start:
                        got = f.read(min(chunk, part.start - pos))
                        if not got:
                            break
                        pos += len(got)
                else:
                    f.seek(part.start)
                    pos = part.start
            rest = b""
            skipping = False  # inside a line longer than MAX_LINE
            # the file being written may be copied and truncated (logrotate's copytruncate)
            # between two reads, and written again past where this one stands: a chunk read
            # after its first line changed is not the file we were reading, and is left for
            # the next plan (which finds the rest of the old one among the rotated files)
            watch = part.current and not _is_gz(part.path)
            head = part.head if part.head is not None else (_head_of(fd) if watch else "")
            rewritten = False
            while True:
                data = f.read(chunk)
                if not data:
                    break
                if watch:
                    now = _head_of(fd)
                    if not head and part.start == 0 and pos == 0:
                        head = now  # empty when planned: its first line is being read now
                    elif now != head:
                        rewritten = True
                        break
                if skipping:
                    newline = data.find(b"\n")
                    if newline < 0:
                        pos += len(data)
                        continue
                    pos += newline + 1
                    data, skipping = data[newline + 1 :], False
                data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut:
                    yield data[:cut], pos
                    pos += cut
                if len(rest) > MAX_LINE:
                    part.overlong += 1
                    pos += len(rest)
                    rest, skipping = b"", True
            if rest and not part.current:
                yield rest + b"\n", pos
                pos += len(rest)
            if not part.current:
                st = os.fstat(fd)
                part.seen = {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime": st.st_mtime_ns}
            if watch:
                st = os.fstat(fd)
                if head and not rewritten and _head_of(fd) != head:
                    rewritten = True  # copied and truncated after the last chunk (or before any)
                part.seen = {"dev": st.st_dev, "ino": st.st_ino, "head": head}
                if not rewritten:  # else the bytes before pos are gone: no tail to compare
                    part.seen["tail"] = _tail_of(fd, pos)
                    part.seen["head"] = _head_of(fd)
        except (OSError, EOFError) as e:
            if not (_is_gz(part.path) and not part.current):
                raise DataError(f"{part.path}: cannot read past byte {pos}: {e}") from None
            # a damaged compressed copy: what it held up to there was read, and the files
            # after it still are (a copy that cannot be read must not stop the reading)
            part.broken = f"{part.path}: damaged after byte {pos} ({e}); the rest of it was not read"
    part.end = pos


def cursor_after(path: Path, plan: Plan) -> dict:
    """The cursor for the current file once the plan was read: the file that was read,
    even if it was rotated meanwhile."""
    part = plan.parts[-1]
    offset = part.end if part.end is not None else part.start
    if part.seen is not None:
        cursor = {**part.seen, "offset": offset, "time": time.time()}
    else:
        st = os.stat(path, follow_symlinks=False)
        cursor = {
            "dev": st.st_dev,
            "ino": st.st_ino,
            "offset": offset,
            "head": head_hash(path),
            "tail": tail_hash(path, offset),
            "time": time.time(),
        }
    if offset == 0 and not cursor["head"]:  # an empty file: what a later copy is told from
        known = plan.known
        if known is None:
            known = [h for h in (head_hash(s) for s in siblings(path)[:KNOWN]) if h]
        cursor["known"] = known
        before = plan.parts[-2] if len(plan.parts) > 1 else None
        if before is not None and before.seen is not None and before.end is not None:
            cursor["prev"] = {**before.seen, "head": before.head, "offset": before.end}
        elif plan.prev:
            cursor["prev"] = plan.prev
    return cursor


def cursor_at_end(path: Path) -> dict:
    """A cursor at the log's end, for a reader that starts now: what the file held before is
    left unread (a last line without its newline too)."""
    made = plan(path, None)
    try:
        here = made.parts[-1]
        here.end = os.fstat(here.fd).st_size
        return cursor_after(path, made)
    finally:
        made.close()


# -- the journal ---------------------------------------------------------------------------


# SYSLOG_IDENTIFIER is whatever the sender says; _COMM and _SYSTEMD_UNIT are set by journald.
@dataclass(frozen=True)
class Sender:
    """Who may write a daemon's journal entries, by journald's trusted fields (which the
    writing process cannot choose): its process names (_COMM), its system units
    (_SYSTEMD_UNIT: a .service exactly, anything else as a prefix) or its executables (_EXE), and
    whether only root (_UID 0) writes them. A user's own units and sessions never qualify."""

    comms: tuple[str, ...]
    units: tuple[str, ...] = ()
    exes: tuple[str, ...] = ()
    root: bool = False


_SSHD_EXES = tuple(
    f"{d}/{n}"
    for d in ("/usr/sbin", "/usr/lib/openssh", "/usr/libexec/openssh", "/usr/libexec")
    for n in ("sshd", "sshd-session", "sshd-auth")
)
_SSHD = Sender(
    ("sshd", "sshd-session", "sshd-auth"),
    ("ssh.service", "sshd.service", "ssh@", "sshd@"),
    _SSHD_EXES,
    root=True,
)
SENDERS = {
    "sshd": _SSHD,
    "sshd-session": _SSHD,
    "sshd-auth": _SSHD,
    "sudo": Sender(("sudo",), exes=("/usr/bin/sudo", "/bin/sudo"), root=True),
    "su": Sender(("su",), exes=("/usr/bin/su", "/bin/su"), root=True),
    "login": Sender(("login",), exes=("/usr/bin/login", "/bin/login"), root=True),
    "dovecot": Sender(
        ("dovecot", "auth", "auth-worker", "imap-login", "pop3-login", "imap", "pop3"), ("dovecot.service",)
    ),
    "pure-ftpd": Sender(("pure-ftpd",), ("pure-ftpd",)),
    "vsftpd": Sender(("vsftpd",), ("vsftpd.service",)),
    "proftpd": Sender(("proftpd",), ("proftpd.service",)),
}
# the other daemons whose wordings are counted: trusted when a system service of the name
# they claim wrote them (postfix/smtpd: a process named smtpd in a system .service unit)
DAEMON = re.compile(r"(?:postfix[\w/-]*|exim4?|courier[\w-]*|imapd(?:-ssl)?|pop3d(?:-ssl)?|saslauthd)")


def sender_of(ident: str) -> Sender | None:
    """Who may write entries that claim `ident`; None for programs whose lines are not counted."""
    sender = SENDERS.get(ident)
    if sender is None and DAEMON.fullmatch(ident):
        sender = Sender((ident.rsplit("/", 1)[-1],))
    return sender


def trusted(sender: Sender, comm: str, unit: str, uid: str, exe: str, user_unit: str) -> bool:
    if user_unit or unit.startswith("user@") or comm not in sender.comms:
        return False
    if sender.root and uid != "0":
        return False
    if exe and exe in sender.exes:
        return True
    if not sender.units:  # any system service
        return unit.endswith(".service")
    # "ssh.service" exactly; "ssh@" or "pure-ftpd" as a prefix (instances, flavours)
    return any(unit == u if u.endswith(".service") else unit.startswith(u) for u in sender.units)


@dataclass
class JournalBatch:
    text: bytes
    cursor: str | None
    forged: list[str]  # lines that claim a daemon's name from another process
    entries: int


def _field(entry: dict, name: str) -> str:
    v = entry.get(name, "")
    if isinstance(v, list):  # binary fields come as byte arrays
        try:
            v = bytes(v).decode("utf-8", "backslashreplace")
        except (TypeError, ValueError):
            v = ""
    return str(v)


def journal_lines(raw: bytes, after: str | None, host: str) -> JournalBatch:
    """`journalctl -o json` output to rfc3339 syslog lines, named by the trusted _COMM and
    _PID. An entry whose SYSLOG_IDENTIFIER names one of the daemons we count while journald's
    trusted fields say another process wrote it (see Sender) is not scanned under that name
    and is listed as forged."""
    out, forged = [], []
    cursor = after
    entries = 0
    skipping = after is not None and after.encode() in raw
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except ValueError:
            log.warning("journal: line %d is not JSON; skipped", n)
            continue
        if skipping:  # a command that ignored --after-cursor
            if e.get("__CURSOR") == after:
                skipping = False
            continue
        entries += 1
        cursor = e.get("__CURSOR", cursor)
        ident = _field(e, "SYSLOG_IDENTIFIER")
        comm = _field(e, "_COMM")
        unit = _field(e, "_SYSTEMD_UNIT")
        pid = _field(e, "_PID") or _field(e, "SYSLOG_PID")
        msg = _field(e, "MESSAGE").replace("\n", " ").replace("\r", " ")
        try:
            ts = int(_field(e, "__REALTIME_TIMESTAMP")) / 1e6
        except ValueError:
            continue
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}+00:00"
        prog = comm or ident
        sender = sender_of(ident)
        if sender is not None and not trusted(
            sender, comm, unit, _field(e, "_UID"), _field(e, "_EXE"), _field(e, "_SYSTEMD_USER_UNIT")
        ):
            forged.append(
                f"{stamp} {ident}[{pid}] written by {comm or '?'}[{pid}] uid {_field(e, '_UID') or '?'} "
                f"({unit or 'no unit'}): {msg[:200]}"
            )
            prog = "untrusted-" + (comm or "unknown")  # never a daemon's name
        elif sender is not None:
            prog = ident  # a trusted sender: its own name, as a file would show
        out.append(f"{stamp} {_field(e, '_HOSTNAME') or host} {prog}[{pid}]: {msg}")
    text = ("\n".join(out) + "\n").encode("utf-8", "backslashreplace") if out else b""
    return JournalBatch(text, cursor, forged, entries)


def read_journal(command: list[str], after: str | None, host: str, timeout: int = 120) -> JournalBatch:
    """Runs the journal command (argv) with --after-cursor and converts its output."""
    import subprocess

    argv = list(command) + (["--after-cursor", after] if after else [])
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise UnavailableError(f"journal: {command[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise UnavailableError(f"journal: {command[0]} did not finish in {timeout} s") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise UnavailableError(f"journal: {command[0]} exited {done.returncode}: {err[-1] if err else ''}")
    return journal_lines(done.stdout, after, host)
