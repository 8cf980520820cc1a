"""`nightwarden status`: one screen of what is going on (csf's -l and lfd's status together):
the firewall, the blocks, the lists, each job's last run, what the jobs report of themselves
(the listener, integrity), the outbox, and the problems worth a look."""

from __future__ import annotations

import importlib
import json
import time

from nightwarden.lib.errors import EXIT_OK
from nightwarden.lib.lock import LockFile

from .command import Command
from .output import iso, when


def _arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="JSON instead of text")


def _jobs(ctx) -> list[dict]:
    from nightwarden.jobs import JOBS

    out = []
    for job in JOBS.values():
        runs = ctx.state.last_runs(job.name, 1)
        last = runs[-1] if runs else None
        pid = LockFile(ctx.config.run_dir / f"{job.name}.lock", f"job {job.name}").holder()
        row = {
            "job": job.name,
            "schedule": "resident" if job.resident else (ctx.config.schedule.jobs.get(job.name) or "off"),
            "running": pid is not None,
            "pid": pid or None,
            "last_start": iso(last["started"]) if last else None,
            "seconds": round(last["ended"] - last["started"], 2) if last and last["ended"] else None,
            "exit_code": last["exit_code"] if last else None,
            "summary": (last["summary"] or "") if last else "",
            "since": iso(last["started"]) if pid is not None and last and not last["ended"] else None,
        }
        if job.status:
            module, _, func = job.status.partition(":")
            try:
                row["details"] = dict(getattr(importlib.import_module(module), func)(ctx.config, ctx.state))
            except Exception as e:  # one job's report of itself must not hide the rest
                row["details"] = {"error": str(e)}
            row["problem"] = row["details"].pop("problem", None)
        out.append(row)
    return out


def facts(ctx) -> dict:
    from nightwarden.lib.lists import load_lists
    from nightwarden.lib.mail import Outbox

    from .firewall_cmd import firewall_facts

    now = time.time()
    fw = firewall_facts(ctx)
    active = ctx.state.active_blocks(now)
    by_source: dict = {}
    for b in active:
        by_source[b.source] = by_source.get(b.source, 0) + 1
    lists = load_lists(ctx.config)
    jobs = _jobs(ctx)
    outbox = len(Outbox(ctx.config.outbox_dir).pending())
    problems = []
    if fw.get("on") is False:
        problems.append(f"the firewall is off: {fw['off_because']} (nightwarden firewall start)")
    if fw.get("base_rules") is False:
        problems.append("the base rules are missing from the kernel (nightwarden firewall start)")
    problems += [f"list: {e}" for e in lists.errors[:10]]
    problems += [
        f"list cannot be read: {why}" for lst in (lists.allow, lists.ignore) for why in lst.unreadable
    ]
    for j in jobs:
        if j["exit_code"] is not None and j["exit_code"] >= 64:
            problems.append(f"{j['job']}: its last run failed (exit {j['exit_code']}): {j['summary']}")
    problems += [f"{j['job']}: {j['problem']}" for j in jobs if j.get("problem")]
    never = [j["job"] for j in jobs if j["schedule"] not in ("off", "resident") and j["last_start"] is None]
    if never:
        problems.append(
            f"scheduled, never ran: {', '.join(never)} (is the schedule installed? nightwarden install)"
        )
    listen = next((j for j in jobs if j["job"] == "listen"), None)
    if listen is not None and not listen["running"] and ctx.config.logins.follow == "listener":
        problems.append("the listener is not running: the cron job reads the logs once a minute")
    if outbox:
        problems.append(f"{outbox} message(s) waiting in the outbox (nightwarden mail flush)")
    return {
        "host": ctx.config.hostname,
        "time": iso(now),
        "firewall": fw,
        "blocks": {
            "active": len(active),
            "temporary": sum(1 for b in active if not b.permanent),
            "permanent": sum(1 for b in active if b.permanent),
            "by_source": dict(sorted(by_source.items(), key=lambda kv: -kv[1])),
        },
        "lists": {kind: len(getattr(lists, kind).entries) for kind in ("allow", "deny", "ignore")},
        "jobs": jobs,
        "outbox": outbox,
        "problems": problems,
    }


def status(ctx) -> int:
    f = facts(ctx)
    if ctx.args.json:
        print(json.dumps(f, indent=1))
        return EXIT_OK
    fw, b = f["firewall"], f["blocks"]
    print(f"nightwarden on {f['host']}, {when(time.time())}")
    state = "unknown" if fw["on"] is None else ("on" if fw["on"] else f"OFF ({fw['off_because']})")
    kernel = fw["kernel_entries"]
    in_kernel = (
        f"; kernel: {kernel['temp']} temporary, {kernel['perm']} permanent, {kernel['allow']} allowed"
        if kernel is not None
        else f"; kernel not inspected ({fw['kernel_unreadable']})"
    )
    print(f"  firewall   {fw['backend']}: {state}{in_kernel}")
    sources = ", ".join(f"{s} {n}" for s, n in b["by_source"].items()) or "none"
    kinds = f"{b['temporary']} temporary, {b['permanent']} permanent"
    print(f"  blocks     {b['active']} active ({kinds}); by source: {sources}")
    lists = f["lists"]
    print(f"  lists      allow {lists['allow']}, deny {lists['deny']}, ignore {lists['ignore']} entries")
    print(f"  outbox     {f['outbox']} message(s) waiting")
    print("  jobs")
    for j in f["jobs"]:
        if j["running"]:
            what = f"running (pid {j['pid']})" + (f" since {j['since']}" if j["since"] else "")
        elif j["last_start"] is None:
            what = "never ran"
        else:
            took = f", {j['seconds']:.1f} s" if j["seconds"] is not None else ""
            what = f"last {j['last_start']}{took}, exit {j['exit_code']}: {j['summary']}"
        print(f"    {j['job']:<15} {j['schedule']:<14} {what}")
        for key, value in (j.get("details") or {}).items():
            print(f"    {'':<15} {key}: {value}")
    if f["problems"]:
        print("  problems")
        for p in f["problems"]:
            print(f"    - {p}")
    else:
        print("  problems   none")
    return EXIT_OK


COMMANDS = [
    Command(
        "status",
        "one screen: firewall, blocks, lists, jobs, listener, problems",
        status,
        _arguments,
        read_only=True,
    )
]
