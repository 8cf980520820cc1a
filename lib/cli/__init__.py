"""The `nightwarden` command line. Only argparse is imported up front: a job module, the
firewall, pandas and friends load only when the command that needs them runs."""

from __future__ import annotations

import argparse
import sys

from nightwarden.lib.errors import EXIT_CODES, EXIT_USAGE, NightwardenError

COMMANDS = {
    "jobs": "list the jobs and their schedules",
    "daily": "the daily run: every daily job, then the report",
    "config": "check or show the configuration",
    "block": "block addresses (temporarily: --ttl, default from config)",
    "unblock": "lift blocks of addresses",
    "allow": "add an address to the allow list (it is never blocked)",
    "deny": "add an address to the deny list (blocked permanently)",
    "blocks": "list the active blocks",
    "grep": "everything known about an address",
    "firewall": "set up, inspect or remove nightwarden's firewall rules",
    "mail": "deliver the outbox, or send a test message",
    "schedule": "the schedule: show it, render cron.d / systemd timers / logrotate.d, or run it",
    "runs": "the last runs of each job (start, duration, exit code, summary)",
    "install": "put the cron.d, logrotate.d and systemd files in place (say what was done)",
    "uninstall": "remove what install put in place (a file changed since is kept)",
}


class Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), as the README's table says."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="configuration file (default: $NIGHTWARDEN_CONFIG or "
                             "/etc/nightwarden/nightwarden.toml)")
    common.add_argument("--sandbox", metavar="DIR", default=argparse.SUPPRESS,
                        help="keep every path under DIR and use the dry-run firewall")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more output (-vv for debug)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="errors only")
    return common


def _epilog() -> str:
    lines = ["exit codes:"] + [f"  {code:>3}  {text}" for code, text in EXIT_CODES]
    return "\n".join(lines)


def build_parser(job: str | None = None) -> Parser:
    from nightwarden.jobs import JOBS

    common = _common()
    parser = Parser(prog="nightwarden", parents=[common],
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="Host defence for Linux servers: firewall blocks, scan and "
                                "login-failure blocking, quarantine, file integrity, reports.",
                    epilog=_epilog())
    parser.add_argument("--version", action="version", version="nightwarden 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    dry = argparse.ArgumentParser(add_help=False)
    dry.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")

    for name, info in JOBS.items():
        p = sub.add_parser(name, parents=[common, dry], help=f"job: {info.summary}",
                           description=info.summary)
        if name == job:
            from nightwarden.jobs import load
            load(name).add_arguments(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def add(name: str, *parents):
        return sub.add_parser(name, parents=[common, *parents], help=COMMANDS[name],
                              description=COMMANDS[name])

    add("jobs")
    add("daily", dry)
    p = add("config")
    p.add_argument("action", choices=["check", "show"])
    p = add("block", dry)
    p.add_argument("addresses", nargs="+", metavar="IP")
    p.add_argument("--ttl", help="how long: seconds or 30m, 6h, 7d; 0 = until purged")
    p.add_argument("--reason", default="", help="why (shown in `blocks` and reports)")
    p.add_argument("--permanent", action="store_true", help="a permanent block (kept by purge)")
    p = add("unblock", dry)
    p.add_argument("addresses", nargs="+", metavar="IP")
    for name in ("allow", "deny"):
        p = add(name, dry)
        p.add_argument("address", metavar="IP")
        p.add_argument("--comment", default="", help="comment written beside the entry")
    p = add("blocks")
    p.add_argument("--all", action="store_true", help="history too, not only active blocks")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p = add("grep")
    p.add_argument("address", metavar="IP")
    p = add("firewall", dry)
    p.add_argument("action", choices=["status", "start", "stop"],
                   help="status: what is in the kernel; start: set up and load every entry "
                        "(also after a reboot); stop: remove all of nightwarden's rules")
    p = add("mail", dry)
    p.add_argument("action", choices=["flush", "test"])
    p = add("schedule")
    p.add_argument("action", choices=["show", "cron", "systemd", "logrotate", "run"],
                   help="show: jobs, cron, OnCalendar, next run; cron/systemd/logrotate: print "
                        "the file(s); run: run the schedule in the foreground (APScheduler)")
    p.add_argument("--output", metavar="PATH", help="write there instead (systemd: a directory)")
    p = add("runs")
    p.add_argument("--job", help="only this job")
    p.add_argument("-n", "--last", type=int, default=5, metavar="N", help="runs per job (default 5)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    for name in ("install", "uninstall"):
        p = add(name, dry)
        p.add_argument("--root", default="/", metavar="DIR",
                       help="install under DIR (for packaging or a look first); default /")
        if name == "install":
            p.add_argument("--timers", action="store_true",
                           help="systemd timer units instead of the cron.d file")
            p.add_argument("--force", action="store_true",
                           help="replace files that were not installed by nightwarden")
    return parser


def _job_in_argv(argv: list[str]) -> str | None:
    from nightwarden.jobs import JOBS

    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in ("--config", "--sandbox"):
            skip = True
            continue
        if token.startswith("-"):
            continue
        return token if token in JOBS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_job_in_argv(argv))
    args = parser.parse_args(argv)
    args.verbosity = -1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        from . import commands
        return commands.dispatch(args)
    except NightwardenError as e:
        print(f"nightwarden: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("nightwarden: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
