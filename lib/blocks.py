"""Block management: the one place where state, lists and the firewall meet.

Every change validates all its input first (nothing half-applied), then writes the state
row and the kernel entry under the firewall lock, in one state transaction that is rolled
back if the kernel refuses. The allow list, the ignore list and the protected addresses
(loopback, this host's own addresses) always win over a block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import lifecycle
from .errors import RefusedError, UnavailableError, UsageError
from .firewall import Backend, Entry, Filter
from .lists import Lists, append_entry, load_lists, remove_entry
from .lock import LockFile
from .logsetup import get
from .netaddr import Network, display, is_host, parse_network, protection_reason
from .state import State

OFF = "firewall.off"  # meta key: why the firewall is off
log = get("blocks")


@dataclass
class BlockResult:
    added: list[Network] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (address, why)
    escalations: list = field(default_factory=list)  # lifecycle.Escalation
    rotated: dict = field(default_factory=dict)


@dataclass
class SyncResult:
    added: list[Entry] = field(default_factory=list)
    removed: list[Entry] = field(default_factory=list)
    expired: int = 0


class BlockManager:
    def __init__(
        self,
        config,
        state: State,
        backend: Backend,
        lists: Lists | None = None,
        notify: Callable | None = None,
    ):
        self.config = config
        self.state = state
        self.backend = backend
        self._lists = lists
        self._ready = False
        self._lock_depth = 0
        self.notify = notify  # called with each lifecycle.Escalation

    # -- on and off -----------------------------------------------------------
    def off(self) -> str | None:
        """Why the firewall is off (`firewall stop` or `disable`), or None. While it is off
        nothing is put in the kernel by anyone: no block, no restore, no reconcile."""
        return self.state.get_meta(OFF)

    def turn_off(self, why: str) -> None:
        with self.state:
            self.state.set_meta(OFF, why)

    def turn_on(self) -> None:
        with self.state:
            self.state.delete_meta(OFF)

    def ensure_ready(self) -> None:
        """Set up the base rules and load every entry if they are not in place yet (a dry run
        only looks)."""
        if self.state.dry_run or self.off():
            return
        if not self._ready and not self.backend.is_ready():
            self.sync()
        self._ready = True

    @property
    def lists(self) -> Lists:
        if self._lists is None:
            self._lists = load_lists(self.config)
            unreadable = set(self._lists.allow.unreadable + self._lists.ignore.unreadable)
            for error in self._lists.errors:
                if error not in unreadable:  # those stop the block itself, with its own error
                    log.warning("%s", error)
        return self._lists

    @contextmanager
    def locked(self):
        """The firewall lock (one change at a time across processes); re-entrant here."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        lock = LockFile(self.config.run_dir / "firewall.lock", "a firewall change").acquire(
            wait=self.config.firewall.lock_timeout
        )
        self._lock_depth = 1
        try:
            yield
        finally:
            self._lock_depth = 0
            lock.release()

    # -- policy ---------------------------------------------------------------
    def refusal(self, net: Network) -> str | None:
        """Why net must not be blocked here, or None (see `refusal` below)."""
        return refusal(self.config, self.lists, net)

    def require_allowed(self, nets: Iterable[Network], verb: str = "block") -> None:
        """Raise RefusedError for the first network that must not be blocked."""
        for net in nets:
            why = self.refusal(net)
            if why:
                raise RefusedError(f"refusing to {verb} {display(net)}: {why}")

    def parse_all(self, targets: Iterable[str | Network]) -> list[Network]:
        """Parse every target first: one bad address stops the whole command before any change."""
        return [t if not isinstance(t, str) else parse_network(t) for t in targets]

    # -- block / unblock ------------------------------------------------------
    def block(
        self,
        targets: Sequence[str | Network],
        ttl: int | None = None,
        reason: str = "",
        source: str = "cli",
        permanent: bool = False,
        strict: bool = True,
        policy_checked: bool = False,
        in_kernel: bool = False,
    ) -> BlockResult:
        """Block addresses. strict: refuse the whole call if any address is refused.
        policy_checked: the caller applied `refusal` to every target already (the listener's
        receive loop decides once, the block is recorded here). in_kernel: the caller put the
        temporary entries in place through the backend's fast path, with this TTL."""
        nets = self.parse_all(targets)
        ttl = self.config.firewall.default_ttl if ttl is None else ttl
        result = BlockResult()
        off = self.off()
        if off:
            if strict:
                raise UnavailableError(
                    f"the firewall is off ({off}); `nightwarden firewall start` turns it on"
                )
            result.refused = [(display(n), f"the firewall is off ({off})") for n in nets]
            return result
        for net in nets:
            why = None if policy_checked else self.refusal(net)
            if why:
                result.refused.append((display(net), why))
            else:
                result.added.append(net)
        if strict and result.refused:
            addr, why = result.refused[0]
            raise RefusedError(f"refusing to block {addr}: {why}")
        for addr, why in result.refused:
            log.info("not blocking %s: %s", addr, why)
        if not result.added:
            return result
        kind = "perm" if permanent else "temp"
        now = time.time()
        expires = None if (permanent or not ttl) else now + ttl
        entries = [Entry(n, kind, None if permanent else kernel_ttl(ttl)) for n in result.added]
        with self.locked():
            with self.state:
                superseded = self._supersede(entries)
                for net in result.added:
                    self.state.add_block(display(net), net.version, permanent, source, reason, now, expires)
                if superseded:
                    self.backend.unblock(superseded)
                if not (in_kernel and not permanent):
                    self.backend.block(entries)
            log.info(
                "blocked %d address(es) (%s, %s): %s",
                len(entries),
                source,
                "permanent" if permanent else (f"ttl {ttl}s" if ttl else "until purged"),
                ", ".join(display(n) for n in result.added[:10]),
            )
            if not permanent:
                result.escalations = lifecycle.escalate(self, result.added, now)
            if source != "netblock":
                result.escalations += lifecycle.netblock(self, result.added, now)
            result.rotated = lifecycle.enforce_limits(self)
        if self.notify:
            for escalation in result.escalations:
                self.notify(escalation)
        return result

    def _supersede(self, entries: Sequence[Entry]) -> list[Entry]:
        """Networks inside a new network block of the same kind are ended (kernel sets of
        intervals refuse overlaps); a new network inside an existing one is covered already."""
        nets = [e for e in entries if not is_host(e.network)]
        if not nets:
            return []
        gone = []
        for row in self.state.active_blocks():
            old = parse_network(row.address)
            if is_host(old):
                continue
            kind = "perm" if row.permanent else "temp"
            for e in nets:
                if (
                    e.kind == kind
                    and old != e.network
                    and old.version == e.network.version
                    and old.subnet_of(e.network)
                ):
                    self.state.end_block(row.address, f"covered by {display(e.network)}")
                    gone.append(Entry(old, kind))
                elif (
                    e.kind == kind
                    and old != e.network
                    and old.version == e.network.version
                    and e.network.subnet_of(old)
                ):
                    raise RefusedError(
                        f"{display(e.network)} is already covered by the block of {row.address}"
                    )
        return gone

    def unblock(
        self, targets: Sequence[str | Network], reason: str = "manual", strict: bool = True
    ) -> list[Network]:
        """Remove blocks (temporary and permanent). Returns the networks that were blocked."""
        nets = self.parse_all(targets)
        own_deny = self.config.list_file("deny")
        for net in nets:
            for entry in self.lists.deny.exact(net):
                if entry.file != str(own_deny) and strict:
                    raise RefusedError(
                        f"{display(net)} is on the deny list in {entry.where}; remove it there"
                    )
        removed = []
        with self.locked(), self.state:
            for net in nets:
                was = self.state.end_block(display(net), reason)
                if remove_entry(own_deny, net):
                    was = True
                if was:
                    removed.append(net)
            self.backend.unblock([Entry(n, k) for n in nets for k in ("temp", "perm")])
        if removed:
            self._lists = None
            log.info("unblocked %s (%s)", ", ".join(display(n) for n in removed), reason)
        return removed

    # -- allow / deny lists ---------------------------------------------------
    def allow(self, target: str, comment: str = "") -> bool:
        """Add to our allow file, lift any block of it, accept it in the kernel."""
        net = self.parse_all([target])[0]
        if any(e.filter is None for e in self.lists.allow.exact(net)):
            return False
        with self.locked(), self.state:
            append_entry(self.config.list_file("allow"), net, comment or _stamp("allowed"))
            remove_entry(self.config.list_file("deny"), net)
            lifted = []
            for row in self.state.active_blocks(include_expired=True):
                old = parse_network(row.address)
                if old.version == net.version and old.overlaps(net):
                    self.state.end_block(row.address, "allowed")
                    lifted += [Entry(old, "temp"), Entry(old, "perm")]
            self.backend.unblock(lifted + [Entry(net, "temp"), Entry(net, "perm")])
            self.backend.block([Entry(net, "allow")])
        self._lists = None
        return True

    def unallow(self, target: str) -> int:
        """Take an address off our allow file and out of the kernel's allow set. Refused
        when another allow file names it (it would stay allowed)."""
        net = self.parse_all([target])[0]
        own = self.config.list_file("allow")
        elsewhere = [e for e in self.lists.allow.exact(net) if e.file != str(own)]
        if elsewhere:
            raise RefusedError(
                f"{display(net)} is on the allow list in {elsewhere[0].where}; remove it there"
            )
        with self.locked(), self.state:
            removed = remove_entry(own, net)
            if removed:
                self.backend.unblock([Entry(net, "allow")])
        self._lists = None
        return removed

    def deny(self, target: str, comment: str = "") -> bool:
        """Add to our deny file and block permanently."""
        net = self.parse_all([target])[0]
        self.require_allowed([net], "deny")
        if any(e.filter is None for e in self.lists.deny.exact(net)):
            return False
        with self.locked(), self.state:
            append_entry(self.config.list_file("deny"), net, comment or _stamp("denied"))
            if self.state.end_block(display(net), "moved to the deny list"):
                self.backend.unblock([Entry(net, "temp")])
            self.backend.block([Entry(net, "perm")])
        self._lists = None
        return True

    # -- expiry and reconciliation ----------------------------------------------
    def expire(self, now: float | None = None) -> int:
        """End the blocks whose time is up (and remove them where the kernel has no timeouts)."""
        now = time.time() if now is None else now
        if self.state.dry_run:
            return len(self.state.due_blocks(now))  # a dry run counts them, changes nothing
        with self.locked(), self.state:
            due = self.state.due_blocks(now)
            for row in due:
                self.state.end_block(row.address, "expired", when=row.expires)
            if due and not self.backend.kernel_timeouts:
                self.backend.unblock([Entry(parse_network(r.address), "temp") for r in due])
        self._renew_long_blocks(now)
        return len(due)

    def _renew_long_blocks(self, now: float) -> None:
        """Blocks longer than a kernel timeout can hold: their entries are renewed well
        before the kernel would drop them (expire runs every few minutes)."""
        if not self.backend.kernel_timeouts:
            return
        long = [
            Entry(parse_network(r.address), "temp", kernel_ttl(int(r.expires - now)))
            for r in self.state.active_blocks(now)
            if not r.permanent and r.expires is not None and r.expires - now > KERNEL_MAX_TTL - 86400
        ]
        if long and self.backend.is_ready():
            self.backend.block(long)

    def desired(self) -> tuple[list[Entry], list[Filter]]:
        """What the kernel should hold: allow list, deny list + permanent blocks, temp blocks."""
        now = time.time()
        entries: list[Entry] = [Entry(e.network, "allow") for e in self.lists.allow.whole]
        for e in self.lists.deny.whole:
            why = self.refusal(e.network)
            if why:
                log.warning("%s: not blocking %s: %s", e.where, display(e.network), why)
            else:
                entries.append(Entry(e.network, "perm"))
        for row in self.state.active_blocks(now):
            net = parse_network(row.address)
            if self.refusal(net):
                continue
            if row.permanent:
                entries.append(Entry(net, "perm"))
            else:
                ttl = max(1, int(row.expires - now)) if row.expires else None
                entries.append(Entry(net, "temp", kernel_ttl(ttl)))
        filters = [Filter(e.filter, "allow") for e in self.lists.allow.filters] + [
            Filter(e.filter, "deny") for e in self.lists.deny.filters
        ]
        return _drop_nested(entries), filters

    def sync(self) -> SyncResult:
        """Re-assert the base rules and make the kernel hold exactly what it should (nothing
        while the firewall is off)."""
        result = SyncResult(expired=self.expire())
        if self.off():
            return result
        with self.locked():
            want, filters = self.desired()
            self.backend.ensure(filters)
            have = {(k.network, k.kind) for k in self.backend.list()}
            wanted = {(e.network, e.kind) for e in want}
            result.removed = [Entry(n, k) for n, k in have - wanted]
            result.added = [e for e in want if (e.network, e.kind) not in have]
            if result.removed:
                self.backend.unblock(result.removed)
            self._load(result.added)
        return result

    def _load(self, entries: list[Entry], batch: int = 20_000) -> None:
        """Entries into the kernel in batches, with progress on a terminal (a start after a
        reboot may bring back hundreds of thousands)."""
        from .progress import Progress

        progress = Progress(
            "firewall", "entries loaded", len(entries), enabled=None if len(entries) > batch else False
        )
        for start in range(0, len(entries), batch):
            self.backend.block(entries[start : start + batch])
            progress.update(min(start + batch, len(entries)))
        progress.done(f"{len(entries):,} entries loaded")


