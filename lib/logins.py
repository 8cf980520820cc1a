"""Log sources as configured, read for the login-failure job (what is new since its cursor)
and for the report (a period, whatever the cursors say)."""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import detectors, logformats, logscan, logsource
from .errors import NightwardenError
from .logsetup import get

log = get("logins")


@dataclass
class Source:
    name: str               # the path, or "journal"
    path: Path | None
    fmt: str                # a format name; "auto" until the file is looked at
    services: list[str]
    trusted: bool           # journal fields; a syslog file is spoofable by any local user

    @property
    def key(self) -> str:
        return f"logins:{self.name}"


@dataclass
class SourceScan:
    source: Source
    tally: logscan.Tally
    parts: list = field(default_factory=list)
    cursor: dict | None = None
    lost: str = ""
    error: str = ""
    forged: list = field(default_factory=list)
    fmt: str = ""


def configured(config) -> list[Source]:
    """The file sources that exist, then the journal when configured or needed."""
    cfg = config["logins"]
    out: list[Source] = []
    for spec in cfg["sources"]:
        path = config.sandboxed(spec["path"])
        if not os.path.lexists(path):
            log.debug("%s: not present, skipped", path)
            continue
        out.append(Source(str(path), path, spec.get("format", "auto"),
                          list(spec.get("services", detectors.SERVICES)), False))
    use_journal = cfg["journal"] == "yes" or (
        cfg["journal"] == "auto" and config.sandbox is None
        and not any("sshd" in s.services for s in out) and shutil.which(cfg["journal_command"][0]))
    if use_journal:
        out.append(Source("journal", None, "rfc3339", list(cfg["journal_services"]), True))
    return out


def _format(source: Source) -> str:
    if source.fmt != "auto":
        return source.fmt
    try:
        fd = logsource._open(source.path)
        with os.fdopen(fd, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return "rfc3164"
    return logformats.detect(first)


def _scanner(source: Source, fmt: str, tally, reference: float, resolution: float,
             full: bool) -> logscan.Scanner:
    services = [s for s in source.services]
    compiled = detectors.compile_rules(fmt, services, known=full, users=full)
    return logscan.Scanner(compiled, tally, reference, resolution, source.name, source.trusted)


def scan_new(source: Source, cursor: dict | None, config, full: bool = False) -> SourceScan:
    """Everything the source gained since `cursor`. The new cursor is in the result; the
    caller stores it once what was found is safely recorded."""
    cfg = config["logins"]
    tally = logscan.Tally(want_users=full)
    out = SourceScan(source, tally)
    if source.path is None:
        return _scan_journal(source, cursor, config, out, full)
    saved = (cursor or {}).get("conns")
    tally.restore(saved)
    try:
        plan = logsource.plan(source.path, {k: v for k, v in (cursor or {}).items() if k != "conns"})
        out.fmt = fmt = _format(source)
        out.lost = plan.lost
        for i, part in enumerate(plan.parts):
            scanner = _scanner(source, fmt, tally, part.mtime, cfg["resolution"], full)
            for text, offset in logsource.read_part(part):
                scanner.scan(b"\n" + text, i, offset)
            out.parts.append(part)
        out.cursor = logsource.cursor_after(source.path, plan.parts[-1])
        out.cursor["conns"] = tally.state()
    except (NightwardenError, OSError) as e:
        out.error = getattr(e, "message", None) or f"{source.path}: {e}"
    return out


def _scan_journal(source: Source, cursor: dict | None, config, out: SourceScan,
                  full: bool) -> SourceScan:
    cfg = config["logins"]
    after = (cursor or {}).get("cursor")
    command = list(cfg["journal_command"])
    if after is None:
        command.append(f"--since=-{cfg['interval']}s")
    try:
        batch = logsource.read_journal(command, after, config.hostname)
    except NightwardenError as e:
        out.error = e.message
        return out
    out.tally.restore((cursor or {}).get("conns"))
    out.fmt = "rfc3339"
    out.forged = batch.forged
    if batch.text:
        import time
        scanner = _scanner(source, "rfc3339", out.tally, time.time(), cfg["resolution"], full)
        scanner.scan(b"\n" + batch.text, 0, 0)
        out.parts.append(batch.text)
    out.cursor = {"cursor": batch.cursor, "conns": out.tally.state()}
    return out


def scan_period(source: Source, since: float, until: float, config) -> SourceScan:
    """The report's read: the current file and the rotated copies changed since `since`,
    oldest first, lines from `since` to `until`, with the understood-line count."""
    tally = logscan.Tally(want_users=True)
    out = SourceScan(source, tally)
    if source.path is None:
        cmd = list(config["logins"]["journal_command"]) + [f"--since=@{int(since)}",
                                                            f"--until=@{int(until)}"]
        try:
            batch = logsource.read_journal(cmd, None, config.hostname)
        except NightwardenError as e:
            out.error = e.message
            return out
        out.forged = batch.forged
        out.fmt = "rfc3339"
        if batch.text:
            scanner = _scanner(source, "rfc3339", tally, until, config["logins"]["resolution"], True)
            scanner.scan(b"\n" + batch.text)
        return out
    try:
        out.fmt = fmt = _format(source)
        files = [p for p in reversed(logsource.siblings(source.path))
                 if p.stat().st_mtime >= since] + [source.path]
        for i, path in enumerate(files):
            part = logsource.Part(path, 0, path == source.path, path.stat().st_mtime)
            scanner = _scanner(source, fmt, tally, part.mtime, config["logins"]["resolution"], True)
            scanner.since, scanner.until = since, until
            for text, offset in logsource.read_part(part):
                scanner.scan(b"\n" + text, i, offset)
            out.parts.append(part)
    except (NightwardenError, OSError) as e:
        out.error = getattr(e, "message", None) or f"{source.path}: {e}"
    return out


def sample_lines(scan: SourceScan, raw: bytes, limit: int) -> list[str]:
    """Up to `limit` lines naming `raw` from the last segment where it was seen."""
    ref = scan.tally.where.get(raw)
    if ref is None:
        return []
    _, part_index, start, end = ref
    try:
        part = scan.parts[part_index]
        if isinstance(part, bytes):
            data = part[start:end]
        elif part.path.name.endswith(".gz"):
            with gzip.open(part.path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        else:
            fd = logsource._open(part.path)
            try:
                data = os.pread(fd, end - start, start)
            finally:
                os.close(fd)
    except (OSError, IndexError, EOFError):
        return []
    needle = raw
    lines = [ln for ln in data.split(b"\n") if needle in ln]
    return [ln.decode("utf-8", "backslashreplace") for ln in lines[-limit:]]
