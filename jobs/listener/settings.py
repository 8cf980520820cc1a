"""The listener's settings ([listener]): PortSentry's configuration."""

from __future__ import annotations

from typing import Literal

from nightwarden.lib.settings import Count, Port, Section, Ttl, default_list


class ListenerSettings(Section):
    mode: Literal["connect", "advanced"] = "connect"  # bind the bait ports, or raw sockets
    # PortSentry's classic lists; a port something on the host really uses is skipped
    tcp_ports: list[Port] = default_list(
        1,
        11,
        15,
        79,
        111,
        119,
        143,
        540,
        635,
        1080,
        1524,
        2000,
        5742,
        6667,
        12345,
        12346,
        20034,
        27665,
        31337,
        32771,
        32772,
        32773,
        32774,
        40421,
        49724,
        54320,
    )
    udp_ports: list[Port] = default_list(
        1,
        7,
        9,
        69,
        161,
        162,
        513,
        635,
        640,
        641,
        700,
        37444,
        34555,
        31335,
        32770,
        32771,
        32772,
        32773,
        32774,
        31337,
        54321,
    )
    bind4: str = "0.0.0.0"
    bind6: str = "::"
    ipv6: bool = True
    banner: str = ""
    # advanced mode (PortSentry's -atcp/-audp): every port below these, but the excluded ones
    # and those in use
    advanced_tcp_below: Port = 1024
    advanced_udp_below: Port = 1024
    advanced_tcp_exclude: list[Port] = default_list(113, 139)
    advanced_udp_exclude: list[Port] = default_list(520, 138, 137, 67)
    scan_trigger: Count = 0  # hits from a source before acting (PortSentry's SCAN_TRIGGER)
    trigger_window: Count = 60
    block: bool = True
    block_ttl: Ttl = 3600
    max_blocks_per_minute: Count = 20000
    hosts_deny: str = ""  # e.g. /etc/hosts.deny: "ALL: <ip>" lines
    run_command: list[str] = default_list()  # e.g. ["/usr/local/bin/notify", "$TARGET$", "$PORT$", "$MODE$"]
    history_file: str = ""  # "" = <state_dir>/portsentry.history (PortSentry's format)
    blocked_file: str = ""  # "" = <state_dir>/portsentry.blocked
    alert_digest_seconds: Count = 300
    log_lines_per_second: Count = 20

    def __post_init__(self):
        import ipaddress

        for name, family in (("bind4", 4), ("bind6", 6)):
            try:
                if ipaddress.ip_address(getattr(self, name)).version != family:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"{name} must be an IPv{family} address, not {getattr(self, name)!r}"
                ) from None
