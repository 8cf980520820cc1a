"""`nightwarden processes`: one look at the running processes (lfd's PT_LIMIT family); see the
package's docstring. Exit 1 when a process was reported for the first time."""

from __future__ import annotations

import json
import os
import signal
import time

from nightwarden.lib.runner import Result

from .look import details, look, read_load, top

NAME = "processes"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="list every suspicious process now (reported before or not); "
        "no mail, nothing recorded, nothing killed",
    )
    parser.add_argument("--json", action="store_true", help="the findings as JSON")
    parser.add_argument("--no-mail", action="store_true", help="no alert mail")
    parser.add_argument(
        "--learn-listeners",
        action="store_true",
        help="take the ports listening now as the expected ones (besides processes.listen_allowed)",
    )


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
    store = ProcessStore(ctx.state)
    expected = None if getattr(args, "learn_listeners", False) else store.listeners()
    seen = look(ctx.config, expected)
    for error in seen.errors:
        ctx.log.warning("%s", error)
    as_json = getattr(args, "json", False)
    say = (lambda line: None) if as_json else ctx.say
    data: dict = {}
    learnt = _learn(ctx, store, expected, seen, report_only, say)
    findings = sorted(seen.findings.values(), key=lambda f: f.pid)
    reported = store.reported()
    fresh = findings if report_only else [f for f in findings if (f.pid, f.started) not in reported]
    now = time.time()
    for f in fresh:
        details(f, ctx.config.processes.detail_lines)
    records = data["suspicious"] = [_record(f, now) for f in fresh]
    for r in records:
        say(f"{r['user']} pid {r['pid']} {r['exe']}: {'; '.join(r['reasons'])}")
    if not report_only and not ctx.dry_run:
        with ctx.state:
            store.record(fresh)
            store.forget_gone(seen.alive)
            for r in records:
                ctx.state.add_event(
                    "process", source=NAME, pid=r["pid"], user=r["user"], exe=r["exe"], why=r["reasons"]
                )
    if records and not report_only and ctx.config.processes.alert and not getattr(args, "no_mail", False):
        ctx.mailer.alert(
            "processtracking",
            {"count": len(records), "processes": "\n\n".join(_block(r) for r in records)},
        )
    extra = _resources(ctx, store, seen, report_only, say, data)
    if as_json:
        ctx.say(json.dumps(data, indent=1))
    summary = f"{seen.count} processes, {len(findings)} suspicious, {len(fresh)} new" + extra + learnt
    return Result(1 if fresh and not report_only else 0, summary)


def _learn(ctx, store, expected, seen, report_only: bool, say) -> str:
    """The first run (or --learn-listeners) takes the ports listening now as expected."""
    cfg = ctx.config.processes
    if expected is not None or not cfg.listen:
        return ""
    if report_only or ctx.dry_run:
        return "; listeners not judged: no baseline yet (the first run takes one)"
    with ctx.state:
        store.set_listeners(seen.listening)
    ports = ", ".join(f"{p}/{t}" for t, p in sorted(seen.listening)) or "none"
    say(f"{len(seen.listening)} listening port(s) taken as expected: {ports}")
    return f"; {len(seen.listening)} listening port(s) taken as expected"


def _resources(ctx, store, seen, report_only: bool, say, data: dict) -> str:
    """lfd's resalert, usertracking and loadalert: each said once while it lasts (a load
    alert then keeps quiet for load_skip seconds); one mail per kind per run. With
    user_kill, a process over a limit is killed each time it is seen."""
    cfg = ctx.config.processes
    alerted = store.alerted()
    keep: set[str] = set()
    res_new = []
    for h in seen.heavy:
        k = f"res:{h['pid']}:{h['started']}:{h['resource']}"
        keep.add(k)
        if report_only or k not in alerted:
            res_new.append((k, h))
    users_new = []
    if cfg.user_proc:
        for user, (count, procs) in seen.per_user.items():
            if count > cfg.user_proc:
                k = f"users:{user}"
                keep.add(k)
                if report_only or k not in alerted:
                    users_new.append((k, user, count, procs))
    load_new = None
    loads = read_load(cfg.load_source) if cfg.load_level else None
    if loads is not None:
        value = loads[{1: 0, 5: 1, 15: 2}[cfg.load_avg]]
        last = alerted.get("load", 0.0)
        if value > cfg.load_level and (report_only or time.time() - last >= cfg.load_skip):
            load_new = (loads, value)
    for _, h in res_new:
        say(f"{h['user']} pid {h['pid']} {h['exe']}: {h['resource']} {h['value']} over {h['limit']}")
    for _, user, count, _ in users_new:
        say(f"{user}: {count} processes, over {cfg.user_proc}")
    if load_new is not None:
        say(f"load average ({cfg.load_avg} min) {load_new[1]:.2f} over {cfg.load_level:g}")
    killed = _kill(ctx, seen.heavy, say) if cfg.user_kill and not report_only else []
    data["resources"] = [h for _, h in res_new]
    data["users"] = [
        {
            "user": user,
            "count": count,
            "limit": cfg.user_proc,
            "processes": [{"pid": p, "cmdline": c} for p, c in procs],
        }
        for _, user, count, procs in users_new
    ]
    data["load"] = (
        None
        if load_new is None
        else {"averages": list(load_new[0]), "minutes": cfg.load_avg, "level": cfg.load_level}
    )
    data["killed"] = killed
    if report_only or ctx.dry_run:
        return _said(res_new, users_new, load_new, killed)
    with ctx.state:
        store.set_alerted(
            [k for k, _ in res_new] + [k for k, *_ in users_new] + (["load"] if load_new else [])
        )
        store.forget_alerts(keep)
        for _, h in res_new:
            ctx.state.add_event("process_resource", source=NAME, **h)
        for _, user, count, _ in users_new:
            ctx.state.add_event("process_count", source=NAME, user=user, count=count, limit=cfg.user_proc)
        if load_new is not None:
            ctx.state.add_event("load", source=NAME, loads=list(load_new[0]), level=cfg.load_level)
        for h in killed:
            ctx.state.add_event("process_killed", source=NAME, **h)
    if cfg.alert and not getattr(ctx.args, "no_mail", False):
        _mail(ctx, res_new, users_new, load_new, killed)
    return _said(res_new, users_new, load_new, killed)


