"""Configuration: embedded defaults, TOML files, validation, derived paths.

Search order: ``--config PATH``, else ``$NIGHTWARDEN_CONFIG``, else the system file
(/etc/nightwarden/nightwarden.toml as root, ~/.config/nightwarden/nightwarden.toml
otherwise). Every ``*.toml`` in a ``conf.d`` directory beside the main file is read
after it, in name order. A missing default file is fine: every key has a default.

A sandbox (``--sandbox DIR`` or ``$NIGHTWARDEN_SANDBOX``) re-roots every path under
DIR and forces the dry-run firewall, so nothing outside DIR is touched.
"""

from __future__ import annotations

import copy
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

DEFAULTS: dict = {
    "general": {
        "hostname": "",          # "" = the machine's host name
        "state_dir": "",         # "" = derived (see _default_dirs)
        "log_dir": "",
        "report_dir": "",
        "run_dir": "",
        "log_level": "info",
        "log_file": True,
        "syslog": True,
    },
    "lists": {
        # Our own files: `nightwarden allow/deny` write here. "" = <config dir>/nightwarden.allow ...
        "allow_file": "",
        "deny_file": "",
        "ignore_file": "",
        # Extra files read as well, in csf/portsentry format. Missing files are skipped.
        "extra_allow_files": ["/etc/csf/csf.allow"],
        "extra_deny_files": ["/etc/csf/csf.deny"],
        "extra_ignore_files": ["/etc/csf/csf.ignore", "/etc/portsentry/portsentry.ignore"],
        "allow": [],
        "deny": [],
        "ignore": [],
    },
    "firewall": {
        "backend": "auto",
        "name": "nightwarden",   # nft table, iptables chain and ipset prefix
        "default_ttl": 3600,     # seconds for `block` without --ttl; 0 = until purged
        "ipv6": True,
        "protect_loopback": True,
        "protect_own_addresses": True,
        "lock_timeout": 30,
    },
    "blocks": {
        # csf's LF_PERMBLOCK: this many temporary blocks of one address within the interval
        # make it permanent. 0 = off.
        "perm_block_count": 4,
        "perm_block_interval": 86400,
        # csf's LF_NETBLOCK: this many blocked addresses in one network within the interval
        # block the whole network (/24 for IPv4, /64 for IPv6 by default). 0 = off.
        "net_block_count": 0,
        "net_block_interval": 86400,
        "net_block_prefix4": 24,
        "net_block_prefix6": 64,
        "net_block_permanent": True,
        # csf's DENY_TEMP_IP_LIMIT and DENY_IP_LIMIT: the oldest are rotated out. Entries in
        # the deny list files and blocks made by hand are never rotated out.
        "temp_limit": 65536,
        "perm_limit": 10000,
        # `nightwarden purge` removes dynamic blocks older than this (seconds); 0 = all.
        "purge_age": 0,
    },
    "quarantine": {
        "dirs": ["/tmp", "/dev/shm", "/var/tmp"],
        "mode": "quarantine",        # or "report": find and alert, touch nothing
        "ignore_root": True,         # files owned by root are not examined (as lfd does)
        "ignore_file": "",           # "" = <config dir>/nightwarden.fignore (csf.fignore format)
        "extra_ignore_files": ["/etc/csf/csf.fignore"],
        "rules": ["elf", "shebang", "extension", "exploit_name", "bad_name", "hidden_dir",
                  "symlink", "core"],
        "extensions": [".pl", ".cgi", ".php", ".php3", ".php4", ".php5", ".phtml", ".py",
                       ".sh", ".bash"],
        "exploit_names": ["r00t", "rootkit", "xploit", "sploit", "ptrace", "vmsplice", "dirtycow",
                          "dirtypipe", "pwnkit", "overlayfs", "xmrig", "kinsing", "kdevtmpfsi",
                          "kaiten", "tsunami", "mirai", "psybnc", "eggdrop", "emech", "bindshell",
                          "backconnect", "c99shell", "r57shell", "wso.php"],
        "max_files": 1000,           # per sweep; the rest are reported
        "max_size": 52428800,        # larger files are reported and made unreadable
        "max_depth": 64,
        "time_limit": 120,           # seconds per sweep
        "archive_dir": "",           # "" = <state_dir>/quarantine
        "archive_max_size": 1073741824,   # then a new archive is started
    },
    "listener": {
        "mode": "connect",           # connect (bind the bait ports) or advanced (raw sockets)
        # PortSentry's classic lists; a port something on the host really uses is skipped
        "tcp_ports": [1, 11, 15, 79, 111, 119, 143, 540, 635, 1080, 1524, 2000, 5742, 6667, 12345,
                      12346, 20034, 27665, 31337, 32771, 32772, 32773, 32774, 40421, 49724, 54320],
        "udp_ports": [1, 7, 9, 69, 161, 162, 513, 635, 640, 641, 700, 37444, 34555, 31335, 32770,
                      32771, 32772, 32773, 32774, 31337, 54321],
        "bind4": "0.0.0.0",
        "bind6": "::",
        "ipv6": True,
        "banner": "",
        # advanced mode (PortSentry's -atcp/-audp): every port below these, but the excluded
        # ones and those in use
        "advanced_tcp_below": 1024,
        "advanced_udp_below": 1024,
        "advanced_tcp_exclude": [113, 139],
        "advanced_udp_exclude": [520, 138, 137, 67],
        "scan_trigger": 0,           # hits from a source before acting (PortSentry's SCAN_TRIGGER)
        "trigger_window": 60,
        "block": True,
        "block_ttl": 3600,
        "max_blocks_per_minute": 20000,
        "hosts_deny": "",            # e.g. /etc/hosts.deny: "ALL: <ip>" lines
        "run_command": [],           # e.g. ["/usr/local/bin/notify", "$TARGET$", "$PORT$", "$MODE$"]
        "history_file": "",          # "" = <state_dir>/portsentry.history (PortSentry's format)
        "blocked_file": "",          # "" = <state_dir>/portsentry.blocked
        "alert_digest_seconds": 300,
        "log_lines_per_second": 20,
    },
    "history": {
        "period_hours": 24,
        "top": 20,                   # rows in the top tables
        "import_files": [],          # PortSentry history files read at every run (1.2 or 2.x)
        "subnet_min_sources": 5,     # a /24 with this many scanning sources is worth blocking
        "repeat_blocks": 3,          # blocked this often (all time): a permanent-block candidate
        "candidate_danger": 4,       # danger level from which a source is a candidate too
        "charts": True,
    },
    "integrity": {
        "paths": ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/local/bin", "/usr/local/sbin",
                  "/etc", "/boot"],
        "excludes": ["/etc/mtab", "/etc/adjtime", "/etc/ld.so.cache", "/etc/resolv.conf",
                     "/etc/nightwarden/*", "*/__pycache__", "*.pyc", "/usr/lib/locale/locale-archive"],
        # The most specific rule (longest path) applies. attrs: "default" or a list of
        # type mode uid gid size inode nlink mtime ctime target sha256 xattrs acl caps flags;
        # growing = true: a log that may only grow (content and times may change).
        "rules": [{"path": "/", "attrs": ["default"], "severity": "high", "growing": False},
                  {"path": "/etc", "attrs": ["default"], "severity": "medium", "growing": False}],
        "database": "",              # "" = <state_dir>/integrity.db
        "private_key": "",           # "" = <config dir>/integrity.key (OpenSSH, encrypted)
        "public_key": "",            # "" = <config dir>/integrity.pub
        "passphrase_file": "",
        "passphrase_env": "NIGHTWARDEN_INTEGRITY_PASSPHRASE",
        "workers": 2,
        "quick": False,              # skip re-hashing files whose inode, size, mtime, ctime are the same
        "package_aware": True,
        "dpkg_info": "/var/lib/dpkg/info",
        "dpkg_log": "/var/log/dpkg.log",
    },
    "mail": {
        "transport": "mbox",
        "to": "root",
        "from": "",              # "" = nightwarden@<hostname>
        "mbox": "",              # "" = <state_dir>/mail/mbox
        "maildir": "",           # "" = <state_dir>/mail/Maildir
        "sendmail": "/usr/sbin/sendmail",
        "smtp_host": "localhost",
        "smtp_port": 25,
        "smtp_security": "starttls",
        "smtp_cafile": "",
        "smtp_user": "",
        "smtp_password_file": "",
        "smtp_password_env": "NIGHTWARDEN_SMTP_PASSWORD",
        "smtp_timeout": 30,
        "templates_dir": "",     # "" = only the shipped templates
        "html": True,
    },
    "report": {
        "period_hours": 24,
    },
    "schedule": {
        # one schedule for cron.d, `nightwarden schedule run` (APScheduler) and systemd timers;
        # cron syntax with days of the week as names (filled in from each job's default)
        "jobs": {},
        "user": "root",              # the user field of cron.d lines
        "mailto": "",                # "" = mail.to
        "path": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "command": "",               # "" = this nightwarden program's absolute path
        "in_listener": False,        # the listener runs the schedule too (no cron needed)
    },
    "logins": {
        # Files read by `nightwarden login-failures` (a missing file is skipped). format: auto
        # (rfc3164, rfc3339 or rfc5424, told from the first line), or apache, nginx, exim,
        # vsftpd for those daemons' own files. services: which detectors run on the file.
        "sources": [
            {"path": "/var/log/auth.log", "format": "auto", "services": ["sshd", "su", "sudo"]},
            {"path": "/var/log/secure", "format": "auto", "services": ["sshd", "su", "sudo"]},
            {"path": "/var/log/mail.log", "format": "auto",
             "services": ["imapd", "pop3d", "smtpauth"]},
            {"path": "/var/log/syslog", "format": "auto", "services": ["ftpd"]},
            {"path": "/var/log/vsftpd.log", "format": "vsftpd", "services": ["ftpd"]},
            {"path": "/var/log/apache2/error.log", "format": "apache", "services": ["htaccess", "modsec"]},
            {"path": "/var/log/nginx/error.log", "format": "nginx", "services": ["htaccess", "modsec"]},
            {"path": "/var/log/exim4/mainlog", "format": "exim", "services": ["smtpauth"]},
        ],
        # The journal: "auto" = when no file source for sshd exists (Debian 12 without
        # rsyslog), "yes", "no". Its entries are named by journald's trusted _COMM and _PID.
        "journal": "auto",
        "journal_command": ["journalctl", "--output=json", "--no-pager", "--quiet"],
        "journal_services": ["sshd", "su", "sudo", "imapd", "pop3d", "smtpauth", "ftpd"],
        # csf's LF_SSHD, LF_FTPD, LF_SMTPAUTH, LF_POP3D, LF_IMAPD, LF_HTACCESS, LF_MODSEC:
        # this many failures from one address within `interval` seconds block it. 0 = off.
        "limits": {"sshd": 5, "ftpd": 10, "smtpauth": 5, "pop3d": 10, "imapd": 10,
                   "htaccess": 5, "modsec": 5},
        "interval": 3600,            # csf's LF_INTERVAL
        # a window of its own for a service (seconds); 0 = `interval`
        "intervals": {"sshd": 0, "ftpd": 0, "smtpauth": 0, "pop3d": 0, "imapd": 0,
                      "htaccess": 0, "modsec": 0},
        "block": True,
        "block_ttl": 3600,           # temporary; repeated blocks escalate (blocks.perm_block_count)
        "alert": True,               # csf's LF_EMAIL_ALERT
        "alert_lines": 10,           # log lines quoted in an alert
        "resolution": 60,            # counting windows are exact to this many seconds
    },
}

