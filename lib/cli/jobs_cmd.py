"""`nightwarden jobs | daily | runs | config`: the jobs, the daily run, the last runs, and the
configuration."""

from __future__ import annotations

import argparse
import json

from nightwarden.lib.errors import EXIT_DATAERR, EXIT_OK, UsageError

from .command import Command
from .output import cut, table, when


def _runs_arguments(p) -> None:
    p.add_argument("--job", help="only this job")
    p.add_argument("-n", "--last", type=int, default=5, metavar="N", help="runs per job (default 5)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")


def _config_arguments(p) -> None:
    p.add_argument("action", choices=["check", "show"])
    p.add_argument("--json", action="store_true", help="show: JSON (the merged settings and the paths)")


def _jobs_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="JSON instead of a table")


def list_jobs(ctx) -> int:
    from nightwarden.jobs import JOBS

    sched = ctx.config.schedule.jobs
    if ctx.args.json:
        out = [
            {
                "job": j.name,
                "schedule": "resident" if j.resident else (sched.get(j.name) or "off"),
                "daily": j.daily,
                "summary": j.summary,
                "exit_codes": {code: what for code, what in j.exit_codes},
            }
            for j in JOBS.values()
        ]
        print(json.dumps(out, indent=1))
        return EXIT_OK
    rows = [
        [
            j.name,
            "resident" if j.resident else (sched.get(j.name) or "off"),
            "yes" if j.daily else "",
            j.summary,
        ]
        for j in JOBS.values()
    ]
    print(table(rows, ["job", "schedule (cron)", "daily", "what it does"]))
    return EXIT_OK


def _job_args(name: str, args) -> argparse.Namespace:
    from nightwarden.jobs import load_job

    parser = argparse.ArgumentParser(add_help=False)
    load_job(name).add_arguments(parser)
    ns = parser.parse_args([])
    # the jobs of the daily run keep their own output to themselves: the run says one line each
    ns.verbosity, ns.dry_run = min(args.verbosity, -1), args.dry_run
    return ns


def daily(ctx) -> int:
    from nightwarden.jobs import daily_order, load_job
    from nightwarden.lib.runner import run_job

    codes = []
    for name in daily_order():

        def said(code: int, summary: str, seconds: float, name: str = name) -> None:
            state = "failed" if code >= 64 else ("findings" if code else "ok")
            ctx.say(f"{name + ':':<16} {state}, exit {code}, {seconds:.1f} s: {summary}")

        codes.append(run_job(load_job(name), ctx.config, _job_args(name, ctx.args), ctx.dry_run, said))
    failures = [c for c in codes if c >= 64]
    return failures[0] if failures else max(codes, default=0)


def runs(ctx) -> int:
    from nightwarden.jobs import JOBS

    names = [ctx.args.job] if ctx.args.job else list(JOBS)
    if ctx.args.job and ctx.args.job not in JOBS:
        raise UsageError(f"unknown job {ctx.args.job!r} (nightwarden jobs lists them)")
    rows = []
    for name in names:
        for r in ctx.state.last_runs(name, max(1, ctx.args.last)):
            took = (r["ended"] - r["started"]) if r["ended"] else None
            rows.append(
                {
                    "job": name,
                    "started": r["started"],
                    "seconds": took,
                    "exit_code": r["exit_code"],
                    "dry_run": bool(r["dry_run"]),
                    "summary": r["summary"] or "",
                }
            )
    if ctx.args.json:
        from .output import iso

        print(json.dumps([{**r, "started": iso(r["started"])} for r in rows], indent=1))
        return EXIT_OK
    shown = [
        [
            r["job"],
            when(r["started"]),
            "running" if r["seconds"] is None else f"{r['seconds']:.1f} s",
            "-" if r["exit_code"] is None else r["exit_code"],
            cut(("(dry run) " if r["dry_run"] else "") + r["summary"], 70),
        ]
        for r in rows
    ]
    print(table(shown, ["job", "started", "took", "exit", "summary"]))
    return EXIT_OK


def show_config(ctx) -> int:
    from nightwarden.lib.config import to_toml

    cfg = ctx.config
    if ctx.args.action == "show" and ctx.args.json:
        paths = {
            "files": [str(f) for f in cfg.files],
            "state_dir": str(cfg.state_dir),
            "log_dir": str(cfg.log_dir),
            "report_dir": str(cfg.report_dir),
            "run_dir": str(cfg.run_dir),
            "config_dir": str(cfg.config_dir),
        }
        print(json.dumps({"paths": paths, "settings": cfg.as_dict()}, indent=1, default=str))
        return EXIT_OK
    if ctx.args.action == "show":
        print(f"# files read: {', '.join(map(str, cfg.files)) or '(none: embedded defaults)'}")
        print(
            f"# state {cfg.state_dir}, logs {cfg.log_dir}, reports {cfg.report_dir}, "
            f"locks {cfg.run_dir}, lists {cfg.config_dir}"
        )
        print(to_toml(cfg.as_dict()))
        return EXIT_OK
    from nightwarden.lib.lists import load_lists

    lists = load_lists(cfg)
    for error in lists.errors:
        print(error)
    print(f"configuration: {', '.join(map(str, cfg.files)) or 'embedded defaults'}: OK")
    print(
        f"lists: {len(lists.allow.entries)} allow, {len(lists.deny.entries)} deny, "
        f"{len(lists.ignore.entries)} ignore entries; {len(lists.errors)} bad line(s) skipped"
    )
    print(f"firewall backend: {cfg.firewall_backend()}; mail: {cfg.mail.transport}")
    return EXIT_DATAERR if lists.errors else EXIT_OK


COMMANDS = [
    Command("jobs", "list the jobs and their schedules", list_jobs, _jobs_arguments, read_only=True),
    Command("daily", "the daily run: every daily job, then the report", daily, dry_run=True),
    Command(
        "runs",
        "the last runs of each job (start, duration, exit code, summary)",
        runs,
        _runs_arguments,
        read_only=True,
    ),
    Command("config", "check or show the configuration", show_config, _config_arguments, read_only=True),
]
