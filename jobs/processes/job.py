"""`nightwarden processes`: one look at the running processes (lfd's PT_LIMIT family); see the
package's docstring. Exit 1 when a process was reported for the first time."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from nightwarden.lib.runner import Result

NAME = "processes"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="list every suspicious process now (reported before or not); no mail, nothing recorded",
    )
    parser.add_argument("--json", action="store_true", help="the findings as JSON")
    parser.add_argument("--no-mail", action="store_true", help="no alert mail")


def ignore_files(config) -> list[Path]:
    cfg = config.processes
    files = [config.configured_path(cfg.ignore_file, config.config_dir / "nightwarden.pignore")]
    if config.sandbox is None:
        files += [Path(p) for p in cfg.extra_ignore_files]
    return files


def writable_dirs(config) -> list[str]:
    dirs = list(config.processes.writable_dirs) + list(config.quarantine.dirs)
    return [os.path.realpath(config.sandboxed(d)) for d in dict.fromkeys(dirs)]


def look(config) -> tuple[list, set, list]:
    """(findings, every (pid, start) seen, ignore-list errors): one pass over /proc."""
    import psutil

    from . import pignore
    from .checks import Finding, examine

    cfg = config.processes
    ignore = pignore.load(ignore_files(config))
    writable = writable_dirs(config)
    me = os.getpid()
    findings, alive = [], set()
    attrs = ["pid", "ppid", "username", "uids", "create_time", "cmdline"]
    for proc in psutil.process_iter(attrs):
        try:
            info = proc.info
            key = (info["pid"], round(info["create_time"] or 0.0, 2))
            alive.add(key)
            uids = info["uids"]
            if info["pid"] == me or (not cfg.all_users and uids is not None and uids.real == 0):
                continue
            argv = info["cmdline"] or []
            exe, reasons = examine(info["pid"], argv, cfg, writable)
            if not reasons:
                continue
            user = info["username"] or str(uids.real if uids else "?")
            cmdline = " ".join(argv)
            if ignore.ignores(user, exe, cmdline):
                continue
            findings.append(Finding(info["pid"], key[1], user, info["ppid"] or 0, exe, cmdline, reasons))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # gone, or half-gone, while it was looked at: nothing to say of it
    return findings, alive, ignore.errors


def _details(finding, lines: int) -> None:
    """lfd's processtracking fields: sockets, open files, mapped files (what can be read)."""
    import psutil

    d = finding.details
    try:
        p = psutil.Process(finding.pid)
        d["sockets"] = [
            f"{c.type.name.lower().replace('sock_', '')} {c.laddr.ip}:{c.laddr.port}"
            + (f" -> {c.raddr.ip}:{c.raddr.port}" if c.raddr else "")
            + f" {c.status}"
            for c in p.net_connections(kind="inet")
        ][:lines]
        d["files"] = [f.path for f in p.open_files()][:lines]
        d["maps"] = sorted({m.path for m in p.memory_maps(grouped=True) if m.path.startswith("/")})[:lines]
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, OSError):
        d.setdefault("sockets", [])
        d.setdefault("files", [])
        d.setdefault("maps", [])


def _record(f, now: float) -> dict:
    from nightwarden.lib.cli.output import iso

    return {
        "pid": f.pid,
        "ppid": f.ppid,
        "user": f.user,
        "started": iso(f.started),
        "uptime": int(now - f.started),
        "exe": f.exe,
        "cmdline": f.cmdline,
        "reasons": f.reasons,
        **f.details,
    }


def _block(r: dict) -> str:
    """One process in lfd's processtracking.txt wording."""
    lines = [
        f"User:         {r['user']}",
        f"PID:          {r['pid']} (parent {r['ppid']})",
        f"Started:      {r['started']} (up {r['uptime']} s)",
        f"Executable:   {r['exe']}",
        f"Command line: {r['cmdline'][:500]}",
        f"Why:          {'; '.join(r['reasons'])}",
    ]
    for key, title in (("sockets", "Sockets"), ("files", "Open files"), ("maps", "Mapped files")):
        values = r.get(key) or []
        lines.append(f"{title + ':':<14}{values[0] if values else '(none)'}")
        lines += [f"{'':<14}{v}" for v in values[1:]]
    return "\n".join(lines)


def run(ctx) -> Result:
    from .store import ProcessStore

    args = ctx.args
    report_only = getattr(args, "report_only", False)
    findings, alive, errors = look(ctx.config)
    for error in errors:
        ctx.log.warning("%s", error)
    store = ProcessStore(ctx.state)
    fresh = findings if report_only else [f for f in findings if (f.pid, f.started) not in store.reported()]
    now = time.time()
    for f in fresh:
        _details(f, ctx.config.processes.detail_lines)
    records = [_record(f, now) for f in fresh]
    if getattr(args, "json", False):
        ctx.say(json.dumps(records, indent=1))
    else:
        for r in records:
            ctx.say(f"{r['user']} pid {r['pid']} {r['exe']}: {'; '.join(r['reasons'])}")
    if not report_only and not ctx.dry_run:
        with ctx.state:
            store.record(fresh)
            store.forget_gone(alive)
            for r in records:
                ctx.state.add_event(
                    "process", source=NAME, pid=r["pid"], user=r["user"], exe=r["exe"], why=r["reasons"]
                )
    if records and not report_only and ctx.config.processes.alert and not getattr(args, "no_mail", False):
        ctx.mailer.alert(
            "processtracking",
            {"count": len(records), "processes": "\n\n".join(_block(r) for r in records)},
        )
    summary = f"{len(alive)} processes, {len(findings)} suspicious, {len(fresh)} new"
    return Result(1 if fresh and not report_only else 0, summary)