def _job_schedules() -> dict:
    from nightwarden.jobs import JOBS
    return {name: job.schedule for name, job in JOBS.items()}


DEFAULTS["schedule"]["jobs"] = _job_schedules()

CHOICES = {
    ("general", "log_level"): {"debug", "info", "warning", "error"},
    ("firewall", "backend"): {"auto", "nftables", "ipset", "iptc", "dryrun"},
    ("mail", "transport"): {"mbox", "maildir", "smtp", "sendmail", "none"},
    ("mail", "smtp_security"): {"starttls", "tls", "none"},
    ("logins", "journal"): {"auto", "yes", "no"},
}

SYSTEM_CONFIG = Path("/etc/nightwarden/nightwarden.toml")


def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list of strings", dict: "a table"}[type(value)]


def _check_value(path: str, key: tuple, default, value) -> None:
    name = ".".join(key)
    if isinstance(default, list) and default and isinstance(default[0], int):
        if not (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                and 0 < v < 65536 for v in value)):
            raise ConfigError(f"{path}: key '{name}' must be a list of port numbers (1-65535)")
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{path}: key '{name}' must be {_type_name(default)}, "
                          f"not {type(value).__name__} {value!r}")
    choices = CHOICES.get(key)
    if choices and value not in choices:
        raise ConfigError(f"{path}: key '{name}' must be one of {', '.join(sorted(choices))}, "
                          f"not {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{path}: key '{name}' must not be negative")


