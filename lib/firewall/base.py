"""The firewall backend interface: ensure, block, unblock, list, purge, teardown.

Every entry has a kind: "allow" (always wins), "perm" (the permanent deny list) or "temp"
(dynamic blocks, optionally with a timeout). Everything a backend adds lives in its own
table, chain or sets, so purge and teardown can never touch rules that are not ours.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..lists import PortFilter
from ..netaddr import Network, is_host

KINDS = ("allow", "perm", "temp")


@dataclass(frozen=True)
class Entry:
    network: Network
    kind: str = "temp"
    ttl: int | None = None  # seconds; temp only; None = until unblocked or purged

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown entry kind {self.kind!r}")


@dataclass(frozen=True)
class KernelEntry:
    network: Network
    kind: str
    expires_in: float | None = None


@dataclass(frozen=True)
class Filter:
    """A csf advanced filter applied in the kernel: accept (allow) or drop (deny)."""

    rule: PortFilter
    action: str  # "allow" or "deny"


class Backend:
    """Base class. Subclasses implement the kernel side; all take batches."""

    name = "base"
    kernel_timeouts = True  # temp entries expire in the kernel by themselves
    fast_in_process = False  # fast_block runs in this process, without a fork

    def __init__(self, prefix: str = "nightwarden", ipv6: bool = True, lock_timeout: float = 30):
        self.prefix = prefix
        self.ipv6 = ipv6
        self.lock_timeout = lock_timeout

    @classmethod
    def probe(cls) -> str | None:
        """None when the backend can work here, else the reason it cannot."""
        return None

    def ensure(self, filters: Sequence[Filter] = ()) -> None:
        """Create our table/chain/sets and the jump, idempotently; re-assert the rules."""
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def block(self, entries: Sequence[Entry], fresh: bool = False) -> None:
        """Add entries in one transaction. Adding an existing entry refreshes its timeout.
        fresh: the caller knows none of them is in the kernel yet (a backend may skip the
        refresh)."""
        raise NotImplementedError

    def fast_block(self, hosts: Sequence[Network], ttl: int | None) -> None:
        """The listener's fast path: new temporary entries, added from its receive loop in
        one transaction and as quickly as the backend can. The default is the batch."""
        self.block([Entry(h, "temp", ttl or None) for h in hosts])

    def unblock(self, entries: Sequence[Entry]) -> None:
        """Remove entries in one transaction; entries that are not there are ignored."""
        raise NotImplementedError

    def list(self) -> list[KernelEntry]:
        raise NotImplementedError

    def purge(self, kind: str = "temp") -> int:
        """Remove every entry of one kind; return how many there were."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Remove everything of ours from the kernel."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    # helpers for subclasses
    def wanted(self, entries: Iterable[Entry]) -> list[Entry]:
        """Drop duplicates (last wins) and IPv6 entries when IPv6 is off."""
        seen: dict[tuple, Entry] = {}
        for e in entries:
            if e.network.version == 6 and not self.ipv6:
                continue
            seen[(e.network, e.kind)] = e
        return list(seen.values())

    def families(self) -> tuple[int, ...]:
        return (4, 6) if self.ipv6 else (4,)


def host_or_net(net: Network) -> str:
    return "" if is_host(net) else "net"


def parse_kernel_network(text: str) -> Network:
    """Parse 1.2.3.4, 10.0.0.0/8 or 1.2.3.4/255.255.255.255 as the kernel tools print them."""
    return ipaddress.ip_network(text, strict=False)


def port_spec(ports: Sequence[str]) -> list[str]:
    """csf port forms (22, 1000_2000, 1000:2000) as a-b ranges."""
    out = []
    for p in ports:
        for sep in ("_", ":"):
            p = p.replace(sep, "-")
        out.append(p)
    return out
