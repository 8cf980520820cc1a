"""The `nightwarden` command line: the jobs (from the job registry) and the commands of each
group module (`COMMAND_GROUPS`), each group's parsers beside its handlers. Only argparse is
imported up front: a job module, the firewall, pandas and friends load only when the command
that needs them runs. The exit code is decided in one place: `run` (a job's Result, or the
error hierarchy's code)."""

from __future__ import annotations

import argparse
import importlib
import sys

from nightwarden.lib.errors import EXIT_CODES, EXIT_USAGE, NightwardenError, translate

COMMAND_GROUPS = ("status_cmd", "jobs_cmd", "blocks_cmd", "firewall_cmd", "schedule_cmd")


def commands() -> dict:
    """Every command that is not a job, by name, in the order `--help` lists them."""
    from nightwarden.jobs import JOBS

    table = {}
    modules = [f"{__name__}.{group}" for group in COMMAND_GROUPS]
    modules += [m for job in JOBS.values() for m in job.commands]
    for module in modules:
        for command in importlib.import_module(module).COMMANDS:
            table[command.name] = command
    return table


class Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), as the README's table says."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{_did_you_mean(message)}\n")


def _did_you_mean(message: str) -> str:
    """For argparse's "invalid choice: 'x' (choose from ...)": the nearest choice."""
    import difflib
    import re

    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if m is None:
        return ""
    choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
    near = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: $NIGHTWARDEN_CONFIG or /etc/nightwarden/nightwarden.toml)",
    )
    common.add_argument(
        "--sandbox",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="keep every path under DIR and use the dry-run firewall",
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more output (-vv for debug)"
    )
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="errors only")
    return common


def exit_code_table() -> list[tuple[str, str]]:
    """Every exit code with its meaning: the shared ones, then each job's findings."""
    from nightwarden.jobs import JOBS

    rows = [(str(code), text) for code, text in EXIT_CODES]
    for job in JOBS.values():
        rows += [(f"{job.name} {code}", text) for code, text in job.exit_codes]
    return rows


def _epilog() -> str:
    return "\n".join(["exit codes:"] + [f"  {code:>18}  {text}" for code, text in exit_code_table()])


def build_parser(job: str | None = None) -> Parser:
    """The whole parser; only the job named on the command line has its own arguments
    loaded (importing a job module can be costly)."""
    from nightwarden.jobs import JOBS, load_job

    common = _common()
    parser = Parser(
        prog="nightwarden",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Host defence for Linux servers: firewall blocks, scan and "
        "login-failure blocking, quarantine, file integrity, reports.",
        epilog=_epilog(),
    )
    parser.add_argument("--version", action="version", version="nightwarden 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    dry = argparse.ArgumentParser(add_help=False)
    dry.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")

    for name, info in JOBS.items():
        p = sub.add_parser(name, parents=[common, dry], help=f"job: {info.summary}", description=info.summary)
        if name == job:
            load_job(name).add_arguments(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    for name, command in commands().items():
        p = sub.add_parser(
            name,
            parents=[common, dry] if command.dry_run else [common],
            help=command.summary,
            description=command.summary,
        )
        command.arguments(p)
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


def dispatch(args) -> int:
    """Load the configuration, set up logging, run the job or the command: its exit code."""
    from nightwarden.jobs import JOBS, load_config, load_job
    from nightwarden.lib import logsetup
    from nightwarden.lib.runner import Context, run_job

    name = args.command
    command = commands().get(name)
    if command is not None and not command.needs_config:
        return command.handler(args)
    cfg = load_config(getattr(args, "config", None), getattr(args, "sandbox", None))
    read_only = command is not None and (
        command.read_only or getattr(args, "action", None) in command.read_only_actions
    )
    general = cfg.general
    logsetup.setup(
        args.verbosity,
        None if (read_only or not general.log_file) else cfg.log_dir,
        general.log_level,
        general.syslog and cfg.sandbox is None,
        job=name,
    )
    dry_run = getattr(args, "dry_run", False)
    if name in JOBS:
        return run_job(load_job(name), cfg, args, dry_run)
    ctx = Context(cfg, args, dry_run, name)
    try:
        return command.handler(ctx)
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    import os

    os.umask(0o027)  # whatever the caller's: files no one else may write or read unless said
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_job_in_argv(argv))
    args = parser.parse_args(argv)
    args.verbosity = -1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return dispatch(args)
    except NightwardenError as e:
        print(f"nightwarden: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("nightwarden: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`): not an error
        from nightwarden.lib.runner import silence_stdout

        silence_stdout()
        return 0
    except Exception as e:
        known = translate(e)
        if known is None:
            raise
        print(f"nightwarden: {known}", file=sys.stderr)
        return known.exit_code


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
