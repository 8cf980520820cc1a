"""Advanced mode's packet side: decode TCP and UDP probes read from raw sockets, name the scan
type, and know which ports something on the host really uses."""

from __future__ import annotations

import struct
from pathlib import Path

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def scan_type(flags: int) -> str | None:
    """PortSentry's names for the probes it reports; None for ordinary traffic."""
    if flags & (SYN | ACK | RST) == SYN:
        return "SYN"
    if flags & 0x3F == 0:
        return "NULL"
    if flags & 0x3F == FIN:
        return "FIN"
    if flags & (FIN | PSH | URG) == FIN | PSH | URG and not flags & (SYN | ACK | RST):
        return "XMAS"
    return None


def parse_ipv4(packet: bytes, proto: str) -> tuple[str, int, str] | None:
    """(source, destination port, scan type) of an IPv4 packet with its IP header, or None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + (14 if proto == "tcp" else 4):
        return None
    src = ".".join(str(b) for b in packet[12:16])
    dport = struct.unpack_from("!H", packet, ihl + 2)[0]
    if proto == "udp":
        return src, dport, "UDP"
    kind = scan_type(packet[ihl + 13])
    return (src, dport, kind) if kind else None


def parse_ipv6(payload: bytes, src: str, proto: str) -> tuple[str, int, str] | None:
    """An IPv6 raw socket hands over the transport header only; the source comes with it."""
    if len(payload) < (14 if proto == "tcp" else 4):
        return None
    dport = struct.unpack_from("!H", payload, 2)[0]
    if proto == "udp":
        return src, dport, "UDP"
    kind = scan_type(payload[13])
    return (src, dport, kind) if kind else None


def ports_in_use(proto: str, proc: Path = Path("/proc/net")) -> set[int]:
    """Local ports with a listening TCP socket, or a bound UDP socket, in this namespace."""
    ports: set[int] = set()
    for name in (proto, proto + "6"):
        try:
            lines = (proc / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4:
                continue
            if proto == "tcp" and parts[3] != "0A":  # LISTEN
                continue
            try:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
            except (IndexError, ValueError):
                continue
    return ports
