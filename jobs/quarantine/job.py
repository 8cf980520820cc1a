"""The quarantine job: sweep /tmp, /dev/shm, /var/tmp (and configured directories) for
suspicious files and move them into a tar archive that `tar -xpf` restores; or, in report
mode, only say what it found. Also: list, show and restore quarantined files.

Exit codes: 0 nothing found; 1 suspicious files found (and handled as configured).
"""

from __future__ import annotations

import json
from pathlib import Path

from nightwarden.lib.runner import Result

NAME = "quarantine"


def add_arguments(parser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        default="sweep",
        choices=["sweep", "list", "show", "restore"],
        help="sweep (default), list the manifest, show ID, restore ID",
    )
    parser.add_argument("id", nargs="?", type=int, help="manifest entry (for show and restore)")
    parser.add_argument("--to", metavar="DIR", help="restore under DIR instead of the original path")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="find and alert, archive and remove nothing (mode = report)",
    )
    parser.add_argument("--no-mail", action="store_true", help="no alert mail for this sweep")
    parser.add_argument("--json", action="store_true", help="list, show: JSON")


def is_run(args) -> bool:
    """Only a sweep is a run of the job; list, show and restore only look or put back."""
    return (getattr(args, "action", "sweep") if args is not None else "sweep") == "sweep"


def run(ctx) -> Result:
    action = getattr(ctx.args, "action", "sweep") if ctx.args is not None else "sweep"
    if action in ("show", "restore") and getattr(ctx.args, "id", None) is None:
        from nightwarden.lib.errors import UsageError

        raise UsageError(f"quarantine {action} needs an ID (see: nightwarden quarantine list)")
    return {"sweep": sweep, "list": list_entries, "show": show_entry, "restore": restore}[action](ctx)


def sweep(ctx, only: dict | None = None) -> Result:
    """The sweep; `only`: {root: top-level names} to look at (the listener's sweep on arrival)."""
    from . import ignore
    from .archive import Quarantine, shown
    from .settings import ignore_files, watched_dirs
    from .sweep import Sweep

    qcfg = ctx.config.quarantine
    report_only = qcfg.mode == "report" or getattr(ctx.args, "report_only", False)
    rules = ignore.load_rules(ignore_files(ctx.config))
    for error in rules.errors:
        ctx.log.warning("%s", error)
    handler = Quarantine(ctx.config, ctx.state, report_only, ctx.dry_run)
    walker = Sweep(qcfg, rules, handler)
    if only is None and getattr(ctx.args, "verbosity", 0) >= 0:
        from nightwarden.lib.progress import Progress

        walker.progress = Progress("quarantine", "entries examined")
    try:
        stats = walker.run(watched_dirs(ctx.config), only)
    finally:
        handler.close()
        if walker.progress is not None:
            walker.progress.done(f"{walker.stats.entries:,} entries examined")
    records = handler.outcome.records
    for note in stats.skipped:
        ctx.log.info("%s", note)
    if stats.stopped:
        ctx.log.warning("sweep stopped early: %s", stats.stopped)
    lines = [
        f"{shown(r.finding.path)}  [{r.finding.kind}, owner uid {r.finding.st.st_uid}]\n"
        f"    reason: {'; '.join(r.finding.reasons)}\n    action: {r.action}"
        for r in records
    ]
    quarantined = sum(1 for r in records if r.action.startswith("quarantined"))
    summary = (
        f"{stats.entries} entries in {stats.dirs} directories, {len(records)} suspicious, "
        f"{quarantined} quarantined" + (f"; stopped: {stats.stopped}" if stats.stopped else "")
    )
    ctx.say(f"quarantine: {summary}")
    for line in lines:
        ctx.say("  " + line.replace("\n", "\n  "))
    if records and not getattr(ctx.args, "no_mail", False):
        action = "report only" if report_only or ctx.dry_run else "quarantined into the archive"
        ctx.mailer.alert(
            "filealert",
            {
                "count": len(records),
                "action": action,
                "archive": handler.outcome.archive or "-",
                "files": "\n".join(lines),
            },
        )
    if not ctx.dry_run:
        with ctx.state:
            for r in records:
                ctx.state.add_event(
                    "quarantine",
                    source="quarantine",
                    path=shown(r.finding.path),
                    reason="; ".join(r.finding.reasons),
                    action=r.action,
                )
    return Result(
        1 if records else 0, summary, {"findings": lines, "archive": handler.outcome.archive or "-"}
    )


