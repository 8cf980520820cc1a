"""Address parsing and the addresses that must never be blocked."""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from pathlib import Path

from .errors import DataError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def parse_network(text: str, where: str = "") -> Network:
    """Parse an address or CIDR. Host bits set in a CIDR are an error, not silently cleared."""
    text = text.strip()
    prefix = f"{where}: " if where else ""
    try:
        return _parse(text)
    except ValueError as e:
        reason = str(e)
        if "has host bits set" in reason:
            raise DataError(
                f"{prefix}{text!r} has host bits set "
                f"(did you mean {ipaddress.ip_network(text, strict=False)}?)"
            ) from None
        raise DataError(f"{prefix}{text!r} is not a valid IP address or CIDR") from None


@lru_cache(maxsize=16384)
def _parse(text: str) -> Network:
    """The parse itself, remembered: the same addresses come back many times (a flood names
    each one thousands of times). An IPv4 address written plainly skips ipaddress's string
    path (6 µs against 2: a host back after long parses 100,000 decisions' addresses)."""
    packed = plain_ipv4(text)
    if packed is not None:
        return ipaddress.IPv4Network((int.from_bytes(packed, "big"), 32))
    net = ipaddress.ip_network(text, strict=True)
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
        mapped = net.network_address.ipv4_mapped
        if net.prefixlen == 128:
            return ipaddress.ip_network(mapped)
    return net


def plain_ipv4(text: str) -> bytes | None:
    """The address's four bytes if `text` is an IPv4 address written as display() writes it
    (no prefix, no leading zeros), else None."""
    if "/" in text or ":" in text:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError):
        return None
    return packed if socket.inet_ntop(socket.AF_INET, packed) == text else None


def is_host(net: Network) -> bool:
    return net.prefixlen == net.max_prefixlen


def display(net: Network) -> str:
    """Hosts print without /32 or /128, as sysadmins write them."""
    return str(net.network_address) if is_host(net) else str(net)


def _fib_trie_local(path: Path = Path("/proc/net/fib_trie")) -> set[str]:
    local: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return local
    last = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("|--") or stripped.startswith("+--"):
            last = stripped[3:].strip().split("/")[0].split()[0]
        elif stripped.startswith("/32 host LOCAL") and last:
            local.add(last)
    return local


def _if_inet6(path: Path = Path("/proc/net/if_inet6")) -> set[str]:
    local: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return local
    for line in lines:
        raw = line.split()[0] if line.split() else ""
        if len(raw) == 32:
            local.add(str(ipaddress.IPv6Address(int(raw, 16))))
    return local


@lru_cache(maxsize=1)
def own_addresses() -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of this host in the current network namespace."""
    return frozenset(ipaddress.ip_address(a) for a in _fib_trie_local() | _if_inet6())


def protection_reason(net: Network, protect_loopback: bool, protect_own: bool) -> str | None:
    """Why an address or network must not be blocked, or None."""
    if net.version == 4 and net.prefixlen == 32:  # the common case, without ipaddress's slow paths
        addr = net.network_address
        loopback = addr.packed[0] == 127
        if protect_loopback and loopback:
            return "it is a loopback address"
        if addr.is_multicast:
            return "it is a multicast address"
        if protect_own and not loopback and addr in own_addresses():
            return f"it covers {addr}, an address of this host"
        return None
    if net.network_address.is_unspecified and net.prefixlen == 0:
        return "it covers the whole address space"
    if protect_loopback:
        for lo in LOOPBACK:
            if net.version == lo.version and net.overlaps(lo):
                return "it is a loopback address"
    if net.is_multicast:
        return "it is a multicast address"
    if protect_own:
        for addr in own_addresses():
            if addr.version != net.version or addr in LOOPBACK[0] or addr in LOOPBACK[1]:
                continue
            if addr in net:
                return f"it covers {addr}, an address of this host"
    return None
