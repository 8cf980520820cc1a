"""Retention: the daily run forgets what is older than its keeping time (`[retention]`, in
days; 0 keeps for ever): job runs, events, the scan history, ended blocks, report files and
their charts, and the mail of an mbox or Maildir transport. Rows go in small transactions (the
listener and the jobs keep working), and the database gives the freed pages back a little at a
time. What was pruned is said in the run's summary and recorded as a `prune` event, which the
daily report lists. Quarantine archives go when every file in them is older than their own
(longer) keeping time; their manifest rows stay, saying so."""

from __future__ import annotations

import time
from pathlib import Path

from nightwarden.lib.runner import Result
from nightwarden.lib.settings import Count, Section

NAME = "prune"
DAY = 86400
REPORT_FILES = (
    "report-*.txt",
    "report-*.html",
    "report-*.json",
    "report-*.png",
    "integrity-*.txt",
    "integrity-*.json",
    "history-*.txt",
    "history-*.html",
    "history-*.json",
    "history-*.png",
)


class RetentionSettings(Section):
    runs_days: Count = 90  # job runs (job health, `runs`)
    events_days: Count = 180  # events other than scans (blocks made, logins, quarantine...)
    scan_days: Count = 365  # the scan history (the listener's probes, imported history)
    blocks_days: Count = 365  # blocks that ended (escalation looks back blocks.perm_block_interval)
    reports_days: Count = 90  # report, integrity and scan-history files with their charts
    mail_days: Count = 90  # the local mbox or Maildir (mail.transport mbox or maildir)
    quarantine_days: Count = 365  # quarantine archives whose every entry is older (the rows stay)


def add_arguments(parser) -> None:
    return None


def run(ctx) -> Result:
    r = ctx.config.retention
    now = time.time()
    done: dict[str, int] = {}
    rows = {"runs": r.runs_days, "events": r.events_days, "scans": r.scan_days, "blocks": r.blocks_days}
    for what, days in rows.items():
        if days:
            done[what] = (
                _count(ctx, what, now - days * DAY)
                if ctx.dry_run
                else ctx.state.prune(what, now - days * DAY)
            )
    if r.reports_days:
        done["report files"] = _old_files(
            ctx, ctx.config.report_dir, REPORT_FILES, now - r.reports_days * DAY
        )
    if r.mail_days:
        done["mails"] = _old_mail(ctx, now - r.mail_days * DAY)
    if r.quarantine_days:
        done["quarantine archives"] = _old_archives(ctx, now - r.quarantine_days * DAY, now)
    said = ", ".join(f"{n} {what}" for what, n in done.items() if n) or "nothing"
    if not ctx.dry_run:
        vacuumed = ctx.state.vacuum_step()
        if any(done.values()):
            with ctx.state:
                ctx.state.add_event("prune", source=NAME, **{k.replace(" ", "_"): v for k, v in done.items()})
        summary = f"pruned {said}" + ("" if vacuumed else " (this database has no incremental vacuum)")
    else:
        summary = f"dry run: would prune {said}"
    ctx.say(summary)
    return Result(0, summary)


def _count(ctx, what: str, before: float) -> int:
    table, column, extra = ctx.state.PRUNABLE[what]
    sql = f"SELECT COUNT(*) FROM {table} WHERE {column} < ? AND {extra}"
    return ctx.state.db.execute(sql, (before,)).fetchone()[0]


def _old_files(ctx, directory: Path, patterns, before: float) -> int:
    """Regular files (never through a link) older than `before`."""
    n = 0
    for pattern in patterns:
        for path in directory.glob(pattern):
            try:
                st = path.lstat()
            except OSError:
                continue
            if not path.is_symlink() and path.is_file() and st.st_mtime < before:
                if not ctx.dry_run:
                    path.unlink(missing_ok=True)
                n += 1
    return n


def _old_archives(ctx, before: float, now: float) -> int:
    """Quarantine archives whose every entry is older than `before`: the file goes, the
    manifest rows stay and say so (restore then says why it cannot)."""
    from nightwarden.jobs.quarantine.settings import archive_dir
    from nightwarden.jobs.quarantine.store import QuarantineStore

    store = QuarantineStore(ctx.state)
    names = store.old_archives(before)
    if ctx.dry_run:
        return len(names)
    for name in names:
        path = archive_dir(ctx.config) / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
        store.archive_pruned(name, now)
        ctx.log.warning("quarantine archive %s pruned (every entry older than the retention)", path)
    return len(names)


def _old_mail(ctx, before: float) -> int:
    """Messages of the local mailbox older than `before` (by their Date header)."""
    import mailbox
    from email.utils import parsedate_to_datetime

    m = ctx.config.mail
    if m.transport == "mbox":
        path = ctx.config.configured_path(m.mbox, ctx.config.state_dir / "mail" / "mbox")
        if not path.is_file():
            return 0
        box = mailbox.mbox(path)
    elif m.transport == "maildir":
        path = ctx.config.configured_path(m.maildir, ctx.config.state_dir / "mail" / "Maildir")
        if not path.is_dir():
            return 0
        box = mailbox.Maildir(path, create=False)
    else:
        return 0
    box.lock()
    try:
        old = []
        for key, msg in box.iteritems():
            try:
                when = parsedate_to_datetime(msg["Date"]).timestamp()
            except (TypeError, ValueError):
                continue
            if when < before:
                old.append(key)
        if old and not ctx.dry_run:
            for key in old:
                box.remove(key)
            box.flush()
        return len(old)
    finally:
        box.unlock()
        box.close()
