"""`nightwarden firewall status | start | stop` and `nightwarden mail flush | test`."""

from __future__ import annotations

import time

from nightwarden.lib.errors import EXIT_OK, EXIT_UNAVAILABLE

from .command import Command


def _firewall_arguments(p) -> None:
    p.add_argument(
        "action",
        choices=["status", "start", "stop", "enable", "disable"],
        help="status: what is in the kernel; start: set up and load every entry "
        "(also after a reboot), turning the firewall on; stop: remove all of nightwarden's rules "
        "and keep them off (no job or listener puts them back) until start; enable/disable: "
        "csf's names for start/stop",
    )


def _mail_arguments(p) -> None:
    p.add_argument("action", choices=["flush", "test"])


def _report_dry_run(ctx) -> None:
    for action in getattr(ctx.firewall, "actions", []):
        if ctx.dry_run:
            ctx.say(f"dry run: would {action}")


def firewall(ctx) -> int:
    action = ctx.args.action
    fw = ctx.firewall
    if action == "status":
        kernel = fw.list()
        counts = {k: sum(1 for e in kernel if e.kind == k) for k in ("allow", "perm", "temp")}
        print(f"backend: {fw.describe()}")
        off = ctx.blocks.off()
        print(f"firewall: {'OFF: ' + off if off else 'on'}")
        print(f"base rules: {'in place' if fw.is_ready() else 'missing (run: nightwarden firewall start)'}")
        print(f"entries: {counts['temp']} temporary, {counts['perm']} permanent, {counts['allow']} allowed")
        print(f"state: {len(ctx.state.active_blocks())} active blocks")
        return EXIT_OK
    if action in ("stop", "disable"):
        if not ctx.dry_run:  # first the flag: nothing puts the rules back from now on
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            ctx.blocks.turn_off(f"{'stopped' if action == 'stop' else 'disabled'} at {stamp}")
        fw.teardown()
        ctx.say(
            f"removed nightwarden's rules ({fw.describe()}); nothing is blocked and nothing puts them "
            f"back until `nightwarden firewall start`; blocks stay in state for it"
        )
        _report_dry_run(ctx)
        return EXIT_OK
    if not ctx.dry_run:
        ctx.blocks.turn_on()
    result = ctx.blocks.sync()
    ctx.say(
        f"firewall ready ({fw.describe()}): {len(result.added)} entries loaded, "
        f"{len(result.removed)} stale removed, {result.expired} expired"
    )
    _report_dry_run(ctx)
    return EXIT_OK


def mail(ctx) -> int:
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
    msg = mailer.build(
        "report", {"period": "test message", "body": "This is a test message from nightwarden.\n"}
    )
    result = mailer.send(msg)
    ctx.say(f"test message {result.status}: {result.where}")
    return EXIT_OK if result.status != "spooled" else EXIT_UNAVAILABLE


COMMANDS = [
    Command(
        "firewall",
        "set up, inspect or remove nightwarden's firewall rules",
        firewall,
        _firewall_arguments,
        dry_run=True,
    ),
    Command("mail", "deliver the outbox, or send a test message", mail, _mail_arguments, dry_run=True),
]
