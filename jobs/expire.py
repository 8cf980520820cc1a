"""Ends the blocks whose time is up. Backends with kernel timeouts (nftables, ipset) drop
the entries by themselves; on python-iptables this removes them. Also puts the base rules
back if something removed them (a reboot, `iptables -F`), with every entry."""

from __future__ import annotations

from nightwarden.lib.runner import Result

NAME = "expire"


def add_arguments(parser) -> None:
    return None


def run(ctx) -> Result:
    mgr = ctx.blocks
    if ctx.dry_run:
        import time

        due = [
            r
            for r in ctx.state.active_blocks(include_expired=True)
            if r.expires is not None and r.expires <= time.time()
        ]
        ctx.say(f"dry run: would end {len(due)} expired block(s)")
        return Result(0, f"would end {len(due)} expired blocks")
    expired = mgr.expire()
    restored = ""
    if not mgr.backend.is_ready():
        synced = mgr.sync()
        restored = f"; base rules were missing: restored with {len(synced.added)} entries"
        ctx.log.warning("firewall base rules were missing; restored with %d entries", len(synced.added))
    return Result(0, f"{expired} block(s) expired{restored}")
