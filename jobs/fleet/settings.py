"""The fleet's settings ([fleet]): the broker, this host's name and credentials, the pinned
public keys, and the authority's policy. No servers: no fleet, nothing of it runs."""

from __future__ import annotations

import re

from nightwarden.lib.settings import Count, Section, Ttl, default_list

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # a host or group name: one subject token


class FleetSettings(Section):
    servers: list[str] = default_list()  # the broker, "nats://10.0.0.1:4222"; [] = no fleet
    host: str = ""  # this host's name in the fleet ("" = general.hostname's first label)
    groups: list[str] = default_list()  # groups this host belongs to (decisions scoped to a group)
    credentials: str = ""  # this host's broker user and password (a file of mode 0600, `fleet init`)
    fleet_key: str = ""  # the fleet's Ed25519 public key (base64): decisions must carry its signature
    operator_key: str = ""  # the operator's public key (base64): allows, unblocks, wide networks, forever
    publish: bool = True  # publish this host's evidence and summary
    apply: bool = True  # apply the fleet's decisions here
    heartbeat: Count = 30  # seconds between two status messages
    connect_timeout: Count = 5
    # -- the authority (`nightwarden fleet authority`) --
    signing_key: str = ""  # the fleet's private key file (only where the authority runs)
    min_hosts: Count = 2  # evidence from this many distinct hosts blocks fleet-wide
    trust_single_host: bool = True  # or one host's evidence it can trust (journal, handshakes)
    window: Count = 3600  # seconds of evidence that count
    block_ttl: Ttl = 86400  # seconds of a fleet block made from evidence
    host_cap: Count = 100  # decisions one evidence host may cause per hour
    max_entries: Count = 100000  # fleet decisions in force at most
    batch_delay: float = 0.01  # seconds the authority gathers decisions into one signed batch
    report_hours: Count = 24  # the fleet report's period; a host silent this long is named
    # snapshots of the bucket for hosts back after long: one every this many seconds while it
    # changes, sooner after snapshot_changes changes (0 = none); a host this far behind uses one
    snapshot_every: Count = 300
    snapshot_changes: Count = 1000

    def __post_init__(self):
        for url in self.servers:
            if not re.match(r"^(nats|tls)://[^\s/]+$", url):
                raise ValueError(f"servers: {url!r} is not nats://HOST:PORT or tls://HOST:PORT")
        for name in ([self.host] if self.host else []) + list(self.groups):
            if not NAME.match(name):
                raise ValueError(f"{name!r}: a host or group name is lower-case letters, digits and '-'")
        if self.batch_delay < 0 or self.batch_delay > 1:
            raise ValueError("batch_delay: between 0 and 1 second")
        if self.min_hosts < 1:
            raise ValueError("min_hosts: at least 1")
