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


def look(config) -> tuple[list, set, list, list, dict]:
    """(findings, every (pid, start) seen, ignore-list errors, resource excesses, processes
    per user): one pass over /proc."""
    import psutil

    from . import pignore
    from .checks import Finding, examine

    cfg = config.processes
    ignore = pignore.load(ignore_files(config))
    writable = writable_dirs(config)
    me = os.getpid()
    findings, alive, heavy = [], set(), []
    per_user: dict = {}
    attrs = ["pid", "ppid", "username", "uids", "create_time", "cmdline", "memory_info", "cpu_times"]
    for proc in psutil.process_iter(attrs):
        try:
            info = proc.info
            key = (info["pid"], round(info["create_time"] or 0.0, 2))
            alive.add(key)
            uids = info["uids"]
            if info["pid"] == me or (not cfg.all_users and uids is not None and uids.real == 0):
                continue
            argv = info["cmdline"] or []
            if not argv and info["ppid"] in (0, 2):
                continue  # a kernel thread
            exe, reasons = examine(info["pid"], argv, cfg, writable)
            user = info["username"] or str(uids.real if uids else "?")
            cmdline = " ".join(argv)
            if ignore.ignores(user, exe, cmdline):
                continue
            per_user.setdefault(user, []).append((info["pid"], cmdline[:200]))
            heavy += _excess(info, key, user, exe, cfg)
            if reasons:
                findings.append(Finding(info["pid"], key[1], user, info["ppid"] or 0, exe, cmdline, reasons))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # gone, or half-gone, while it was looked at: nothing to say of it
    return findings, alive, ignore.errors, heavy, per_user


def _excess(info: dict, key: tuple, user: str, exe: str, cfg) -> list[dict]:
    """lfd's resalert: a process over PT_USERMEM, PT_USERRSS or PT_USERTIME."""
    mem, cpu = info.get("memory_info"), info.get("cpu_times")
    checks = []
    if mem is not None:
        checks += [
            ("virtual memory (MB)", mem.vms / 1048576, cfg.user_mem),
            ("resident memory (MB)", mem.rss / 1048576, cfg.user_rss),
        ]
    if cpu is not None:
        checks.append(("CPU time (s)", cpu.user + cpu.system, cfg.user_time))
    return [
        {
            "pid": key[0],
            "started": key[1],
            "user": user,
            "exe": exe,
            "resource": name,
            "value": round(value, 1),
            "limit": limit,
        }
        for name, value, limit in checks
        if limit and value > limit
    ]


def read_load(path: str) -> tuple[float, float, float] | None:
    """The 1, 5 and 15-minute load averages from a file in /proc/loadavg's format."""
    try:
        with open(path) as f:
            a, b, c = f.read(256).split()[:3]
        return float(a), float(b), float(c)
    except (OSError, ValueError):
        return None


def _top(count: int = 10) -> list[str]:
    """The processes using the most CPU and memory now (lfd's loadalert snapshot)."""
    import psutil

    rows = []
    for p in psutil.process_iter(["pid", "username", "cpu_percent", "memory_percent", "cmdline"]):
        i = p.info
        rows.append(
            (
                i["cpu_percent"] or 0.0,
                i["memory_percent"] or 0.0,
                i["pid"],
                i["username"],
                " ".join(i["cmdline"] or [])[:100],
            )
        )
    by_cpu = sorted(rows, reverse=True)[:count]
    by_mem = sorted(rows, key=lambda r: -r[1])[:count]
    fmt = lambda r: f"{r[2]:>7} {r[3] or '?':<12} cpu {r[0]:5.1f}%  mem {r[1]:5.1f}%  {r[4]}"  # noqa: E731
    return ["by CPU:"] + [fmt(r) for r in by_cpu] + ["by memory:"] + [fmt(r) for r in by_mem]


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
    findings, alive, errors, heavy, per_user = look(ctx.config)
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
    extra = _resources(ctx, store, heavy, per_user, report_only)
    summary = f"{len(alive)} processes, {len(findings)} suspicious, {len(fresh)} new" + extra
    return Result(1 if fresh and not report_only else 0, summary)


def _resources(ctx, store, heavy: list, per_user: dict, report_only: bool) -> str:
    """lfd's resalert, usertracking and loadalert: each said once while it lasts (a load
    alert then keeps quiet for load_skip seconds); one mail per kind per run."""
    cfg = ctx.config.processes
    alerted = store.alerted()
    keep: set[str] = set()
    res_new = []
    for h in heavy:
        k = f"res:{h['pid']}:{h['started']}:{h['resource']}"
        keep.add(k)
        if report_only or k not in alerted:
            res_new.append((k, h))
    users_new = []
    if cfg.user_proc:
        for user, procs in per_user.items():
            if len(procs) > cfg.user_proc:
                k = f"users:{user}"
                keep.add(k)
                if report_only or k not in alerted:
                    users_new.append((k, user, procs))
    load_new = None
    loads = read_load(cfg.load_source) if cfg.load_level else None
    if loads is not None:
        value = loads[{1: 0, 5: 1, 15: 2}[cfg.load_avg]]
        last = alerted.get("load", 0.0)
        if value > cfg.load_level and (report_only or time.time() - last >= cfg.load_skip):
            load_new = (loads, value)
    for _, h in res_new:
        ctx.say(f"{h['user']} pid {h['pid']} {h['exe']}: {h['resource']} {h['value']} over {h['limit']}")
    for _, user, procs in users_new:
        ctx.say(f"{user}: {len(procs)} processes, over {cfg.user_proc}")
    if load_new is not None:
        ctx.say(f"load average ({cfg.load_avg} min) {load_new[1]:.2f} over {cfg.load_level:g}")
    if report_only or ctx.dry_run:
        return _said(res_new, users_new, load_new)
    mail = cfg.alert and not getattr(ctx.args, "no_mail", False)
    with ctx.state:
        store.set_alerted(
            [k for k, _ in res_new] + [k for k, _, _ in users_new] + (["load"] if load_new else [])
        )
        store.forget_alerts(keep)
    if mail and res_new:
        rows = [
            f"{h['user']:<12} {h['pid']:>7}  {h['resource']}: {h['value']} (limit {h['limit']})  {h['exe']}"
            for _, h in res_new
        ]
        ctx.mailer.alert("resalert", {"count": len(res_new), "processes": "\n".join(rows)})
    if mail and users_new:
        text = []
        for _, user, procs in users_new:
            text.append(f"{user}: {len(procs)} processes (limit {cfg.user_proc})")
            text += [f"  {pid:>7}  {cmd}" for pid, cmd in procs[:100]]
        ctx.mailer.alert("usertracking", {"count": len(users_new), "users": "\n".join(text)})
    if mail and load_new is not None:
        (one, five, fifteen), value = load_new
        ctx.mailer.alert(
            "loadalert",
            {
                "loads": f"{one:.2f} {five:.2f} {fifteen:.2f}",
                "avg": cfg.load_avg,
                "value": f"{value:.2f}",
                "level": f"{cfg.load_level:g}",
                "top": "\n".join(_top()),
            },
        )
    return _said(res_new, users_new, load_new)


def _said(res_new, users_new, load_new) -> str:
    parts = []
    if res_new:
        parts.append(f"{len(res_new)} over a resource limit")
    if users_new:
        parts.append(f"{len(users_new)} user(s) over the process count")
    if load_new is not None:
        parts.append(f"load {load_new[1]:.2f}")
    return ("; " + ", ".join(parts)) if parts else ""