TABLE_TYPES = {
    "integrity.rules": {"path": str, "attrs": list, "severity": str, "growing": bool},
    "logins.sources": {"path": str, "format": str, "services": list},
}
SEVERITIES = {"low", "medium", "high"}
LOG_FORMATS = {"auto", "rfc3164", "rfc3339", "rfc5424", "apache", "nginx", "exim", "vsftpd"}
LOGIN_SERVICES = {"sshd", "su", "sudo", "ftpd", "imapd", "pop3d", "smtpauth", "htaccess", "modsec"}


def _check_rules(path: str, name: str, value) -> None:
    """A list of tables such as [[integrity.rules]]: each with known keys of the right type."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{path}: key '{name}' must be a list of tables ([[{name}]])")
    types = TABLE_TYPES[name]
    for i, rule in enumerate(value, 1):
        if name == "logins.sources":
            _check_source(path, name, i, rule)
        for key, item in rule.items():
            want = types.get(key)
            if want is None:
                raise ConfigError(f"{path}: unknown key '{name}[{i}].{key}'")
            if not isinstance(item, want) or (want is list and not all(isinstance(x, str) for x in item)):
                raise ConfigError(f"{path}: key '{name}[{i}].{key}' must be {_type_name(want())}")
        if "path" not in rule:
            raise ConfigError(f"{path}: '{name}[{i}]' needs a path")
        if name == "integrity.rules" and rule.get("severity", "high") not in SEVERITIES:
            raise ConfigError(f"{path}: key '{name}[{i}].severity' must be one of high, low, medium")


def _check_source(path: str, name: str, i: int, source: dict) -> None:
    fmt = source.get("format", "auto")
    if isinstance(fmt, str) and fmt not in LOG_FORMATS:
        raise ConfigError(f"{path}: key '{name}[{i}].format' must be one of "
                          f"{', '.join(sorted(LOG_FORMATS))}, not {fmt!r}")
    services = source.get("services", [])
    if isinstance(services, list):
        bad = [s for s in services if s not in LOGIN_SERVICES]
        if bad:
            raise ConfigError(f"{path}: key '{name}[{i}].services': unknown service {bad[0]!r} "
                              f"(known: {', '.join(sorted(LOGIN_SERVICES))})")


def _check_schedule(path: str, name: str, value) -> None:
    from .schedule.cron import CronError, parse
    if not isinstance(value, str):
        raise ConfigError(f"{path}: key '{name}' must be a string (a cron schedule)")
    if value.strip() in ("", "off"):
        return
    try:
        parse(value)
    except CronError as e:
        raise ConfigError(f"{path}: key '{name}': {e}") from None


def _merge(path: str, base: dict, new: dict, defaults: dict, prefix: tuple = ()) -> None:
    for key, value in new.items():
        full = prefix + (key,)
        if prefix == ("schedule", "jobs"):
            if key not in defaults:
                raise ConfigError(f"{path}: unknown job '{key}' in [schedule.jobs]")
            _check_schedule(path, ".".join(full), value)
            base[key] = value
            continue
        if key not in defaults:
            raise ConfigError(f"{path}: unknown key '{'.'.join(full)}'")
        if isinstance(defaults[key], list) and defaults[key] and isinstance(defaults[key][0], dict):
            _check_rules(path, ".".join(full), value)
            base[key] = value
        elif isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: '{'.'.join(full)}' must be a table ([{'.'.join(full)}])")
            _merge(path, base[key], value, defaults[key], full)
        else:
            _check_value(path, full, defaults[key], value)
            base[key] = value


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _is_root() -> bool:
    return os.geteuid() == 0


def _default_dirs(sandbox: Path | None) -> dict:
    if sandbox is not None:
        s = sandbox
        return {"state_dir": s / "state", "log_dir": s / "log", "report_dir": s / "reports",
                "run_dir": s / "run", "config_dir": s / "etc"}
    if _is_root():
        return {"state_dir": Path("/var/lib/nightwarden"), "log_dir": Path("/var/log/nightwarden"),
                "report_dir": Path("/var/lib/nightwarden/reports"),
                "run_dir": Path("/run/nightwarden"), "config_dir": Path("/etc/nightwarden")}
    home = Path.home()
    state = Path(os.environ.get("XDG_STATE_HOME") or home / ".local/state") / "nightwarden"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return {"state_dir": state, "log_dir": state / "log", "report_dir": state / "reports",
            "run_dir": Path(runtime) / "nightwarden" if runtime else state / "run",
            "config_dir": Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "nightwarden"}


@dataclass
class Config:
    """The merged configuration plus the paths derived from it."""

    data: dict
    files: list[Path] = field(default_factory=list)
    sandbox: Path | None = None
    hostname: str = ""
    state_dir: Path = Path()
    log_dir: Path = Path()
    report_dir: Path = Path()
    run_dir: Path = Path()
    config_dir: Path = Path()

    def __getitem__(self, section: str) -> dict:
        return self.data[section]

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def outbox_dir(self) -> Path:
        return self.state_dir / "outbox"

    def list_file(self, kind: str) -> Path:
        """Our own allow/deny/ignore file (the one the CLI writes)."""
        configured = self.data["lists"][f"{kind}_file"]
        return Path(configured) if configured else self.config_dir / f"nightwarden.{kind}"

    def list_files(self, kind: str) -> list[Path]:
        files = [self.list_file(kind)]
        if self.sandbox is None:
            files += [Path(p) for p in self.data["lists"][f"extra_{kind}_files"]]
        return files

    def firewall_backend(self) -> str:
        """A sandbox uses the dry-run firewall; only inside a network namespace that has
        nothing but loopback may $NIGHTWARDEN_SANDBOX_FIREWALL ask for a real one (make demo
        does, as root)."""
        if self.sandbox is None:
            return self.data["firewall"]["backend"]
        wanted = os.environ.get("NIGHTWARDEN_SANDBOX_FIREWALL", "")
        if wanted in ("nftables", "ipset") and private_netns():
            return wanted
        return "dryrun"

    def watched_dirs(self) -> list[Path]:
        """The quarantine job's directories; under a sandbox they move into it too."""
        return [self.sandboxed(d) for d in self.data["quarantine"]["dirs"]]

    def fignore_files(self) -> list[Path]:
        q = self.data["quarantine"]
        files = [Path(q["ignore_file"]) if q["ignore_file"] else self.config_dir / "nightwarden.fignore"]
        if self.sandbox is None:
            files += [Path(p) for p in q["extra_ignore_files"]]
        return files

    def sandboxed(self, path: str | Path) -> Path:
        """A system path, moved under the sandbox when there is one."""
        path = Path(path)
        if self.sandbox is None:
            return path
        return self.sandbox / path.relative_to("/") if path.is_absolute() else self.sandbox / path

    def integrity_path(self, key: str) -> Path:
        configured = self.data["integrity"][key]
        if configured:
            return Path(configured)
        return {"database": self.state_dir / "integrity.db",
                "private_key": self.config_dir / "integrity.key",
                "public_key": self.config_dir / "integrity.pub"}[key]

    def quarantine_dir(self) -> Path:
        configured = self.data["quarantine"]["archive_dir"]
        return Path(configured) if configured else self.state_dir / "quarantine"

    def mail_path(self, kind: str) -> Path:
        configured = self.data["mail"][kind]
        return Path(configured) if configured else self.state_dir / "mail" / (
            "mbox" if kind == "mbox" else "Maildir")


