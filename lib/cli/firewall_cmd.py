"""`nightwarden firewall status | start | stop` and `nightwarden mail flush | test`."""

from __future__ import annotations

import time

from nightwarden.lib.errors import EXIT_OK, EXIT_UNAVAILABLE

from .command import Command


def _firewall_arguments(p) -> None:
    p.add_argument(
        "action",
        choices=["status", "list", "start", "stop", "enable", "disable"],
        help="status: what is in the kernel; list: every kernel entry (csf -l); start: set up and "
        "load every entry (also after a reboot), turning the firewall on; stop: remove all of "
        "nightwarden's rules and keep them off (no job or listener puts them back) until start; "
        "enable/disable: csf's names for start/stop",
    )
    p.add_argument("--json", action="store_true", help="status and list: JSON")


def _mail_arguments(p) -> None:
    p.add_argument(
        "action",
        choices=["flush", "test", "failed"],
        help="flush: deliver the outbox; test: send a test message; failed UNIT: say that a job's "
        "systemd unit failed (its timers' OnFailure= runs this)",
    )
    p.add_argument("unit", nargs="?", help="failed: the unit that failed")


def _report_dry_run(ctx) -> None:
    for action in getattr(ctx.firewall, "actions", []):
        if ctx.dry_run:
            ctx.say(f"dry run: would {action}")


def firewall_facts(ctx) -> dict:
    """What `firewall status` (and `status`) say: from the kernel where it can be read (root),
    from state always."""
    from nightwarden.lib.blocks import OFF
    from nightwarden.lib.errors import NightwardenError, translate
    from nightwarden.lib.firewall import open_backend

    try:
        off = ctx.state.get_meta(OFF)
        facts: dict = {
            "on": not off,
            "off_because": off or None,
            "blocks_in_state": len(ctx.state.active_blocks()),
        }
    except Exception as e:  # a user who may not read the state database
        known = translate(e) if not isinstance(e, NightwardenError) else e
        if known is None:
            raise
        facts = {"on": None, "off_because": None, "blocks_in_state": None, "state_unreadable": str(known)}
    try:
        fw = open_backend(ctx.config, reading=True)
        kernel = fw.list()
        facts["backend"] = fw.describe()
        facts["base_rules"] = fw.is_ready()
        facts["kernel_entries"] = {
            k: sum(1 for e in kernel if e.kind == k) for k in ("temp", "perm", "allow")
        }
    except NightwardenError as e:
        facts["backend"] = ctx.config.firewall_backend()
        facts["base_rules"] = None
        facts["kernel_entries"] = None
        facts["kernel_unreadable"] = str(e)
    return facts


def _status(ctx) -> int:
    import json

    facts = firewall_facts(ctx)
    if ctx.args.json:
        print(json.dumps(facts, indent=1))
        return EXIT_OK
    print(f"backend: {facts['backend']}")
    if facts["on"] is None:
        print(f"firewall: unknown (state: {facts['state_unreadable']})")
    else:
        print(f"firewall: {'on' if facts['on'] else 'OFF: ' + facts['off_because']}")
    if facts["kernel_entries"] is None:
        print(f"kernel: not inspected ({facts['kernel_unreadable']})")
    else:
        ready = "in place" if facts["base_rules"] else "missing (run: nightwarden firewall start)"
        print(f"base rules: {ready}")
        n = facts["kernel_entries"]
        print(f"entries: {n['temp']} temporary, {n['perm']} permanent, {n['allow']} allowed")
    if facts["blocks_in_state"] is not None:
        print(f"state: {facts['blocks_in_state']} active blocks")
    return EXIT_OK


def _list(ctx) -> int:
    """Every entry in the kernel (csf -l), as the kernel has it."""
    import json

    from nightwarden.lib.firewall import open_backend
    from nightwarden.lib.netaddr import display

    from .output import left, table

    kernel = sorted(
        open_backend(ctx.config, reading=True).list(), key=lambda e: (e.kind, e.network.version, e.network)
    )
    names = {"temp": "temporary", "perm": "permanent", "allow": "allowed"}
    rows = [
        {
            "address": display(e.network),
            "kind": names.get(e.kind, e.kind),
            "expires_in": None if e.expires_in is None else int(e.expires_in),
        }
        for e in kernel
    ]
    if ctx.args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    now = time.time()
    shown = [
        [r["address"], r["kind"], "never" if r["expires_in"] is None else left(now + r["expires_in"], now)]
        for r in rows
    ]
    print(table(shown, ["address", "kind", "expires"]))
    return EXIT_OK


def firewall(ctx) -> int:
    action = ctx.args.action
    if action == "status":
        return _status(ctx)
    if action == "list":
        return _list(ctx)
    fw = ctx.firewall
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
    if ctx.args.action == "failed":
        unit = ctx.args.unit or "a nightwarden unit"
        job = unit.removeprefix("nightwarden-").removesuffix(".service")
        result = mailer.alert("jobfailed", {"unit": unit, "job": job})
        ctx.say(f"failure of {unit} {result.status}: {result.where}")
        return EXIT_OK if result.status != "spooled" else EXIT_UNAVAILABLE
    msg = mailer.build(
        "report",
        {
            "period": "test message",
            "headline": "test message",
            "body": "This is a test message from nightwarden.\n",
        },
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
        read_only_actions=("status", "list"),
    ),
    Command("mail", "deliver the outbox, or send a test message", mail, _mail_arguments, dry_run=True),
]
