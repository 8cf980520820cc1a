"""The CLI's commands (everything that is not a job). Each returns an exit code."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nightwarden.lib import config as configmod
from nightwarden.lib.errors import EXIT_DATAERR, EXIT_OK, EXIT_UNAVAILABLE, UsageError
from nightwarden.lib.netaddr import display, parse_network
from nightwarden.lib.runner import Context, run_job

READ_ONLY = {"jobs", "config", "blocks", "grep", "runs"}


def dispatch(args) -> int:
    from nightwarden.lib import logsetup

    from nightwarden.jobs import load_config
    cfg = load_config(getattr(args, "config", None), getattr(args, "sandbox", None))
    job = args.command
    logsetup.setup(args.verbosity,
                   None if (job in READ_ONLY or not cfg.general.log_file) else cfg.log_dir,
                   cfg.general.log_level, cfg.general.syslog and cfg.sandbox is None,
                   job=job)
    from nightwarden.jobs import JOBS, load

    if job in JOBS:
        return run_job(load(job), cfg, args, getattr(args, "dry_run", False))
    handler = globals()["cmd_" + job.replace("-", "_")]
    ctx = Context(cfg, args, getattr(args, "dry_run", False), job)
    try:
        return handler(ctx)
    finally:
        ctx.close()


def _table(rows, headers) -> str:
    from tabulate import tabulate
    return tabulate(rows, headers, tablefmt="simple") if rows else "(none)"


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _left(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    secs = int(ts - now)
    if secs <= 0:
        return "expired"
    if secs >= 86400:
        return f"in {secs // 86400}d{secs % 86400 // 3600}h"
    if secs >= 3600:
        return f"in {secs // 3600}h{secs % 3600 // 60:02d}m"
    return f"in {secs // 60}m" if secs >= 60 else f"in {secs}s"


# -- jobs ----------------------------------------------------------------------
def cmd_jobs(ctx) -> int:
    from nightwarden.jobs import JOBS
    sched = ctx.config.schedule.jobs
    rows = [[j.name, "resident" if j.resident else (sched.get(j.name) or "off"),
             "yes" if j.daily else "", j.summary] for j in JOBS.values()]
    print(_table(rows, ["job", "schedule (cron)", "daily", "what it does"]))
    return EXIT_OK


# -- schedule, runs, install -----------------------------------------------------
def cmd_schedule(ctx) -> int:
    from nightwarden.lib import schedule
    from nightwarden.lib.fsutil import atomic_write
    action, out = ctx.args.action, ctx.args.output
    if action == "show":
        import datetime
        now = datetime.datetime.now().astimezone()
        rows = []
        for e in schedule.entries(ctx.config):
            nxt = schedule.trigger(e, now.tzinfo).get_next_fire_time(None, now)
            rows.append([e.job, " ".join(e.cron.fields), e.cron.on_calendar(),
                         nxt.strftime("%a %Y-%m-%d %H:%M") if nxt else "-"])
        print(_table(rows, ["job", "cron", "systemd OnCalendar", "next run"]))
        return EXIT_OK
    if action == "run":
        return _run_schedule(ctx)
    if action == "systemd":
        units = schedule.render_timers(ctx.config)
        units["nightwarden-listener.service"] = schedule.render_listener_unit(ctx.config)
        if out:
            for name, text in units.items():
                atomic_write(Path(out) / name, text.encode(), 0o644)
            ctx.say(f"{len(units)} unit files written to {out}")
        else:
            for name, text in units.items():
                print(f"# --- {name}\n{text}")
        return EXIT_OK
    text = schedule.render_cron(ctx.config) if action == "cron" else schedule.render_logrotate(ctx.config)
    if out:
        atomic_write(Path(out), text.encode(), 0o644)
        ctx.say(f"written: {out}")
    else:
        print(text, end="")
    return EXIT_OK


def _run_schedule(ctx) -> int:
    import signal
    import threading

    from nightwarden.lib import schedule
    stop = threading.Event()

    def on_signal(signum, frame):
        ctx.log.info("signal %d: stopping the scheduler", signum)
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sch = schedule.scheduler(ctx.config)
    sch.start()
    jobs = schedule.entries(ctx.config)
    ctx.log.info("scheduler: %d jobs (%s)", len(jobs),
                 ", ".join(f"{e.job} '{' '.join(e.cron.fields)}'" for e in jobs))
    ctx.say(f"running {len(jobs)} jobs on their schedule; SIGTERM or Ctrl-C stops")
    while not stop.wait(1.0):
        pass
    sch.shutdown(wait=False)
    return EXIT_OK


def cmd_runs(ctx) -> int:
    from nightwarden.jobs import JOBS
    names = [ctx.args.job] if ctx.args.job else list(JOBS)
    if ctx.args.job and ctx.args.job not in JOBS:
        raise UsageError(f"unknown job {ctx.args.job!r} (nightwarden jobs lists them)")
    rows = []
    for name in names:
        for r in ctx.state.last_runs(name, max(1, ctx.args.last)):
            took = (r["ended"] - r["started"]) if r["ended"] else None
            rows.append({"job": name, "started": r["started"], "seconds": took,
                         "exit_code": r["exit_code"], "dry_run": bool(r["dry_run"]),
                         "summary": r["summary"] or ""})
    if ctx.args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    table = [[r["job"], _when(r["started"]),
              "running" if r["seconds"] is None else f"{r['seconds']:.1f} s",
              "-" if r["exit_code"] is None else r["exit_code"],
              ("(dry run) " if r["dry_run"] else "") + r["summary"][:70]] for r in rows]
    print(_table(table, ["job", "started", "took", "exit", "summary"]))
    return EXIT_OK


def cmd_install(ctx) -> int:
    from nightwarden.lib.schedule import install
    for line in install.install(ctx.config, Path(ctx.args.root), timers=ctx.args.timers,
                                force=ctx.args.force, dry_run=ctx.dry_run):
        print(line)
    return EXIT_OK


def cmd_uninstall(ctx) -> int:
    from nightwarden.lib.schedule import install
    for line in install.uninstall(ctx.config, Path(ctx.args.root), dry_run=ctx.dry_run):
        print(line)
    return EXIT_OK


def _job_args(name: str, args) -> argparse.Namespace:
    from nightwarden.jobs import load
    parser = argparse.ArgumentParser(add_help=False)
    load(name).add_arguments(parser)
    ns = parser.parse_args([])
    ns.verbosity, ns.dry_run = args.verbosity, args.dry_run
    return ns


def cmd_daily(ctx) -> int:
    from nightwarden.jobs import daily_order, load
    codes = []
    for name in daily_order():
        codes.append(run_job(load(name), ctx.config, _job_args(name, ctx.args), ctx.dry_run))
    failures = [c for c in codes if c >= 64]
    return failures[0] if failures else max(codes, default=0)


# -- config --------------------------------------------------------------------
def cmd_config(ctx) -> int:
    cfg = ctx.config
    if ctx.args.action == "show":
        print(f"# files read: {', '.join(map(str, cfg.files)) or '(none: embedded defaults)'}")
        print(f"# state {cfg.state_dir}, logs {cfg.log_dir}, reports {cfg.report_dir}, "
              f"locks {cfg.run_dir}, lists {cfg.config_dir}")
        print(configmod.to_toml(cfg.as_dict()))
        return EXIT_OK
    from nightwarden.lib.lists import load_lists
    lists = load_lists(cfg)
    for error in lists.errors:
        print(error)
    print(f"configuration: {', '.join(map(str, cfg.files)) or 'embedded defaults'}: OK")
    print(f"lists: {len(lists.allow.entries)} allow, {len(lists.deny.entries)} deny, "
          f"{len(lists.ignore.entries)} ignore entries; {len(lists.errors)} bad line(s) skipped")
    print(f"firewall backend: {cfg.firewall_backend()}; mail: {cfg.mail.transport}")
    return EXIT_DATAERR if lists.errors else EXIT_OK


# -- blocks --------------------------------------------------------------------
def _ttl(text: str | None) -> int | None:
    from nightwarden.lib.blocks import validate_ttl
    return None if text is None else validate_ttl(text)


def _report_dry_run(ctx) -> None:
    for action in getattr(ctx.firewall, "actions", []):
        if ctx.dry_run:
            ctx.say(f"dry run: would {action}")


def cmd_block(ctx) -> int:
    a = ctx.args
    ttl = _ttl(a.ttl)
    mgr = ctx.blocks
    mgr.ensure_ready()
    if ctx.dry_run:
        nets = mgr.parse_all(a.addresses)
        mgr.require_allowed(nets)
        ctx.say(f"dry run: would block {', '.join(display(n) for n in nets)}")
        return EXIT_OK
    result = mgr.block(a.addresses, ttl=ttl, reason=a.reason, source="cli", permanent=a.permanent)
    ttl = ctx.config.firewall.default_ttl if ttl is None else ttl
    how = "permanently" if a.permanent else (f"for {ttl} s" if ttl else "until purged")
    ctx.say(f"blocked {', '.join(display(n) for n in result.added)} {how}")
    return EXIT_OK


def cmd_unblock(ctx) -> int:
    mgr = ctx.blocks
    mgr.ensure_ready()
    nets = mgr.parse_all(ctx.args.addresses)
    if ctx.dry_run:
        ctx.say(f"dry run: would unblock {', '.join(display(n) for n in nets)}")
        return EXIT_OK
    removed = mgr.unblock(nets)
    for net in nets:
        ctx.say(f"{display(net)}: {'unblocked' if net in removed else 'was not blocked'}")
    return EXIT_OK


def _list_command(ctx, kind: str) -> int:
    """allow or deny: add to nightwarden's own list file and apply it in the kernel."""
    mgr = ctx.blocks
    net = parse_network(ctx.args.address)
    path = ctx.config.list_file(kind)
    if kind == "deny":
        mgr.require_allowed([net], "deny")
    if ctx.dry_run:
        ctx.say(f"dry run: would {kind} {display(net)} in {path}")
        return EXIT_OK
    mgr.ensure_ready()
    added = (mgr.allow if kind == "allow" else mgr.deny)(ctx.args.address, ctx.args.comment)
    done = "allowed" if kind == "allow" else "denied"
    ctx.say(f"{display(net)}: {done if added else f'already on the {kind} list'} ({path})")
    return EXIT_OK


