"""What the receive loop hands the responder thread: typed, immutable messages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Probe:
    """A probe worth a row in the scan history (one per source and port per alert period)."""

    when: float
    source: str
    port: int
    proto: str  # tcp or udp
    kind: str  # connect, UDP, SYN, FIN, NULL, XMAS


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """A source the loop decided to block (the policy was applied there, once); the probe
    that decided it goes into the history files and the commands."""

    probe: Probe


@dataclass(frozen=True, slots=True)
class Digest:
    """The alert lines since the last digest, for one mail."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reload:
    """The configuration was read again (SIGHUP): the responder rebuilds what it derives."""

    config: object


Message = Probe | BlockRequest | Digest | Reload
