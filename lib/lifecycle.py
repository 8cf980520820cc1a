"""What happens to blocks after they are made: escalation to permanent blocks (csf's
LF_PERMBLOCK), network blocks (LF_NETBLOCK), the limits on entries (DENY_TEMP_IP_LIMIT,
DENY_IP_LIMIT) with the oldest rotated out, and the purge of dynamic blocks.

Each step is its own state transaction with its kernel change inside it: a process killed
between two steps leaves a state that `sync` (the next run) reconciles.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from .firewall import Entry
from .logsetup import get
from .netaddr import Network, display, is_host, parse_network

log = get("blocks")

# Blocks made by hand are the admin's: never rotated out.
MANUAL_SOURCES = ("cli",)


@dataclass
class Escalation:
    address: str
    count: int
    interval: int
    kind: str  # "permanent" or "network"
    network: str = ""


@dataclass
class PurgeResult:
    removed: list[str] = field(default_factory=list)
    by_source: dict[str, int] = field(default_factory=dict)
    kept_permanent: int = 0
    kept_temporary: int = 0
    reconciled_added: list[str] = field(default_factory=list)
    reconciled_removed: list[str] = field(default_factory=list)
    expired: int = 0


def escalate(mgr, nets: list[Network], now: float) -> list[Escalation]:
    """Temporary blocks that reached perm_block_count within the interval become permanent."""
    cfg = mgr.config.blocks
    count, interval = cfg.perm_block_count, cfg.perm_block_interval
    if not count:
        return []
    addresses = [display(n) for n in nets]
    counts = mgr.state.temp_block_counts(addresses, now - interval)
    due = [a for a in addresses if counts.get(a, 0) >= count]
    if not due:
        return []
    reason = f"escalated: {count} temporary blocks within {interval} s"
    with mgr.state:
        for address in due:
            mgr.state.make_permanent(address, reason)
        entries = [parse_network(a) for a in due]
        mgr.backend.block([Entry(n, "perm") for n in entries])  # never a moment unblocked
        mgr.backend.unblock([Entry(n, "temp") for n in entries])
    for address in due:
        log.warning(
            "%s blocked permanently: %d temporary blocks within %d s", address, counts[address], interval
        )
    return [Escalation(a, counts[a], interval, "permanent") for a in due]


def network_of(net: Network, cfg: dict) -> Network:
    prefix = cfg.net_block_prefix4 if net.version == 4 else cfg.net_block_prefix6
    return ipaddress.ip_network(f"{net.network_address}/{prefix}", strict=False)


def netblock(mgr, nets: list[Network], now: float) -> list[Escalation]:
    """Block a whole network once net_block_count of its addresses were blocked recently."""
    cfg = mgr.config.blocks
    count, interval = cfg.net_block_count, cfg.net_block_interval
    if not count:
        return []
    candidates = {network_of(n, cfg) for n in nets if is_host(n)}
    if not candidates:
        return []
    recent: dict[Network, set[str]] = {c: set() for c in candidates}
    for family in {c.version for c in candidates}:
        for address in mgr.state.recent_addresses(now - interval, family):
            net = network_of(parse_network(address), cfg)
            if net in recent:
                recent[net].add(address)
    out = []
    for net, members in recent.items():
        if len(members) < count or mgr.state.active_block(display(net)) is not None:
            continue
        why = mgr.refusal(net)
        if why:
            log.info("not blocking the network %s: %s", net, why)
            continue
        permanent = cfg.net_block_permanent
        mgr.block(
            [net],
            reason=f"{len(members)} addresses of {net} blocked within {interval} s",
            source="netblock",
            permanent=permanent,
            strict=False,
        )
        log.warning(
            "network %s blocked%s: %d of its addresses blocked within %d s",
            net,
            " permanently" if permanent else "",
            len(members),
            interval,
        )
        out.append(Escalation(display(net), len(members), interval, "network", str(net)))
    return out


def enforce_limits(mgr) -> dict[str, int]:
    """Rotate out the oldest automatic blocks beyond temp_limit / perm_limit."""
    cfg = mgr.config.blocks
    rotated = {"temporary": 0, "permanent": 0}
    for permanent, limit, label in (
        (False, cfg.temp_limit, "temporary"),
        (True, cfg.perm_limit, "permanent"),
    ):
        exclude = MANUAL_SOURCES if permanent else ()
        excess = mgr.state.count_active(permanent, exclude) - limit
        if excess <= 0:
            continue
        oldest = mgr.state.oldest_active(permanent, excess, exclude)
        kind = "perm" if permanent else "temp"
        with mgr.state:
            mgr.state.end_blocks([r.address for r in oldest], f"rotated out: {label} limit {limit}")
            mgr.backend.unblock([Entry(parse_network(r.address), kind) for r in oldest])
        rotated[label] = excess
        log.warning("%d oldest %s block(s) rotated out: limit %d", excess, label, limit)
    return rotated


def _choose(mgr, age: int, now: float) -> tuple[list[tuple[str, str]], PurgeResult]:
    dynamic = mgr.state.dynamic_blocks(now)
    chosen = dynamic if age == 0 else mgr.state.dynamic_blocks(now, created_before=now - age)
    result = PurgeResult(
        removed=[a for a, _ in chosen],
        kept_permanent=mgr.state.count_active(True),
        kept_temporary=len(dynamic) - len(chosen),
    )
    for _, source in chosen:
        result.by_source[source] = result.by_source.get(source, 0) + 1
    return chosen, result


def purge(mgr, age: int, now: float | None = None) -> PurgeResult:
    """Remove dynamic blocks (all, or older than `age` seconds); keep permanent blocks, the
    deny and allow lists; re-assert the base rules; reconcile the kernel with state."""
    now = time.time() if now is None else now
    expired = mgr.expire(now)
    with mgr.locked(), mgr.state:
        chosen, result = _choose(mgr, age, now)
        mgr.state.end_blocks(
            result.removed, "purged" if age == 0 else f"purged: older than {age} s", when=now
        )
        off = mgr.off()  # the firewall is off: its rules are gone already, nothing is put back
        if age == 0 and not off:
            mgr.backend.purge("temp")  # one flush, however many entries
        elif chosen and not off:
            mgr.backend.unblock([Entry(parse_network(a), "temp") for a in result.removed])
    result.expired = expired
    synced = mgr.sync()
    result.reconciled_added = [display(e.network) + f" ({e.kind})" for e in synced.added]
    result.reconciled_removed = [display(e.network) + f" ({e.kind})" for e in synced.removed]
    return result


def plan_purge(mgr, age: int, kernel: list | None, now: float | None = None) -> PurgeResult:
    """What purge would do, changing nothing (for --dry-run)."""
    now = time.time() if now is None else now
    _, result = _choose(mgr, age, now)
    if kernel is not None:
        removed = set(result.removed)
        want, _ = mgr.desired()
        wanted = {
            (e.network, e.kind) for e in want if not (e.kind == "temp" and display(e.network) in removed)
        }
        have = {
            (k.network, k.kind)
            for k in kernel
            if not (k.kind == "temp" and (age == 0 or display(k.network) in removed))
        }
        result.reconciled_added = sorted(f"{display(n)} ({k})" for n, k in wanted - have)
        result.reconciled_removed = sorted(f"{display(n)} ({k})" for n, k in have - wanted)
    return result