def cmd_allow(ctx) -> int:
    return _list_command(ctx, "allow")


def cmd_deny(ctx) -> int:
    return _list_command(ctx, "deny")


def cmd_blocks(ctx) -> int:
    from nightwarden.lib.lists import load_lists
    now = time.time()
    state = ctx.state
    rows = []
    if ctx.args.all:
        blocks = state.all_blocks()
    else:
        blocks = state.active_blocks(now)
    for b in blocks:
        status = "active" if b.active else f"ended {_when(b.removed)} ({b.removed_reason})"
        rows.append({"address": b.address, "kind": "permanent" if b.permanent else "temporary",
                     "source": b.source, "reason": b.reason, "created": _when(b.created),
                     "expires": "never" if b.permanent else (_left(b.expires, now) if b.active
                                                               else _when(b.expires)),
                     "status": status})
    for e in load_lists(ctx.config).deny.entries:
        rows.append({"address": display(e.network) if e.filter is None else str(e.filter),
                     "kind": "deny list", "source": e.where, "reason": e.comment, "created": "-",
                     "expires": "never", "status": "active"})
    if ctx.args.json:
        print(json.dumps(rows, indent=1))
    else:
        headers = ["address", "kind", "source", "reason", "created", "expires"]
        if ctx.args.all:
            headers.append("status")
        print(_table([[r[h] for h in headers] for r in rows], headers))
    return EXIT_OK