def list_entries(ctx) -> Result:
    from tabulate import tabulate

    from nightwarden.lib.cli.output import cut

    from .archive import shown
    from .store import QuarantineStore

    rows = QuarantineStore(ctx.state).all()
    if getattr(ctx.args, "json", False):
        ctx.say(json.dumps([_record(ctx, r) for r in rows], indent=1))
        return Result(0, f"{len(rows)} entries")
    table = [
        [
            r["id"],
            _when(r["time"]),
            cut(shown(bytes(r["path"])), 60, middle=True),
            r["owner"],
            cut(r["action"], 30),
            cut(r["reason"], 40),
            "yes" if r["restored"] else "",
        ]
        for r in rows
    ]
    ctx.say(
        tabulate(table, ["id", "time", "path", "owner", "action", "reason", "restored"])
        if table
        else "(the quarantine is empty)"
    )
    return Result(0, f"{len(rows)} entries")


def show_entry(ctx) -> Result:
    from .archive import get_row, shown
    from .settings import archive_dir

    r = get_row(ctx.state, ctx.args.id)
    if getattr(ctx.args, "json", False):
        ctx.say(json.dumps(_record(ctx, r), indent=1))
        return Result(0, f"entry {r['id']}")
    fields = [
        ("id", r["id"]),
        ("time", _when(r["time"])),
        ("path", shown(bytes(r["path"]))),
        ("kind", r["kind"]),
        ("reason", r["reason"]),
        ("action", r["action"]),
        ("owner", f"{r['owner']} (uid {r['uid']}, gid {r['gid']})"),
        ("mode", oct(r["mode"] or 0)),
        ("size", r["size"]),
        ("mtime", _when(r["mtime"])),
        ("sha256", r["sha256"] or "-"),
        ("link target", shown(bytes(r["link_target"])) if r["link_target"] else "-"),
        (
            "archive",
            f"{archive_dir(ctx.config) / r['archive']} (member {shown(bytes(r['member']))})"
            if r["archive"]
            else "-",
        ),
        ("restored", _when(r["restored"]) if r["restored"] else "no"),
    ]
    for key, value in fields:
        ctx.say(f"{key:<12} {value}")
    return Result(0, f"entry {r['id']}")


def _record(ctx, r) -> dict:
    """A manifest row for JSON: named fields, times in ISO 8601 UTC, paths as shown."""
    from nightwarden.lib.cli.output import iso

    from .archive import shown
    from .settings import archive_dir

    return {
        "id": r["id"],
        "time": iso(r["time"]),
        "path": shown(bytes(r["path"])),
        "kind": r["kind"],
        "reason": r["reason"],
        "action": r["action"],
        "owner": r["owner"],
        "uid": r["uid"],
        "gid": r["gid"],
        "mode": None if r["mode"] is None else f"{r['mode']:04o}",
        "size": r["size"],
        "mtime": iso(r["mtime"]),
        "sha256": r["sha256"],
        "link_target": shown(bytes(r["link_target"])) if r["link_target"] else None,
        "archive": str(archive_dir(ctx.config) / r["archive"]) if r["archive"] else None,
        "member": shown(bytes(r["member"])) if r["member"] else None,
        "restored": iso(r["restored"]),
    }


def restore(ctx) -> Result:
    from .archive import restore_member, shown

    # a relative --to is relative to the current directory, as every command means it
    to = Path(ctx.args.to).absolute() if getattr(ctx.args, "to", None) else None
    if ctx.dry_run:
        ctx.say(f"dry run: would restore entry {ctx.args.id}" + (f" under {to}" if to else ""))
        return Result(0, "dry run")
    target = restore_member(ctx.config, ctx.state, ctx.args.id, to)
    ctx.say(f"restored entry {ctx.args.id} to {shown(target)}")
    return Result(0, f"restored entry {ctx.args.id} to {shown(target)}")


def _when(ts) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"
