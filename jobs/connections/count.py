"""Connections per remote address, from the kernel's socket tables (this host's own sockets)
and from conntrack (what the firewall tracks, forwarded traffic included) when loaded. Each
table is read once, bounded; the larger count of the two is taken per address."""

from __future__ import annotations

import ipaddress
from collections import Counter

from nightwarden.lib import netstat

from .settings import STATES

CONNTRACK = "/proc/net/nf_conntrack"
CONNTRACK_MAX = 512 << 20


def wanted_states(cfg) -> set[str]:
    names = set(cfg.states) or set(STATES)
    if cfg.skip_time_wait:
        names.discard("TIME_WAIT")
    return {code for code, name in netstat.TCP_STATES.items() if name in names}


def from_sockets(cfg, net: str = "/proc/net") -> Counter:
    """Remote address -> TCP connections to this host: to a counted port (CT_PORTS), or, with
    none given, to a port this host listens on (this host's own connections out, to a
    database or a mail relay, are not counted against the far end), in a counted state."""
    ports = netstat.PortSet(cfg.ports) if cfg.ports else None
    states = wanted_states(cfg)
    listening: set[int] = set()
    found = []
    for name, proto, family in netstat.TABLES[:2]:
        for s in netstat.table(name, proto, family, states | {netstat.LISTEN}, net):
            if s.state == netstat.LISTEN:
                listening.add(s.port)
            if s.state in states:
                found.append(s)
    out: Counter = Counter()
    for s in found:
        if ports.has("tcp", s.port) if ports is not None else s.port in listening:
            out[s.remote] += 1
    return out


def from_conntrack(cfg, path: str = CONNTRACK, own: frozenset | None = None) -> Counter:
    """Source address -> tracked TCP connections (the original direction's src and dport),
    leaving out those this host opened (own: its addresses)."""
    if own is None:
        from nightwarden.lib.netaddr import own_addresses

        own = frozenset(str(a) for a in own_addresses())
    try:
        with open(path, "rb") as f:
            data = f.read(CONNTRACK_MAX)
    except OSError:  # not loaded
        return Counter()
    ports = netstat.PortSet(cfg.ports) if cfg.ports else None
    names = {netstat.TCP_STATES[c] for c in wanted_states(cfg)}
    out: Counter = Counter()
    for line in data.split(b"\n"):
        f = line.split()
        # ipv4 2 tcp 6 431999 ESTABLISHED src=... dst=... sport=... dport=... ...
        if len(f) < 10 or f[2] != b"tcp" or f[5].decode(errors="replace") not in names:
            continue
        src = dport = None
        for item in f[6:10]:
            key, _, value = item.partition(b"=")
            if key == b"src" and src is None:
                try:
                    src = str(ipaddress.ip_address(value.decode()))
                except ValueError:
                    break
            elif key == b"dport" and dport is None:
                dport = int(value)
        if (
            src is None
            or src in own
            or (ports is not None and (dport is None or not ports.has("tcp", dport)))
        ):
            continue
        out[src] += 1
    return out


def per_address(cfg) -> Counter:
    counts = from_sockets(cfg)
    if cfg.conntrack:
        tracked = from_conntrack(cfg)
        for addr, n in tracked.items():
            if n > counts.get(addr, 0):
                counts[addr] = n
    return counts