def _kill(ctx, heavy: list[dict], say) -> list[dict]:
    """PT_USERKILL: SIGKILL each process over a limit, once per process, after checking it
    is still the one that was measured (same start time: pids are reused) and is neither
    root's nor this job's own. Ignored processes never reach here."""
    import psutil

    me = os.getpid()
    mine = {me, 1} | {a.pid for a in psutil.Process(me).parents()}  # this job and what runs it
    done, out = set(), []
    for h in heavy:
        if h["pid"] in done:
            continue
        done.add(h["pid"])
        try:
            p = psutil.Process(h["pid"])
            uids = p.uids()
            if round(p.create_time(), 2) != h["started"] or 0 in (uids.real, uids.effective, uids.saved):
                continue
            if h["pid"] in mine or me in {a.pid for a in p.parents()}:
                continue
            if ctx.dry_run:
                say(f"dry run: would kill {h['user']} pid {h['pid']} {h['exe']} ({h['resource']})")
                continue
            p.send_signal(signal.SIGKILL)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied) as e:
            ctx.log.info("pid %s not killed: %s", h["pid"], e.__class__.__name__)
            continue
        ctx.log.warning("killed %s pid %s %s: %s %s over %s", h["user"], h["pid"], h["exe"], *_what(h))
        say(f"killed {h['user']} pid {h['pid']} {h['exe']} ({h['resource']} {h['value']})")
        out.append(h)
    return out


def _what(h: dict) -> tuple:
    return h["resource"], h["value"], h["limit"]


def _mail(ctx, res_new, users_new, load_new, killed) -> None:
    cfg = ctx.config.processes
    if res_new:
        rows = [
            f"{h['user']:<12} {h['pid']:>7}  {h['resource']}: {h['value']} (limit {h['limit']})  {h['exe']}"
            for _, h in res_new
        ]
        ctx.mailer.alert("resalert", {"count": len(res_new), "processes": "\n".join(rows)})
    if users_new:
        text = []
        for _, user, count, procs in users_new:
            text.append(f"{user}: {count} processes (limit {cfg.user_proc})")
            text += [f"  {pid:>7}  {cmd}" for pid, cmd in procs]
            if count > len(procs):
                text.append(f"  ... and {count - len(procs)} more")
        ctx.mailer.alert("usertracking", {"count": len(users_new), "users": "\n".join(text)})
    if load_new is not None:
        (one, five, fifteen), value = load_new
        ctx.mailer.alert(
            "loadalert",
            {
                "loads": f"{one:.2f} {five:.2f} {fifteen:.2f}",
                "avg": cfg.load_avg,
                "value": f"{value:.2f}",
                "level": f"{cfg.load_level:g}",
                "top": "\n".join(top()),
            },
        )
    if killed and cfg.user_kill_alert:
        rows = [
            f"{h['user']:<12} {h['pid']:>7}  {h['resource']}: {h['value']} (limit {h['limit']})  {h['exe']}"
            for h in killed
        ]
        ctx.mailer.alert("killalert", {"count": len(killed), "processes": "\n".join(rows)})


def _said(res_new, users_new, load_new, killed) -> str:
    parts = []
    if res_new:
        parts.append(f"{len(res_new)} over a resource limit")
    if users_new:
        parts.append(f"{len(users_new)} user(s) over the process count")
    if load_new is not None:
        parts.append(f"load {load_new[1]:.2f}")
    if killed:
        parts.append(f"{len(killed)} killed")
    return ("; " + ", ".join(parts)) if parts else ""
