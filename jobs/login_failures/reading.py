"""Log sources as configured, read for the login-failure job (what is new since its cursor)
and for the report (a period, whatever the cursors say)."""

from __future__ import annotations

import gzip
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from nightwarden.lib.errors import NightwardenError
from nightwarden.lib.logsetup import get

from . import counting, formats, rules, sources

log = get("logins")
READ_TRIES = 3  # reads of a source made again when a rotation moved a file under them


@dataclass
class Source:
    name: str  # the path, or "journal"
    path: Path | None
    fmt: str  # a format name; "auto" until the file is looked at
    services: list[str]
    trusted: bool  # journal fields; a syslog file is spoofable by any local user
    ruleset: rules.RuleSet | None = None  # None: the shipped rules

    @property
    def key(self) -> str:
        return f"logins:{self.name}"


@dataclass
class SourceScan:
    source: Source
    tally: counting.Tally
    parts: list = field(default_factory=list)
    cursor: dict | None = None
    lost: str = ""
    error: str = ""
    forged: list = field(default_factory=list)
    fmt: str = ""

    @property
    def overlong(self) -> int:
        """Lines longer than sources.MAX_LINE, skipped."""
        return sum(getattr(p, "overlong", 0) for p in self.parts)


def source_lock(config, source: Source):
    """The lock whoever reads the source holds (the cron job for a run, the listener while it
    follows): one reader at a time, so a line is counted once."""
    import hashlib

    from nightwarden.lib.lock import LockFile

    digest = hashlib.sha256(source.key.encode()).hexdigest()[:16]
    return LockFile(config.run_dir / "logins" / f"{digest}.lock", f"reading {source.name}")


def configured(config) -> list[Source]:
    """The file sources that exist, then the journal when configured or needed."""
    cfg = config.logins
    ruleset = rules.for_config(config)
    out: list[Source] = []
    for spec in cfg.sources:
        path = config.sandboxed(spec.path)
        if not os.path.lexists(path):
            log.debug("%s: not present, skipped", path)
            continue
        out.append(
            Source(str(path), path, spec.format, list(spec.services or rules.SERVICES_ALL), False, ruleset)
        )
    use_journal = cfg.journal == "yes" or (
        cfg.journal == "auto"
        and config.sandbox is None
        and not any("sshd" in s.services for s in out)
        and shutil.which(cfg.journal_command[0])
    )
    if use_journal:
        out.append(Source("journal", None, "rfc3339", list(cfg.journal_services), True, ruleset))
    return out


