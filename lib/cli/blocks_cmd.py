"""`nightwarden block | unblock | allow | deny | ignore | blocks | grep`: blocks and the lists by
hand (csf -d, -dr, -a, -ar, -td, -g)."""

from __future__ import annotations

import json
import sys
import time

from nightwarden.lib.errors import EXIT_OK, EXIT_REFUSED
from nightwarden.lib.netaddr import display, parse_network

from .command import Command
from .output import duration, left, table, when


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
    p.add_argument("--remove", action="store_true", help="take the address off the list instead")


def _unlist_arguments(p) -> None:
    p.add_argument("address", metavar="IP")


def _blocks_arguments(p) -> None:
    p.add_argument("--all", action="store_true", help="history too, not only active blocks")
    p.add_argument(
        "--source", help="only blocks made by this: login-failures, listener, cli, scan-history, netblock..."
    )
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--permanent", action="store_true", help="only permanent blocks (and the deny list)")
    kind.add_argument("--temporary", action="store_true", help="only temporary blocks")
    p.add_argument("--address", metavar="CIDR", help="only blocks inside this address or network")
    p.add_argument("--sort", choices=["created", "expires", "address"], default="created", help="order")
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
    how = "permanently" if a.permanent else (f"for {duration(ttl)}" if ttl else "until purged")
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
        if net in removed:
            ctx.say(f"{display(net)}: unblocked")
            continue
        allowed = mgr.lists.allow.match(net)
        where = f" (it is on the allow list in {allowed.where}: never blocked)" if allowed else ""
        ctx.say(f"{display(net)}: was not blocked{where}")
    return EXIT_OK


def _list_command(ctx, kind: str) -> int:
    """allow, deny or ignore: add to nightwarden's own list file and apply it in the kernel
    (--remove: take it off)."""
    mgr = ctx.blocks
    net = parse_network(ctx.args.address)
    path = ctx.config.list_file(kind)
    if getattr(ctx.args, "remove", False):
        return _unlist(ctx, kind, net, path)
    if kind == "ignore":
        return _ignore(ctx, net, path)
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


def _ignore(ctx, net, path) -> int:
    """The ignore list (csf.ignore): never blocked by detection; blocks in place stay."""
    from nightwarden.lib.lists import append_entry

    if any(e.filter is None for e in ctx.blocks.lists.ignore.exact(net)):
        ctx.say(f"{display(net)}: already on the ignore list ({path})")
        return EXIT_OK
    if ctx.dry_run:
        ctx.say(f"dry run: would ignore {display(net)} in {path}")
        return EXIT_OK
    append_entry(path, net, ctx.args.comment or time.strftime("ignored %Y-%m-%d %H:%M"))
    ctx.say(f"{display(net)}: ignored ({path})")
    if ctx.state.active_block(display(net)) is not None:
        ctx.say(f"  it is blocked now; `nightwarden unblock {display(net)}` lifts that")
    return EXIT_OK


def _unlist(ctx, kind: str, net, path) -> int:
    """Take an address off our own list file (csf -ar, -dr), keeping every other line."""
    from nightwarden.lib.errors import RefusedError
    from nightwarden.lib.lists import remove_entry

    mgr = ctx.blocks
    entries = getattr(mgr.lists, kind).exact(net)
    elsewhere = [e for e in entries if e.file != str(path)]
    if elsewhere and not [e for e in entries if e.file == str(path)]:
        raise RefusedError(f"{display(net)} is on the {kind} list in {elsewhere[0].where}; remove it there")
    if not entries:
        ctx.say(f"{display(net)}: not on the {kind} list ({path})")
        return EXIT_OK
    if ctx.dry_run:
        ctx.say(f"dry run: would take {display(net)} off the {kind} list in {path}")
        return EXIT_OK
    if kind == "allow":
        mgr.ensure_ready()
        mgr.unallow(ctx.args.address)
    elif kind == "deny":
        mgr.ensure_ready()
        mgr.unblock([net], reason="removed from the deny list")
    else:
        remove_entry(path, net)
    ctx.say(f"{display(net)}: taken off the {kind} list ({path})")
    if elsewhere:
        ctx.say(f"  it is still on the {kind} list in {elsewhere[0].where}")
    return EXIT_OK


def allow(ctx) -> int:
    return _list_command(ctx, "allow")