def cmd_grep(ctx) -> int:
    from nightwarden.lib.errors import NightwardenError
    net = parse_network(ctx.args.address)
    from nightwarden.lib.blocks import BlockManager
    from nightwarden.lib.firewall.dryrun import DryRunBackend
    mgr = BlockManager(ctx.config, ctx.state, DryRunBackend())
    lists = mgr.lists
    addr = display(net)
    print(f"{addr}:")
    for kind in ("allow", "deny", "ignore"):
        for e in getattr(lists, kind).entries:
            if e.network.version == net.version and e.network.overlaps(net):
                what = str(e.filter) if e.filter else display(e.network)
                print(f"  {kind} list: {what} ({e.where}){' # ' + e.comment if e.comment else ''}")
    why = mgr.refusal(net)
    print(f"  can be blocked: {'no, ' + why if why else 'yes'}")
    for b in ctx.state.block_history(addr):
        state = "active" if b.active else f"ended {_when(b.removed)} ({b.removed_reason})"
        print(f"  block: {'permanent' if b.permanent else 'temporary'} by {b.source}, "
              f"{_when(b.created)}, expires {_when(b.expires) if b.expires else 'never'}, "
              f"{state}; reason: {b.reason or '-'}")
    events = ctx.state.events(address=addr)
    for e in events[-20:]:
        port = f" port {e['port']}/{e['proto']}" if e["port"] else ""
        print(f"  event: {_when(e['time'])} {e['kind']}{port} ({e['source']}) {e['detail']}")
    if len(events) > 20:
        print(f"  ({len(events) - 20} older events not shown)")
    try:
        from nightwarden.lib.firewall import open_backend
        kernel = [k for k in open_backend(ctx.config).list()
                  if k.network.version == net.version and k.network.overlaps(net)]
        for k in kernel:
            left = f", expires in {int(k.expires_in)} s" if k.expires_in else ""
            print(f"  firewall: in the {k.kind} set as {display(k.network)}{left}")
        if not kernel:
            print("  firewall: not in any of nightwarden's sets")
    except NightwardenError as e:
        print(f"  firewall: not inspected ({e})")
    return EXIT_OK