def refusal(config, lists: Lists, net: Network) -> str | None:
    """Why net must not be blocked under these protections and lists, or None. Raises
    NoInputError while the allow or the ignore list cannot be read (fail closed: what they
    protect is unknown). The block manager asks it, and so does the fleet's authority."""
    lists.require_readable()
    fw = config.firewall
    why = protection_reason(net, fw.protect_loopback, fw.protect_own_addresses)
    if why:
        return why
    for kind in ("allow", "ignore"):
        entry = getattr(lists, kind).match(net)
        if entry is not None:
            return f"it is on the {kind} list ({entry.where})"
    return None


def _drop_nested(entries: list[Entry]) -> list[Entry]:
    """Leave out networks inside another network of the same kind (interval sets refuse
    them), and duplicates. One sort and one sweep per kind and family: a million entries
    take a second, not the square of it."""
    groups: dict[tuple, list[Entry]] = {}
    for e in entries:
        if not is_host(e.network):
            groups.setdefault((e.kind, e.network.version), []).append(e)
    nested: set[int] = set()
    for group in groups.values():
        reach = -1
        for e in sorted(group, key=lambda e: (int(e.network.network_address), -e.network.num_addresses)):
            end = int(e.network.broadcast_address)
            if end <= reach:
                nested.add(id(e))  # inside (or the same as) one that starts at or before it
            else:
                reach = end
    seen, out = set(), []
    for e in entries:
        if id(e) not in nested and (e.network, e.kind) not in seen:
            seen.add((e.network, e.kind))
            out.append(e)
    return out


