"""The login-failure job's settings ([logins] and its [[logins.sources]])."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from nightwarden.lib.settings import Count, Section, Ttl, default_list, default_table

from .rules import SERVICES_ALL

FORMATS = ("auto", "rfc3164", "rfc3339", "rfc5424", "tai64n", "apache", "nginx", "exim", "vsftpd")
Service = Literal[SERVICES_ALL]
BLOCKING = ("sshd", "ftpd", "smtpauth", "pop3d", "imapd", "htaccess", "modsec")


class LogSource(Section):
    """A log file and the services whose wordings are looked for in it. format: auto (rfc3164,
    rfc3339 or rfc5424, told from the first line), or a daemon's own file format."""

    path: str
    format: Literal[FORMATS] = "auto"
    services: list[Service] = default_list()  # empty: every service

    def __post_init__(self):
        from .rules import services_without_rules

        missing = services_without_rules(self.format, self.services)
        if missing:
            raise ValueError(f"format {self.format!r} has no rules for {', '.join(missing)}")


class LoginSettings(Section):
    # Files read by `nightwarden login-failures` (a missing file is skipped).
    sources: list[LogSource] = msgspec.field(
        default_factory=lambda: [
            LogSource(path="/var/log/auth.log", services=["sshd", "su", "sudo", "console"]),
            LogSource(path="/var/log/secure", services=["sshd", "su", "sudo", "console"]),
            LogSource(path="/var/log/mail.log", services=["imapd", "pop3d", "smtpauth"]),
            LogSource(path="/var/log/syslog", services=["ftpd"]),
            LogSource(path="/var/log/vsftpd.log", format="vsftpd", services=["ftpd"]),
            LogSource(path="/var/log/apache2/error.log", format="apache", services=["htaccess", "modsec"]),
            LogSource(path="/var/log/nginx/error.log", format="nginx", services=["htaccess", "modsec"]),
            LogSource(path="/var/log/exim4/mainlog", format="exim", services=["smtpauth"]),
        ]
    )
    # "listener": the resident listener follows every source (inotify, `journalctl --follow`)
    # and blocks within a second; the cron job then reads only the sources the listener does
    # not hold (it takes over when the listener is down). "cron": only the job reads them.
    follow: Literal["listener", "cron"] = "listener"
    # Drop-in detection rules (*.toml, README "Detection rules"): "" = <config dir>/rules.d
    rules_dir: str = ""
    # The journal: "auto" = when no file source for sshd exists (Debian 12 without rsyslog),
    # "yes", "no". Its entries are named by journald's trusted _COMM and _PID.
    journal: Literal["auto", "yes", "no"] = "auto"
    journal_command: list[str] = default_list("journalctl", "--output=json", "--no-pager", "--quiet")
    journal_services: list[Service] = default_list(
        "sshd", "su", "sudo", "console", "imapd", "pop3d", "smtpauth", "ftpd"
    )
    # LF_SSHD, LF_FTPD, LF_SMTPAUTH, LF_POP3D, LF_IMAPD, LF_HTACCESS, LF_MODSEC: this many
    # failures from one address within `interval` seconds block it. 0 = off.
    limits: dict[Literal[BLOCKING], Count] = default_table(
        sshd=5, ftpd=10, smtpauth=5, pop3d=10, imapd=10, htaccess=5, modsec=5
    )
    interval: Count = 3600  # LF_INTERVAL
    # a window of its own for a service (seconds); 0 = `interval`
    intervals: dict[Literal[BLOCKING], Count] = default_table(
        sshd=0, ftpd=0, smtpauth=0, pop3d=0, imapd=0, htaccess=0, modsec=0
    )
    block: bool = True
    block_ttl: Ttl = 3600  # temporary; repeated blocks escalate (blocks.perm_block_count)
    alert: bool = True  # LF_EMAIL_ALERT
    # LF_SSH_EMAIL_ALERT, LF_SU_EMAIL_ALERT, LF_CONSOLE_EMAIL_ALERT: a mail for every
    # successful ssh login, every su to root, every root login on a console
    ssh_alert: bool = True
    su_alert: bool = True
    console_alert: bool = True
    # "each": a mail per login; "batch": one mail per read with every login it found (a busy
    # host; more than 20 at once are batched in any case)
    notify: Literal["each", "batch"] = "each"
    alert_lines: Count = 10  # log lines quoted in an alert
    # LF_DISTATTACK(_UNIQ): one account failing from at least this many addresses within
    # `interval` blocks them all (0 = off, csf's default)
    dist_attack: Count = 0
    # LF_DISTFTP(_UNIQ), LF_DISTSMTP(_UNIQ): one account logging in successfully from at least
    # this many addresses within dist_interval (LF_DIST_INTERVAL) is mailed (a stolen
    # password), and its addresses blocked with dist_login_block (0 = off)
    dist_login: dict[Literal["ftpd", "smtpauth", "imapd", "pop3d", "sshd"], Count] = default_table(
        ftpd=0, smtpauth=0
    )
    dist_interval: Count = 300
    dist_login_block: bool = True
    # LT_POP3D, LT_IMAPD: more logins than this of one account from one address in a clock
    # hour block the address for the rest of the hour (0 = off); LT_EMAIL_ALERT is `alert`
    tracking: dict[Literal["pop3d", "imapd"], Count] = default_table(pop3d=0, imapd=0)
    resolution: Annotated[int, msgspec.Meta(ge=1)] = 60  # counting windows are exact to this
