"""The connection tracking's settings ([connections]), named after csf.conf's CT_* options."""

from __future__ import annotations

from typing import Literal

from nightwarden.lib.netstat import TCP_STATES
from nightwarden.lib.settings import Count, Section, Ttl, default_list

STATES = tuple(name for name in TCP_STATES.values() if name != "LISTEN")  # a connection's states


class ConnectionSettings(Section):
    limit: Count = 0  # CT_LIMIT: more connections than this from one address block it (0 = off)
    interval: Count = 30  # CT_INTERVAL: seconds between two counts in the listener
    # CT_PORTS: only connections to these local ports ("80", "443/tcp", "8000-8100"); [] = to any
    # port this host listens on (its own connections out are never counted)
    ports: list[str] = default_list()
    states: list[Literal[STATES]] = default_list()  # CT_STATES: [] = every state
    skip_time_wait: bool = False  # CT_SKIP_TIME_WAIT
    permanent: bool = False  # CT_PERMANENT
    block_time: Ttl = 1800  # CT_BLOCK_TIME, seconds of a temporary block
    alert: bool = True  # CT_EMAIL_ALERT
    conntrack: bool = True  # count conntrack's entries too when the module is loaded

    def __post_init__(self):
        from nightwarden.lib.netstat import parse_spec

        for spec in self.ports:
            try:
                parse_spec(spec)
            except ValueError as e:
                raise ValueError(f"ports: {e}") from None
