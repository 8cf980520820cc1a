"""`nightwarden schedule | install | uninstall`: one schedule rendered for cron.d, systemd
timers and logrotate.d, or run in the foreground; the files put in place and taken away."""

from __future__ import annotations

from pathlib import Path

from nightwarden.lib.errors import EXIT_OK

from .command import Command
from .output import table


def _schedule_arguments(p) -> None:
    p.add_argument(
        "action",
        choices=["show", "cron", "systemd", "logrotate", "run"],
        help="show: jobs, cron, OnCalendar, next run; cron/systemd/logrotate: print "
        "the file(s); run: run the schedule in the foreground (APScheduler)",
    )
    p.add_argument("--output", metavar="PATH", help="write there instead (systemd: a directory)")
    p.add_argument("--json", action="store_true", help="show: JSON")


def _root(p) -> None:
    p.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="the system's root, or DIR (for packaging or a look first); default /",
    )


def _install_arguments(p) -> None:
    _root(p)
    p.add_argument("--timers", action="store_true", help="systemd timer units instead of the cron.d file")
    p.add_argument(
        "--force", action="store_true", help="replace files that were not installed by nightwarden"
    )


def schedule_command(ctx) -> int:
    from nightwarden.lib import schedule
    from nightwarden.lib.fsutil import atomic_write

    action, out = ctx.args.action, ctx.args.output
    if action == "show":
        import datetime

        now = datetime.datetime.now().astimezone()
        rows = []
        if ctx.args.json:
            import json

            out = []
            for e in schedule.entries(ctx.config):
                nxt = schedule.trigger(e, now.tzinfo).get_next_fire_time(None, now)
                out.append(
                    {
                        "job": e.job,
                        "cron": " ".join(e.cron.fields),
                        "on_calendar": e.cron.on_calendar(),
                        "next": nxt.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if nxt else None,
                    }
                )
            print(json.dumps(out, indent=1))
            return EXIT_OK
        for e in schedule.entries(ctx.config):
            nxt = schedule.trigger(e, now.tzinfo).get_next_fire_time(None, now)
            rows.append(
                [
                    e.job,
                    " ".join(e.cron.fields),
                    e.cron.on_calendar(),
                    nxt.strftime("%a %Y-%m-%d %H:%M") if nxt else "-",
                ]
            )
        print(table(rows, ["job", "cron", "systemd OnCalendar", "next run"]))
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
    ctx.log.info(
        "scheduler: %d jobs (%s)", len(jobs), ", ".join(f"{e.job} '{' '.join(e.cron.fields)}'" for e in jobs)
    )
    ctx.say(f"running {len(jobs)} jobs on their schedule; SIGTERM or Ctrl-C stops")
    while not stop.wait(1.0):
        pass
    sch.shutdown(wait=False)
    return EXIT_OK


def install_files(ctx) -> int:
    """Exit 73 (can't create) when a file was left alone: the schedule is not what it says."""
    import sys

    from nightwarden.lib.errors import EXIT_CANTCREAT
    from nightwarden.lib.schedule import install

    root = Path(ctx.args.root)
    for line in install.warnings(ctx.config, root):
        print(line, file=sys.stderr)
    said = install.install(
        ctx.config, root, timers=ctx.args.timers, force=ctx.args.force, dry_run=ctx.dry_run
    )
    for line in said:
        print(line)
    left = [line for line in said if line.startswith("left alone ")]
    if root == Path("/") and not ctx.dry_run and not left:
        for line in install.next_steps(ctx.args.timers, bool(ctx.config.fleet.signing_key)):
            print(line)
    return EXIT_CANTCREAT if left else EXIT_OK


def _uninstall_arguments(p) -> None:
    _root(p)
    p.add_argument("--force", action="store_true", help="remove files changed since they were installed too")


def uninstall_files(ctx) -> int:
    from nightwarden.lib.schedule import install

    for line in install.uninstall(ctx.config, Path(ctx.args.root), dry_run=ctx.dry_run, force=ctx.args.force):
        print(line)
    return EXIT_OK


COMMANDS = [
    Command(
        "schedule",
        "the schedule: show it, render cron.d / systemd timers / logrotate.d, or run it",
        schedule_command,
        _schedule_arguments,
    ),
    Command(
        "install",
        "put the cron.d, logrotate.d and systemd files in place (say what was done)",
        install_files,
        _install_arguments,
        dry_run=True,
    ),
    Command(
        "uninstall",
        "remove what install put in place (a file changed since is kept unless --force)",
        uninstall_files,
        _uninstall_arguments,
        dry_run=True,
    ),
]
