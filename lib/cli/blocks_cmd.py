"""`nightwarden block | unblock | allow | deny | blocks | grep`: blocks and the lists by hand
(csf -d, -dr, -a, -td, -g)."""

from __future__ import annotations

import json
import sys
import time

from nightwarden.lib.errors import EXIT_OK, EXIT_REFUSED
from nightwarden.lib.netaddr import display, parse_network

from .command import Command
from .output import left, table, when


def _block_arguments(p) -> None:
    p.add_argument("addresses", nargs="+", metavar="IP")
    p.add_argument("--ttl", help="how long: seconds or 30m, 6h, 7d; 0 = until purged")
    p.add_argument("--reason", default="", help="why (shown in `blocks` and reports)")
    p.add_argument("--permanent", action="store_true", help="a permanent block (kept by purge)")


def _addresses(p) -> None:
    p.add_argument("addresses", nargs="+", metavar="IP")


def _list_arguments(p) -> None:
    p.add_argument("address", metavar="IP")
    p.add_argument("--comment", default="", help="comment written beside the entry")


def _blocks_arguments(p) -> None:
    p.add_argument("--all", action="store_true", help="history too, not only active blocks")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")


def _address(p) -> None:
    p.add_argument("address", metavar="IP")


def _ttl(text: str | None) -> int | None:
    from nightwarden.lib.blocks import validate_ttl

    return None if text is None else validate_ttl(text)


def block(ctx) -> int:
    """Block what may be blocked; say each refusal; exit 79 when any address was refused. A
    malformed address stops the whole command before anything changes (exit 65)."""
    a = ctx.args
    ttl = _ttl(a.ttl)
    mgr = ctx.blocks
    nets = mgr.parse_all(a.addresses)
    refusals = {display(n): why for n in nets if (why := mgr.refusal(n))}
    allowed = [n for n in nets if display(n) not in refusals]
    for addr, why in refusals.items():
        print(f"nightwarden: refusing to block {addr}: {why}", file=sys.stderr)
    ttl = ctx.config.firewall.default_ttl if ttl is None else ttl
    how = "permanently" if a.permanent else (f"for {ttl} s" if ttl else "until purged")
    if allowed and ctx.dry_run:
        ctx.say(f"dry run: would block {', '.join(display(n) for n in allowed)} {how}")
    elif allowed:
        mgr.ensure_ready()
        result = mgr.block(
            allowed, ttl=ttl, reason=a.reason, source="cli", permanent=a.permanent, policy_checked=True
        )
        ctx.say(f"blocked {', '.join(display(n) for n in result.added)} {how}")
    return EXIT_REFUSED if refusals else EXIT_OK


def unblock(ctx) -> int:
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


def allow(ctx) -> int:
    return _list_command(ctx, "allow")


def deny(ctx) -> int:
    return _list_command(ctx, "deny")


def list_blocks(ctx) -> int:
    from nightwarden.lib.lists import load_lists

    now = time.time()
    state = ctx.state
    rows = []
    if ctx.args.all:
        blocks = state.all_blocks()
    else:
        blocks = state.active_blocks(now)
    for b in blocks:
        status = "active" if b.active else f"ended {when(b.removed)} ({b.removed_reason})"
        rows.append(
            {
                "address": b.address,
                "kind": "permanent" if b.permanent else "temporary",
                "source": b.source,
                "reason": b.reason,
                "created": when(b.created),
                "expires": "never"
                if b.permanent
                else (left(b.expires, now) if b.active else when(b.expires)),
                "status": status,
            }
        )
    for e in load_lists(ctx.config).deny.entries:
        rows.append(
            {
                "address": display(e.network) if e.filter is None else str(e.filter),
                "kind": "deny list",
                "source": e.where,
                "reason": e.comment,
                "created": "-",
                "expires": "never",
                "status": "active",
            }
        )
    if ctx.args.json:
        print(json.dumps(rows, indent=1))
    else:
        headers = ["address", "kind", "source", "reason", "created", "expires"]
        if ctx.args.all:
            headers.append("status")
        print(table([[r[h] for h in headers] for r in rows], headers))
    return EXIT_OK


def grep(ctx) -> int:
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
    try:
        why = mgr.refusal(net)
    except NightwardenError as e:  # an unreadable allow or ignore list
        why = str(e)
    print(f"  can be blocked: {'no, ' + why if why else 'yes'}")
    for b in ctx.state.block_history(addr):
        state = "active" if b.active else f"ended {when(b.removed)} ({b.removed_reason})"
        print(
            f"  block: {'permanent' if b.permanent else 'temporary'} by {b.source}, "
            f"{when(b.created)}, expires {when(b.expires) if b.expires else 'never'}, "
            f"{state}; reason: {b.reason or '-'}"
        )
    events = ctx.state.events(address=addr)
    for e in events[-20:]:
        port = f" port {e['port']}/{e['proto']}" if e["port"] else ""
        print(f"  event: {when(e['time'])} {e['kind']}{port} ({e['source']}) {e['detail']}")
    if len(events) > 20:
        print(f"  ({len(events) - 20} older events not shown)")
    try:
        from nightwarden.lib.firewall import open_backend

        kernel = [
            k
            for k in open_backend(ctx.config).list()
            if k.network.version == net.version and k.network.overlaps(net)
        ]
        for k in kernel:
            remaining = f", expires in {int(k.expires_in)} s" if k.expires_in else ""
            print(f"  firewall: in the {k.kind} set as {display(k.network)}{remaining}")
        if not kernel:
            print("  firewall: not in any of nightwarden's sets")
    except NightwardenError as e:
        print(f"  firewall: not inspected ({e})")
    return EXIT_OK


COMMANDS = [
    Command(
        "block",
        "block addresses (temporarily: --ttl, default from config)",
        block,
        _block_arguments,
        dry_run=True,
    ),
    Command("unblock", "lift blocks of addresses", unblock, _addresses, dry_run=True),
    Command(
        "allow",
        "add an address to the allow list (it is never blocked)",
        allow,
        _list_arguments,
        dry_run=True,
    ),
    Command(
        "deny", "add an address to the deny list (blocked permanently)", deny, _list_arguments, dry_run=True
    ),
    Command("blocks", "list the active blocks", list_blocks, _blocks_arguments, read_only=True),
    Command("grep", "everything known about an address", grep, _address, read_only=True),
]