# -- firewall and mail -----------------------------------------------------------
def cmd_firewall(ctx) -> int:
    action = ctx.args.action
    fw = ctx.firewall
    if action == "status":
        kernel = fw.list()
        counts = {k: sum(1 for e in kernel if e.kind == k) for k in ("allow", "perm", "temp")}
        print(f"backend: {fw.describe()}")
        print(f"base rules: {'in place' if fw.is_ready() else 'missing (run: nightwarden firewall start)'}")
        print(f"entries: {counts['temp']} temporary, {counts['perm']} permanent, "
              f"{counts['allow']} allowed")
        print(f"state: {len(ctx.state.active_blocks())} active blocks")
        return EXIT_OK
    if action == "stop":
        fw.teardown()
        ctx.say(f"removed nightwarden's rules ({fw.describe()}); blocks stay in state for the next start")
        _report_dry_run(ctx)
        return EXIT_OK
    result = ctx.blocks.sync()
    ctx.say(f"firewall ready ({fw.describe()}): {len(result.added)} entries loaded, "
            f"{len(result.removed)} stale removed, {result.expired} expired")
    _report_dry_run(ctx)
    return EXIT_OK


def cmd_mail(ctx) -> int:
    mailer = ctx.mailer
    if ctx.args.action == "flush":
        from nightwarden.lib.errors import NightwardenError
        pending = len(mailer.outbox.pending())
        if ctx.dry_run:
            ctx.say(f"dry run: would deliver {pending} message(s) via {mailer.transport.describe()}")
            return EXIT_OK
        try:
            sent, left = mailer.flush()
        except NightwardenError as e:
            left = len(mailer.outbox.pending())
            print(f"nightwarden: {e}; {left} message(s) still in the outbox")
            return EXIT_UNAVAILABLE
        ctx.say(f"delivered {sent} message(s) via {mailer.transport.describe()}; {left} left")
        return EXIT_OK
    msg = mailer.build("report", {"period": "test message",
                                  "body": "This is a test message from nightwarden.\n"})
    result = mailer.send(msg)
    ctx.say(f"test message {result.status}: {result.where}")
    return EXIT_OK if result.status != "spooled" else EXIT_UNAVAILABLE
