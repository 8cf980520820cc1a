"""The settings sections several jobs share: general, lists, firewall, blocks, mail, schedule.

Each section is a typed schema with its defaults (csf.conf's names in the comments where one
exists); the config engine (config.py) validates every file against them. A job's own
section lives in its package (jobs/<job>/settings.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Count = Annotated[int, msgspec.Meta(ge=0)]  # a number of seconds, entries, ...: never negative
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Ttl = Annotated[int, msgspec.Meta(ge=0, le=10 * 365 * 86400)]  # seconds, 0 = until purged
Prefix4 = Annotated[int, msgspec.Meta(ge=0, le=32)]
Prefix6 = Annotated[int, msgspec.Meta(ge=0, le=128)]


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every settings section: read-only, unknown keys refused."""


def default_list(*values):
    """A list setting's default (each section gets its own copy)."""
    return msgspec.field(default_factory=lambda: list(values))


def default_table(**values):
    """A table setting's default."""
    return msgspec.field(default_factory=lambda: dict(values))


class GeneralSettings(Section):
    hostname: str = ""  # "" = the machine's host name
    state_dir: str = ""  # "" = derived (/var/lib/nightwarden as root)
    log_dir: str = ""
    report_dir: str = ""
    run_dir: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: bool = True
    syslog: bool = True


class ListSettings(Section):
    # Our own files: `nightwarden allow/deny` write here. "" = <config dir>/nightwarden.allow ...
    allow_file: str = ""
    deny_file: str = ""
    ignore_file: str = ""
    # Extra files read as well, in csf/portsentry format. Missing files are skipped.
    extra_allow_files: list[str] = default_list("/etc/csf/csf.allow")
    extra_deny_files: list[str] = default_list("/etc/csf/csf.deny")
    extra_ignore_files: list[str] = default_list("/etc/csf/csf.ignore", "/etc/portsentry/portsentry.ignore")
    allow: list[str] = default_list()
    deny: list[str] = default_list()
    ignore: list[str] = default_list()


class FirewallSettings(Section):
    backend: Literal["auto", "nftables", "ipset", "iptc", "dryrun"] = "auto"
    name: str = "nightwarden"  # nft table, iptables chain and ipset prefix
    default_ttl: Ttl = 3600  # seconds for `block` without --ttl; 0 = until purged
    ipv6: bool = True
    protect_loopback: bool = True
    protect_own_addresses: bool = True
    lock_timeout: Count = 30


class BlockSettings(Section):
    # LF_PERMBLOCK: this many temporary blocks of one address within the interval make it
    # permanent. 0 = off.
    perm_block_count: Count = 4
    perm_block_interval: Count = 86400
    # LF_NETBLOCK: this many blocked addresses in one network within the interval block the
    # whole network. 0 = off.
    net_block_count: Count = 0
    net_block_interval: Count = 86400
    net_block_prefix4: Prefix4 = 24
    net_block_prefix6: Prefix6 = 64
    net_block_permanent: bool = True
    # DENY_TEMP_IP_LIMIT and DENY_IP_LIMIT: the oldest are rotated out. Entries in the deny
    # list files and blocks made by hand are never rotated out.
    temp_limit: Count = 65536
    perm_limit: Count = 10000
    # `nightwarden purge` removes dynamic blocks older than this (seconds); 0 = all.
    purge_age: Count = 0


class MailSettings(Section):
    transport: Literal["mbox", "maildir", "smtp", "sendmail", "none"] = "mbox"
    to: str = "root"
    sender: str = msgspec.field(default="", name="from")  # "" = nightwarden@<hostname>
    mbox: str = ""  # "" = <state_dir>/mail/mbox
    maildir: str = ""  # "" = <state_dir>/mail/Maildir
    sendmail: str = "/usr/sbin/sendmail"
    smtp_host: str = "localhost"
    smtp_port: Port = 25
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_cafile: str = ""
    smtp_user: str = ""
    smtp_password_file: str = ""
    smtp_password_env: str = "NIGHTWARDEN_SMTP_PASSWORD"
    smtp_timeout: Count = 30
    templates_dir: str = ""  # "" = only the shipped templates
    html: bool = True
    # further channels for every alert and the daily digest, beside the mail: a JSON POST to
    # each webhook (http or https), and Apprise URLs (slack://, tgram://, ntfy://, matrix://...;
    # the `apprise` extra). Same outbox and retry as mail.
    webhooks: list[str] = default_list()
    apprise: list[str] = default_list()
    channel_timeout: Count = 10

    def __post_init__(self):
        for url in self.webhooks:
            if not url.startswith(("http://", "https://")):
                raise ValueError("webhooks: each is an http:// or https:// URL")


class ScheduleSettings(Section):
    # One schedule for cron.d, `nightwarden schedule run` (APScheduler) and systemd timers:
    # cron syntax with days of the week as names, "off" to leave a job out. Jobs not named
    # here keep their default (nightwarden jobs lists them).
    jobs: dict[str, str] = default_table()
    user: str = "root"  # the user field of cron.d lines
    mailto: str = ""  # "" = mail.to
    path: str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    command: str = ""  # "" = this nightwarden program's absolute path
    in_listener: bool = False  # the listener runs the schedule too (no cron needed)


class MetricsSettings(Section):
    """node_exporter's textfile collector: every job run rewrites <textfile_dir>/nightwarden.prom
    (needs the `metrics` extra: prometheus-client). "" = off."""

    textfile_dir: str = ""  # e.g. /var/lib/prometheus/node-exporter (Debian's collector directory)
    listen_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = (
        0  # the listener serves them on 127.0.0.1; 0 = no
    )


SHARED: dict[str, type[Section]] = {
    "general": GeneralSettings,
    "lists": ListSettings,
    "firewall": FirewallSettings,
    "blocks": BlockSettings,
    "mail": MailSettings,
    "schedule": ScheduleSettings,
    "metrics": MetricsSettings,
}
