"""What the receive loop hands the responder thread: typed, immutable messages."""

from __future__ import annotations

from typing import NamedTuple

# NamedTuples: typed and immutable, and as cheap to make as a tuple (one per probe).


class Probe(NamedTuple):
    """A probe worth a row in the scan history (one per source and port per alert period)."""

    when: float
    source: str
    port: int
    proto: str  # tcp or udp
    kind: str  # connect, UDP, SYN, FIN, NULL, XMAS


class BlockRequest(NamedTuple):
    """A source the loop decided to block (the policy was applied there, once); the probe
    that decided it goes into the history files and the commands."""

    probe: Probe
    in_kernel: bool = False  # the fast path put the entry in place: the state row is what is left


class Digest(NamedTuple):
    """The alert lines since the last digest, for one mail."""

    lines: tuple[str, ...]


class Reload(NamedTuple):
    """The configuration was read again (SIGHUP): the responder rebuilds what it derives."""

    config: object


class LoginAlerts(NamedTuple):
    """Alerts for the blocks the log follower made (the fields of lfd's alert, one per block)."""

    items: tuple[dict, ...]


class Mails(NamedTuple):
    """Mails made by a follower, sent as they are: (template, fields) each."""

    items: tuple[tuple[str, dict], ...]


Message = Probe | BlockRequest | Digest | Reload | LoginAlerts | Mails