def ignore(ctx) -> int:
    return _list_command(ctx, "ignore")


def _unlisted(kind: str):
    def handler(ctx) -> int:
        ctx.args.remove = True
        return _list_command(ctx, kind)

    return handler


def deny(ctx) -> int:
    return _list_command(ctx, "deny")


def list_blocks(ctx) -> int:
    from nightwarden.lib.lists import load_lists

    from .output import iso

    a = ctx.args
    now = time.time()
    inside = parse_network(a.address) if a.address else None
    blocks = ctx.state.all_blocks() if a.all else ctx.state.active_blocks(now)
    rows = []
    for b in blocks:
        rows.append(
            {
                "address": b.address,
                "kind": "permanent" if b.permanent else "temporary",
                "source": b.source,
                "reason": b.reason,
                "created": b.created,
                "expires": None if b.permanent else b.expires,
                "active": bool(b.active),
                "ended": None if b.active else b.removed,
                "ended_why": None if b.active else b.removed_reason,
            }
        )
    for e in load_lists(ctx.config).deny.entries:
        rows.append(
            {
                "address": display(e.network) if e.filter is None else str(e.filter),
                "kind": "deny list",
                "source": e.where,
                "reason": e.comment,
                "created": None,
                "expires": None,
                "active": True,
                "ended": None,
                "ended_why": None,
                "network": e.network,
            }
        )
    rows = [r for r in rows if _wanted(r, a, inside)]
    key = {
        "created": lambda r: r["created"] or 0,
        "expires": lambda r: r["expires"] if r["expires"] is not None else float("inf"),
        "address": lambda r: r["address"],
    }[a.sort]
    rows.sort(key=key)
    if a.json:
        out = []
        for r in rows:
            r.pop("network", None)
            out.append(
                {
                    **r,
                    "created": iso(r["created"]),
                    "expires": iso(r["expires"]),
                    "expires_in": None if r["expires"] is None else max(0, int(r["expires"] - now)),
                    "ended": iso(r["ended"]),
                }
            )
        print(json.dumps(out, indent=1))
        return EXIT_OK
    headers = ["address", "kind", "source", "reason", "created", "expires"] + (["status"] if a.all else [])
    table_rows = []
    for r in rows:
        if r["kind"] == "deny list" or r["expires"] is None:
            expires = "never"
        else:
            expires = left(r["expires"], now) if r["active"] else when(r["expires"])
        status = "active" if r["active"] else f"ended {when(r['ended'])} ({r['ended_why']})"
        cells = [
            r["address"],
            r["kind"],
            r["source"],
            r["reason"],
            when(r["created"]) if r["created"] else "-",
        ]
        table_rows.append(cells + [expires] + ([status] if a.all else []))
    print(table(table_rows, headers))
    return EXIT_OK


def _wanted(row: dict, a, inside) -> bool:
    if (
        a.source
        and row["source"] != a.source
        and not (a.source == "deny-list" and row["kind"] == "deny list")
    ):
        return False
    if a.permanent and row["kind"] == "temporary":
        return False
    if a.temporary and row["kind"] != "temporary":
        return False
    if inside is not None:
        net = row.get("network")
        if net is None:
            try:
                net = parse_network(row["address"])
            except Exception:
                return False
        if net.version != inside.version or not net.subnet_of(inside):
            return False
    return True


