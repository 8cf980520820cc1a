"""`nightwarden connections`: one count of the connections per address (lfd's CT_LIMIT); an
address over the limit is blocked. Skipped while the listener does it (it holds the lock)."""

from __future__ import annotations

from dataclasses import dataclass

from nightwarden.lib.runner import Result

NAME = "connections"


def add_arguments(parser) -> None:
    parser.add_argument("--no-mail", action="store_true", help="no alert mail")


@dataclass
class Over:
    address: str
    count: int
    blocked: bool
    why: str = ""  # why it was not blocked


def watch_lock(config):
    from nightwarden.lib.lock import LockFile

    # not the job's own lock (the runner holds that while the job runs): the listener holds
    # this one for as long as it tracks, and the job takes it for the moment it counts
    return LockFile(config.run_dir / "connections-tracking.lock", "tracking connections")


def check(config, state, mgr, dry_run: bool = False, say=None) -> list[Over]:
    """Count, and block every address over the limit (not already blocked; the lists win)."""
    from . import count

    cfg = config.connections
    counts = count.per_address(cfg)
    out = []
    for addr, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if n <= cfg.limit or state.active_block(addr) is not None:
            continue
        reason = f"connection tracking: {n} connections (limit {cfg.limit})"
        if dry_run:
            why = mgr.refusal(mgr.parse_all([addr])[0])
            if say is not None:
                say(f"dry run: would block {addr} ({reason})" + (f"; refused: {why}" if why else ""))
            out.append(Over(addr, n, False, why or "dry run"))
            continue
        result = mgr.block(
            [addr],
            ttl=0 if cfg.permanent else cfg.block_time,
            permanent=cfg.permanent,
            reason=reason,
            source="connections",
            strict=False,
        )
        over = Over(addr, n, bool(result.added), result.refused[0][1] if result.refused else "")
        with state:
            state.add_event("connections", addr, source="connections", count=n, limit=cfg.limit, why=over.why)
        out.append(over)
    return out


def alert_fields(config, found: list[Over]) -> dict:
    cfg = config.connections
    rows = [
        f"{o.address:<40} {o.count:>6}  " + ("blocked" if o.blocked else f"not blocked: {o.why}")
        for o in found
    ]
    return {
        "count": len(found),
        "limit": cfg.limit,
        "block": "permanent" if cfg.permanent else f"temporary, {cfg.block_time} s",
        "addresses": "\n".join(rows[:500]),
    }


def run(ctx) -> Result:
    from nightwarden.lib.errors import BusyError

    cfg = ctx.config.connections
    if not cfg.limit:
        return Result(0, "connection tracking is off (connections.limit = 0)")
    lock = watch_lock(ctx.config)
    try:
        lock.acquire()
    except BusyError:
        ctx.say("connections are tracked by the listener")
        return Result(0, "tracked by the listener")
    try:
        if not ctx.dry_run:
            ctx.blocks.ensure_ready()
        found = check(ctx.config, ctx.state, ctx.blocks, ctx.dry_run, ctx.say)
    finally:
        lock.release()
    blocked = [o for o in found if o.blocked]
    for o in found:
        if not ctx.dry_run:
            ctx.say(
                f"{o.address}: {o.count} connections, "
                + ("blocked" if o.blocked else f"not blocked: {o.why}")
            )
    if found and not ctx.dry_run and cfg.alert and not getattr(ctx.args, "no_mail", False):
        ctx.mailer.alert("connectiontracking", alert_fields(ctx.config, found))
    summary = f"{len(found)} address(es) over {cfg.limit} connections, {len(blocked)} blocked"
    return Result(1 if blocked else 0, summary)


def status(config, state) -> dict:
    """For `nightwarden status`: the limit, and who counts."""
    cfg = config.connections
    if not cfg.limit:
        return {"tracking": "off (connections.limit = 0)"}
    by = "the listener" if watch_lock(config).holder() is not None else "the connections job (every minute)"
    return {"tracking": f"over {cfg.limit} connections per address, counted by {by}"}