def _format(source: Source) -> str:
    if source.fmt != "auto":
        return source.fmt
    try:
        fd = sources._open(source.path)
        with os.fdopen(fd, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return "rfc3164"
    return formats.detect_format(first)


def _scan_parts(
    source: Source,
    out: SourceScan,
    parts: list,
    resolution: float,
    full: bool,
    since: float | None = None,
    until: float | None = None,
    users: bool = False,
) -> None:
    """Read and scan each file part in turn (each with its own year reference)."""
    compiled = rules.compile_rules(
        out.fmt, source.services, known=full, users=full or users, ruleset=source.ruleset
    )
    for i, part in enumerate(parts):
        scanner = counting.AttemptCounter(compiled, out.tally, part.mtime, resolution)
        scanner.since, scanner.until = since, until
        for text, offset in sources.read_part(part):
            scanner.scan(b"\n" + text, i, offset)
        if part.broken:
            log.warning("%s", part.broken)
            out.lost = f"{out.lost}; {part.broken}" if out.lost else part.broken
        out.parts.append(part)


def _scan_journal(
    source: Source,
    out: SourceScan,
    command: list[str],
    after: str | None,
    config,
    reference: float,
    full: bool,
):
    """Run the journal command, scan what it gave; the batch, or None after an error."""
    try:
        batch = sources.read_journal(command, after, config.hostname)
    except NightwardenError as e:
        out.error = e.message
        return None
    out.fmt, out.forged = "rfc3339", batch.forged
    if batch.text:
        compiled = rules.compile_rules(
            "rfc3339", source.services, known=full, users=full or out.tally.want_users, ruleset=source.ruleset
        )
        counting.AttemptCounter(compiled, out.tally, reference, config.logins.resolution).scan(
            b"\n" + batch.text
        )
        out.parts.append(batch.text)
    return batch


def scan_new(source: Source, cursor: dict | None, config) -> SourceScan:
    """Everything the source gained since `cursor`. The new cursor is in the result; the
    caller stores it once what was found is safely recorded."""
    cfg = config.logins
    cursor = cursor or {}
    users = bool(cfg.dist_attack)  # the accounts failures were for (tracking.py)
    out = SourceScan(source, counting.Tally(want_users=users))
    out.tally.restore(cursor.get("conns"))
    if source.path is None:
        command = list(cfg.journal_command)
        if cursor.get("cursor") is None:
            command.append(f"--since=-{cfg.interval}s")
        batch = _scan_journal(source, out, command, cursor.get("cursor"), config, time.time(), False)
        if batch is not None:
            out.cursor = {"cursor": batch.cursor, "conns": out.tally.state()}
        return out
    for attempt in range(READ_TRIES):
        try:
            plan = sources.plan(source.path, {k: v for k, v in cursor.items() if k != "conns"})
            try:
                out.fmt = _format(source)
                out.lost = plan.lost
                _scan_parts(source, out, plan.parts, cfg.resolution, False, users=users)
            finally:
                plan.close()
            out.cursor = sources.cursor_after(source.path, plan)
            out.cursor["conns"] = out.tally.state()
        except FileNotFoundError as e:  # a copy renamed between the plan and its read
            if attempt < READ_TRIES - 1:
                out = SourceScan(source, counting.Tally(want_users=users))
                out.tally.restore(cursor.get("conns"))
                continue
            out.error = f"{source.path}: {e}"
        except (NightwardenError, OSError) as e:
            out.error = getattr(e, "message", None) or f"{source.path}: {e}"
        return out
    return out


def scan_period(source: Source, since: float, until: float, config) -> SourceScan:
    """The report's read: the current file and the rotated copies changed since `since`,
    oldest first, lines from `since` to `until`, with the understood-line count."""
    out = SourceScan(source, counting.Tally(want_users=True))
    if source.path is None:
        command = list(config.logins.journal_command) + [f"--since=@{int(since)}", f"--until=@{int(until)}"]
        _scan_journal(source, out, command, None, config, until, True)
        return out
    try:
        out.fmt = _format(source)
        copies = [p for p, _ in sources.distinct(sources.siblings(source.path))]
        files = [p for p in reversed(copies) if p.stat().st_mtime >= since] + [source.path]
        parts = [sources.Part(p, 0, p == source.path, p.stat().st_mtime) for p in files]
        _scan_parts(source, out, parts, config.logins.resolution, True, since, until)
    except (NightwardenError, OSError) as e:
        out.error = getattr(e, "message", None) or f"{source.path}: {e}"
    return out


def sample_lines(scan: SourceScan, raw: bytes, limit: int) -> list[str]:
    """Up to `limit` lines naming `raw` from the last segment where it was seen."""
    ref = scan.tally.where.get(raw)
    if ref is None:
        return []
    part_index, start, end = ref
    try:
        part = scan.parts[part_index]
        if isinstance(part, bytes):
            data = part[start:end]
        elif part.path.name.endswith(".gz"):
            with gzip.open(part.path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        else:
            fd = sources._open(part.path)
            try:
                data = os.pread(fd, end - start, start)
            finally:
                os.close(fd)
    except (OSError, IndexError, EOFError):
        return []
    lines = [ln for ln in data.split(b"\n") if raw in ln]
    return [ln.decode("utf-8", "backslashreplace") for ln in lines[-limit:]]
