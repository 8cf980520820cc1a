"""Sockets from the kernel's tables (/proc/net/tcp, tcp6, udp, udp6 of this network namespace)
and the processes that hold them: the processes job's listeners and outbound connections, the
connection tracking's count per address. The tables are read first (cheap, whatever the number
of processes); processes' descriptors are looked through only for the sockets that matter.
Ports as settings give them ("22", "53/udp", "6660-6669/tcp") are PortSet."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

TABLES = (("tcp", "tcp", 4), ("tcp6", "tcp", 6), ("udp", "udp", 4), ("udp6", "udp", 6))
MAX_TABLE = 256 << 20  # bytes read of one table (about 1.7 million sockets)
# the kernel's TCP states as /proc/net/tcp writes them (include/net/tcp_states.h)
TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}  # fmt: skip
LISTEN, ESTABLISHED, SYN_SENT, UDP_UNCONNECTED = (
    "0A",
    "01",
    "02",
    "07",
)  # 07 (CLOSE): a UDP socket unconnected


@dataclass(frozen=True)
class Sock:
    proto: str  # tcp or udp
    local: str
    port: int
    remote: str
    rport: int
    state: str  # the kernel's hex state
    uid: int
    inode: int


def _address(hexa: str, family: int) -> str:
    raw = bytes.fromhex(hexa)
    if family == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # four 32-bit words, each in the host's (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    ip = ipaddress.IPv6Address(words)
    return str(ip.ipv4_mapped or ip)


def table(name: str, proto: str, family: int, states: set[str], net: str = "/proc/net") -> list[Sock]:
    """The sockets of one table in the given states."""
    try:
        with open(f"{net}/{name}", "rb") as f:
            data = f.read(MAX_TABLE)
    except OSError:  # no IPv6, or no such table
        return []
    out = []
    for line in data.split(b"\n")[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        state = fields[3].decode()
        if state not in states:
            continue
        try:
            local, lport = fields[1].decode().split(":")
            remote, rport = fields[2].decode().split(":")
            out.append(
                Sock(
                    proto,
                    _address(local, family),
                    int(lport, 16),
                    _address(remote, family),
                    int(rport, 16),
                    state,
                    int(fields[7]),
                    int(fields[9]),
                )
            )
        except ValueError:
            continue
    return out


def ephemeral_ports() -> range:
    """The range the kernel picks client ports from: a UDP socket bound there is a client's."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read(64).split()[:2])
        return range(low, high + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def listening() -> list[Sock]:
    """TCP sockets in LISTEN, and unconnected UDP sockets bound outside the client range."""
    client = ephemeral_ports()
    out = []
    for name, proto, family in TABLES:
        if proto == "tcp":
            out += table(name, proto, family, {LISTEN})
        else:
            out += [s for s in table(name, proto, family, {UDP_UNCONNECTED}) if s.port not in client]
    return out


def outbound(ports: PortSet) -> list[Sock]:
    """TCP connections made or being made to a port in `ports`."""
    out = []
    for name, proto, family in TABLES[:2]:
        out += [s for s in table(name, proto, family, {ESTABLISHED, SYN_SENT}) if ports.has(proto, s.rport)]
    return out


def owners(inodes: set[int], proc: str = "/proc") -> dict[int, list[int]]:
    """socket inode -> the pids holding it, from each process's descriptors (those this
    process may read). Stops looking once every inode has an owner."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, list[int]] = {}
    try:
        pids = [int(p) for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            fds = os.listdir(f"{proc}/{pid}/fd")
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{proc}/{pid}/fd/{fd}")
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None:
                holders = found.setdefault(inode, [])
                if pid not in holders:
                    holders.append(pid)
        if len(found) == len(wanted) and len(wanted) > 0:
            # every socket has an owner; others may share it (a forked server), which the
            # first owner's report covers
            break
    return found


class PortSet:
    """Ports as a setting gives them: "22", "53/udp", "6660-6669/tcp" (no protocol: both)."""

    def __init__(self, specs: list[str]):
        self.ranges: list[tuple[str | None, int, int]] = [parse_spec(s) for s in specs]

    def has(self, proto: str, port: int) -> bool:
        return any((p is None or p == proto) and low <= port <= high for p, low, high in self.ranges)


def parse_spec(spec: str) -> tuple[str | None, int, int]:
    """("tcp"|"udp"|None, low, high) of a port spec; ValueError naming it when it is not one."""
    text, _, proto = spec.strip().partition("/")
    if proto not in ("", "tcp", "udp"):
        raise ValueError(f"{spec!r}: the protocol is tcp or udp")
    low, _, high = text.partition("-")
    try:
        a, b = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"{spec!r} is not a port, a range (8000-8100) or either with /tcp or /udp") from None
    if not (1 <= a <= b <= 65535):
        raise ValueError(f"{spec!r}: ports are 1 to 65535, the lower first")
    return (proto or None, a, b)