def grep_facts(ctx, net) -> dict:
    """Everything known about an address: list entries, whether it may be blocked, its
    blocks, its events and the kernel's entries."""
    from nightwarden.lib.blocks import BlockManager
    from nightwarden.lib.errors import NightwardenError
    from nightwarden.lib.firewall.dryrun import DryRunBackend

    mgr = BlockManager(ctx.config, ctx.state, DryRunBackend())
    addr = display(net)
    out: dict = {"address": addr, "lists": [], "blocks": [], "events": [], "firewall": None}
    for kind in ("allow", "deny", "ignore"):
        for e in getattr(mgr.lists, kind).entries:
            if e.network.version == net.version and e.network.overlaps(net):
                out["lists"].append(
                    {
                        "list": kind,
                        "entry": str(e.filter) if e.filter else display(e.network),
                        "where": e.where,
                        "comment": e.comment,
                    }
                )
    try:
        why = mgr.refusal(net)
    except NightwardenError as e:  # an unreadable allow or ignore list
        why = str(e)
    out["can_be_blocked"], out["refusal"] = why is None, why
    for b in ctx.state.block_history(addr):
        out["blocks"].append(
            {
                "kind": "permanent" if b.permanent else "temporary",
                "source": b.source,
                "reason": b.reason,
                "created": b.created,
                "expires": b.expires,
                "active": bool(b.active),
                "ended": None if b.active else b.removed,
                "ended_why": None if b.active else b.removed_reason,
            }
        )
    events = ctx.state.events(address=addr)
    out["events_total"] = len(events)
    for e in events[-20:]:
        out["events"].append(
            {
                "time": e["time"],
                "kind": e["kind"],
                "port": e["port"],
                "proto": e["proto"],
                "source": e["source"],
                "detail": json.loads(e["detail"]) if e["detail"] else None,
            }
        )
    try:
        from nightwarden.lib.firewall import open_backend

        out["firewall"] = [
            {
                "set": k.kind,
                "entry": display(k.network),
                "expires_in": None if not k.expires_in else int(k.expires_in),
            }
            for k in open_backend(ctx.config, reading=True).list()
            if k.network.version == net.version and k.network.overlaps(net)
        ]
    except NightwardenError as e:
        out["firewall_unreadable"] = str(e)
    return out


def grep(ctx) -> int:
    net = parse_network(ctx.args.address)
    f = grep_facts(ctx, net)
    if getattr(ctx.args, "json", False):
        from .output import iso

        for b in f["blocks"]:
            b.update(created=iso(b["created"]), expires=iso(b["expires"]), ended=iso(b["ended"]))
        for e in f["events"]:
            e["time"] = iso(e["time"])
        print(json.dumps(f, indent=1))
        return EXIT_OK
    print(f"{f['address']}:")
    for e in f["lists"]:
        print(
            f"  {e['list']} list: {e['entry']} ({e['where']}){' # ' + e['comment'] if e['comment'] else ''}"
        )
    print(f"  can be blocked: {'yes' if f['can_be_blocked'] else 'no, ' + f['refusal']}")
    for b in f["blocks"]:
        state = "active" if b["active"] else f"ended {when(b['ended'])} ({b['ended_why']})"
        print(
            f"  block: {b['kind']} by {b['source']}, {when(b['created'])}, "
            f"expires {when(b['expires']) if b['expires'] else 'never'}, "
            f"{state}; reason: {b['reason'] or '-'}"
        )
    for e in f["events"]:
        port = f" port {e['port']}/{e['proto']}" if e["port"] else ""
        detail = json.dumps(e["detail"]) if e["detail"] is not None else ""
        print(f"  event: {when(e['time'])} {e['kind']}{port} ({e['source']}) {detail}")
    if f["events_total"] > len(f["events"]):
        print(f"  ({f['events_total'] - len(f['events'])} older events not shown)")
    if f["firewall"] is None:
        print(f"  firewall: not inspected ({f['firewall_unreadable']})")
    elif not f["firewall"]:
        print("  firewall: not in any of nightwarden's sets")
    for k in f["firewall"] or []:
        remaining = f", expires in {k['expires_in']} s" if k["expires_in"] else ""
        print(f"  firewall: in the {k['set']} set as {k['entry']}{remaining}")
    return EXIT_OK


def _grep_arguments(p) -> None:
    p.add_argument("address", metavar="IP")
    p.add_argument("--json", action="store_true", help="JSON instead of text")


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
    Command(
        "ignore",
        "add an address to the ignore list (never blocked by detection)",
        ignore,
        _list_arguments,
        dry_run=True,
    ),
    Command(
        "unallow",
        "take an address off the allow list (allow --remove)",
        _unlisted("allow"),
        _unlist_arguments,
        dry_run=True,
    ),
    Command(
        "undeny",
        "take an address off the deny list (deny --remove)",
        _unlisted("deny"),
        _unlist_arguments,
        dry_run=True,
    ),
    Command(
        "unignore",
        "take an address off the ignore list (ignore --remove)",
        _unlisted("ignore"),
        _unlist_arguments,
        dry_run=True,
    ),
    Command("blocks", "list the active blocks", list_blocks, _blocks_arguments, read_only=True),
    Command("grep", "everything known about an address", grep, _grep_arguments, read_only=True),
]