def _stamp(what: str) -> str:
    return f"{what} by nightwarden - {time.strftime('%a %b %d %H:%M:%S %Y')}"


# The longest timeout every backend holds in the kernel (ipset's 2^31/1000 s, 24.8 days);
# a longer block keeps its expiry in state and `expire` renews its kernel entry.
KERNEL_MAX_TTL = 2_147_483
MAX_TTL = 10 * 365 * 86400  # ten years: beyond that, block permanently


def validate_ttl(text: str) -> int:
    """Parse a TTL: seconds, or a number with s, m, h, d or w; 0 = until purged. A negative
    or an absurd one is a usage error (exit 64), before any backend sees it."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    try:
        value = int(text[:-1]) * units[text[-1]] if text and text[-1] in units else int(text)
    except ValueError:
        raise UsageError(f"invalid TTL {text!r}: use seconds or a number with s, m, h, d or w") from None
    if value < 0:
        raise UsageError(f"invalid TTL {text!r}: it must be positive (or 0: until purged)")
    if value > MAX_TTL:
        raise UsageError(f"invalid TTL {text!r}: at most ten years ({MAX_TTL} s); use --permanent")
    return value


def blocked_by(state, lists, net: Network) -> str | None:
    """Why net is blocked already, or None: an active block of it, of a network holding it,
    or a deny list entry holding it (what `grep` says, in one sentence)."""
    if state.active_block(display(net)) is not None:
        return "blocked"
    for row in state.active_blocks():
        if "/" in row.address:
            other = parse_network(row.address)
            if other.version == net.version and net.subnet_of(other):
                return f"inside the blocked network {row.address}"
    entry = lists.deny.match(net)
    if entry is not None and entry.filter is None and net.subnet_of(entry.network):
        return f"on the deny list ({entry.where})"
    return None


def kernel_ttl(ttl: int | None) -> int | None:
    """The timeout a kernel entry gets: the block's, at most what every backend holds."""
    return min(ttl, KERNEL_MAX_TTL) if ttl else None
