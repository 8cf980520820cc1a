"""Ends the blocks whose time is up. Backends with kernel timeouts (nftables, ipset) drop
the entries by themselves; on python-iptables this removes them. Then it re-asserts the base
rules (a reboot, `iptables -F`) and reconciles the kernel with state: an entry on one side
only is fixed and said. While the firewall is off (`firewall stop`) it puts nothing back."""

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
    off = mgr.off()
    if off:
        return Result(0, f"{expired} block(s) expired; the firewall is off ({off}): nothing put back")
    was_ready = mgr.backend.is_ready()
    synced = mgr.sync()  # the base rules re-asserted, the kernel reconciled with state
    fixed = len(synced.added) + len(synced.removed)
    if not was_ready:
        ctx.log.warning("firewall base rules were missing; restored with %d entries", len(synced.added))
        return Result(
            0,
            f"{expired} block(s) expired; base rules were missing: restored with {len(synced.added)} entries",
        )
    if fixed:
        ctx.log.warning(
            "kernel and state differed: %d entries added, %d removed", len(synced.added), len(synced.removed)
        )
    return Result(0, f"{expired} block(s) expired; {fixed} kernel/state difference(s) fixed")