def private_netns() -> bool:
    """True in a network namespace with no interface but loopback: nothing done to its
    firewall can reach the host's network."""
    try:
        with open("/proc/self/net/dev") as f:
            names = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    except OSError:
        return False
    return names == ["lo"]


def config_candidates(explicit: str | None, sandbox: Path | None) -> tuple[Path | None, bool]:
    """Return (main config file, whether it must exist)."""
    if explicit:
        return Path(explicit), True
    env = os.environ.get("NIGHTWARDEN_CONFIG")
    if env:
        return Path(env), True
    if sandbox is not None:
        return sandbox / "etc" / "nightwarden.toml", False
    if _is_root():
        return SYSTEM_CONFIG, False
    return _default_dirs(None)["config_dir"] / "nightwarden.toml", False


def load(explicit: str | None = None, sandbox: str | Path | None = None) -> Config:
    """Load, merge and validate the configuration. Raises ConfigError naming file and key."""
    if sandbox is None and os.environ.get("NIGHTWARDEN_SANDBOX"):
        sandbox = os.environ["NIGHTWARDEN_SANDBOX"]
    sandbox = Path(sandbox).absolute() if sandbox else None
    data = copy.deepcopy(DEFAULTS)
    main, required = config_candidates(explicit, sandbox)
    files: list[Path] = []
    if main is not None and (required or main.exists()):
        if required and not main.exists():
            raise ConfigError(f"{main}: configuration file does not exist")
        files.append(main)
        confd = main.parent / "conf.d"
        if confd.is_dir():
            files += sorted(p for p in confd.glob("*.toml") if p.is_file())
    for path in files:
        _merge(str(path), data, read_toml(path), DEFAULTS)

    dirs = _default_dirs(sandbox)
    general = data["general"]
    cfg = Config(data=data, files=files, sandbox=sandbox,
                 hostname=general["hostname"] or socket.gethostname())
    for key in ("state_dir", "log_dir", "report_dir", "run_dir"):
        setattr(cfg, key, Path(general[key]) if general[key] else dirs[key])
    cfg.config_dir = main.parent if (main is not None and main.exists()) else dirs["config_dir"]
    if sandbox is not None:
        cfg.config_dir = dirs["config_dir"]
        # a sandboxed listener opens no port on the host's real interfaces
        data["listener"]["bind4"], data["listener"]["bind6"] = "127.0.0.1", "::1"
    return cfg


def to_toml(data: dict) -> str:
    """Render a config dict as TOML (for `nightwarden config show`)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
