"""Decisions applied on a host: the new ones of a batch in one state transaction and one
firewall transaction. The host's own lists win: an address its allow or ignore list names,
or that it protects, is not blocked whatever the fleet says; its deny list is not lifted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from nightwarden.lib.firewall.base import Entry
from nightwarden.lib.lists import append_entry, remove_entry
from nightwarden.lib.logsetup import get

from .decisions import Decision

log = get("fleet")
SOURCE = "fleet"


@dataclass
class Outcome:
    blocked: list = field(default_factory=list)
    lifted: list = field(default_factory=list)
    allowed: list = field(default_factory=list)
    refused: list = field(default_factory=list)  # (target, why)
    outcomes: dict = field(default_factory=dict)  # key -> what happened here


def apply(mgr, decisions: list[Decision], now: float | None = None, also=None) -> Outcome:
    """Apply verified decisions (at most one per key, in the order given). also(outcome), if
    given, runs in the same state transaction (while the kernel takes the entries)."""
    now = time.time() if now is None else now
    out = Outcome()
    off = mgr.off()
    with mgr.locked(), mgr.state:
        lists = mgr.lists
        active = {r.address: r for r in mgr.state.active_blocks(now)}
        rows, entries, lift, allow_file_changed = [], [], [], False
        for d in decisions:
            net = d.network()
            target = d.target  # as display() writes it (decisions.check made sure)
            if d.action == "block":
                why = mgr.refusal(net)
                if why:
                    out.refused.append((target, why))
                    out.outcomes[d.key] = f"refused: {why}"
                    continue
                current = active.get(target)
                if current is not None and (
                    current.permanent
                    or current.expires is None
                    or (d.expires and current.expires >= d.expires)
                ):
                    out.outcomes[d.key] = f"already blocked ({current.source})"
                    continue
                permanent = d.expires is None
                rows.append((target, net.version, permanent, d.reason[:200], d.expires, current))
                ttl = None if permanent else max(1, int(d.expires - now))
                entries.append(
                    (Entry(net, "perm" if permanent else "temp", None if permanent else ttl), current is None)
                )
                out.blocked.append(target)
                out.outcomes[d.key] = "blocked"
                continue
            # unblock and allow: the fleet's own allow file loses or gains the address
            deny = lists.deny.match(net)
            if d.action == "unblock" and deny is not None:
                out.refused.append((target, f"it is on the deny list ({deny.where})"))
                out.outcomes[d.key] = f"kept: on the deny list ({deny.where})"
                continue
            if remove_entry(mgr.config.fleet_allow_file, net):
                allow_file_changed = True
                lift.append(Entry(net, "allow"))
            if d.action == "allow":
                append_entry(mgr.config.fleet_allow_file, net, f"fleet: {d.reason}"[:200])
                allow_file_changed = True
                out.allowed.append(target)
                entries.append((Entry(net, "allow"), False))
            if mgr.state.end_block(target, f"fleet {d.action} ({d.by})"):
                out.lifted.append(target)
            lift += [Entry(net, "temp"), Entry(net, "perm")]
            out.outcomes[d.key] = "allowed" if d.action == "allow" else "unblocked"
        if off or mgr.state.dry_run:
            _write_blocks(mgr.state, rows, now)
            if also is not None:
                also(out)
        else:
            # the kernel's transaction (libnftables or a child process: no GIL held) while the
            # rows are written; both done before the lock and the state transaction end
            with ThreadPoolExecutor(1, thread_name_prefix="fleet-kernel") as pool:
                kernel = pool.submit(_kernel, mgr.backend, lift, entries)
                try:
                    _write_blocks(mgr.state, rows, now)
                    if also is not None:
                        also(out)
                finally:
                    kernel.result()
    if allow_file_changed:
        mgr._lists = None
    if out.blocked or out.lifted or out.allowed:
        log.info(
            "fleet: %d blocked, %d lifted, %d allowed, %d refused here",
            len(out.blocked),
            len(out.lifted),
            len(out.allowed),
            len(out.refused),
        )
    return out


def _kernel(backend, lift: list, entries: list) -> None:
    if lift:
        backend.unblock(lift)
    fresh = [e for e, new in entries if new]
    if fresh:
        backend.block(fresh, fresh=True)
    if len(fresh) < len(entries):
        backend.block([e for e, new in entries if not new])


def _write_blocks(state, rows, now: float) -> None:
    """New block rows in one statement; a shorter block of the same address is lengthened."""
    new = [
        (target, family, int(permanent), SOURCE, reason, now, expires)
        for target, family, permanent, reason, expires, current in rows
        if current is None
    ]
    state.db.executemany(
        "INSERT INTO blocks(address, family, permanent, source, reason, created, expires)"
        " VALUES (?,?,?,?,?,?,?)",
        new,
    )
    for target, family, permanent, reason, expires, current in rows:
        if current is not None:
            state.add_block(target, family, permanent, SOURCE, reason, now, expires)
