"""Configuration: embedded defaults, TOML files, validation, derived paths.

Each section is a typed schema beside the code that reads it (lib/settings.py for the
shared ones, jobs/<job>/settings.py for a job's); the job registry hands the engine the
whole `Schema`. Code reads attributes (`config.listener.block_ttl`); nothing changes the
configuration once it is loaded.

Search order: ``--config PATH``, else ``$NIGHTWARDEN_CONFIG``, else the system file
(/etc/nightwarden/nightwarden.toml as root, ~/.config/nightwarden/nightwarden.toml
otherwise). Every ``*.toml`` in a ``conf.d`` directory beside the main file is read
after it, in name order. A missing default file is fine: every key has a default.

A sandbox (``--sandbox DIR`` or ``$NIGHTWARDEN_SANDBOX``) re-roots every path under
DIR and forces the dry-run firewall, so nothing outside DIR is touched.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from .errors import ConfigError, NightwardenError, NoInputError
from .settings import Section

SYSTEM_CONFIG = Path("/etc/nightwarden/nightwarden.toml")


# -- the engine: merge the TOML files, validate every section through its schema ------------
@dataclass(frozen=True)
class Schema:
    """What the engine validates: every section's settings type, and the jobs a schedule may
    name with their default schedules (the job registry provides both)."""

    sections: dict[str, type[Section]]
    schedules: dict[str, str] = field(default_factory=dict)  # job -> its default schedule
    summaries: dict[str, str] = field(default_factory=dict)  # job -> what it does

    def settings_type(self) -> type:
        return msgspec.defstruct(
            "Settings",
            [(name, kind, msgspec.field(default_factory=kind)) for name, kind in self.sections.items()],
            frozen=True,
            forbid_unknown_fields=True,
            kw_only=True,
        )


_KINDS = {
    "int": "an integer",
    "str": "a string",
    "bool": "a boolean",
    "float": "a number",
    "array": "a list",
    "object": "a table",
    "null": "nothing",
}


def _key(location: str) -> str:
    """msgspec's `$.logins.sources[0].format` as the user counts: logins.sources[1].format."""
    key = location.removeprefix("$").removeprefix(".")
    return re.sub(r"\[(\d+)\]", lambda m: f"[{int(m[1]) + 1}]", key)


def _choices(kind: type, key: str, of_key: bool = False) -> list | None:
    """The allowed values of the setting at `key` when it is a choice (a Literal); with
    `of_key`, the allowed keys of the table at `key`."""
    info = msgspec.inspect.type_info(kind)
    for part in re.findall(r"[^.\[\]]+", key):
        while isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.DictType)):
            info = info.item_type if isinstance(info, msgspec.inspect.ListType) else info.value_type
        if not isinstance(info, msgspec.inspect.StructType):
            return None
        fields = {f.encode_name: f.type for f in info.fields}
        if part.isdigit() or part not in fields:
            continue
        info = fields[part]
    while isinstance(info, msgspec.inspect.ListType):
        info = info.item_type
    if of_key and isinstance(info, msgspec.inspect.DictType):
        info = info.key_type
    return list(info.values) if isinstance(info, msgspec.inspect.LiteralType) else None


def _explain(path: str, error: msgspec.ValidationError, kind: type) -> ConfigError:
    """msgspec's message as one line that names the file and the key."""
    text = str(error)
    message, _, location = text.rpartition(" - at `")
    if not message:
        message, location = text, "$`"
    location = location.rstrip("`")
    of_key = location.startswith("key` in `")  # a table's key, not its value
    key = _key(location.removeprefix("key` in `"))
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", message)
    if unknown:
        return ConfigError(f"{path}: unknown key '{'.'.join(filter(None, [key, unknown[1]]))}'")
    missing = re.fullmatch(r"Object missing required field `(.+)`", message)
    if missing:
        return ConfigError(f"{path}: '{key}' needs a key '{missing[1]}'")
    wrong = re.fullmatch(r"Expected `(\w+)`(?:, got `(\w+)`)?(.*)", message)
    if wrong:
        want, got, bound = wrong.groups()
        text = f"must be {_KINDS.get(want, want)}{bound}" + (f", not {_KINDS.get(got, got)}" if got else "")
        return ConfigError(f"{path}: key '{key}' {text}")
    if message.startswith("Invalid enum value"):
        choices = _choices(kind, key, of_key)
        shown = ", ".join(map(str, sorted(choices, key=str))) if choices else "?"
        what = "a key of" if of_key else "key"
        return ConfigError(f"{path}: {what} '{key}' must be one of {shown}, not {message.split(' ', 3)[3]}")
    return ConfigError(f"{path}: {'key ' + repr(key) + ': ' if key else ''}{message}")


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _check_text(path: str, value, key: str = "") -> None:
    """No setting holds a control character: a newline in mail.to or schedule.mailto would be
    a second line in a mail header or in /etc/cron.d (a cron job of the writer's choosing)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_text(path, v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value, 1):
            _check_text(path, v, f"{key}[{i}]")
    elif isinstance(value, str) and _CONTROL.search(value):
        raise ConfigError(f"{path}: key '{key}' holds a control character (a newline?): {value!r}")


def _merge(base: dict, new: dict) -> None:
    """Tables merge key by key; everything else (lists of tables too) replaces."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _check_schedules(path: str, jobs: dict, schema: Schema) -> None:
    from .schedule.cron import CronError, parse

    for job, text in jobs.items():
        if job not in schema.schedules:
            raise ConfigError(f"{path}: unknown job '{job}' in [schedule.jobs]")
        if text.strip() in ("", "off"):
            continue
        try:
            parse(text)
        except CronError as e:
            raise ConfigError(f"{path}: key 'schedule.jobs.{job}': {e}") from None


def validate(files: list[Path], schema: Schema):
    """The settings of the embedded defaults with each file merged over them in turn; the
    first file that breaks a rule is named in the error."""
    kind = schema.settings_type()
    raw = msgspec.to_builtins(kind())
    raw["schedule"]["jobs"] = dict(schema.schedules)
    settings = msgspec.convert(raw, kind)
    for path in files:
        data = read_toml(path)
        _check_text(str(path), data)
        _merge(raw, data)
        try:
            settings = msgspec.convert(raw, kind)
        except msgspec.ValidationError as e:
            raise _explain(str(path), e, kind) from None
        _check_schedules(str(path), settings.schedule.jobs, schema)
    return settings


MAX_CONFIG_BYTES = 4 << 20


def read_toml(path: Path) -> dict:
    """A configuration file: a regular file (a FIFO or a device is refused, never waited on
    or read without end) of at most 4 MiB."""
    from .fsutil import read_regular

    try:
        raw = read_regular(path, MAX_CONFIG_BYTES, "configuration file", follow=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file does not exist") from None
    except OSError as e:
        raise NoInputError(f"{path}: cannot read: {e.strerror}") from None
    except NightwardenError as e:
        raise NoInputError(str(e)) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _exists(path: Path, what: str) -> bool:
    """Path.exists() that says "cannot read" (exit 66) instead of raising PermissionError."""
    try:
        return path.exists()
    except OSError as e:
        raise NoInputError(f"{path}: cannot read the {what}: {e.strerror}") from None


def _is_root() -> bool:
    return os.geteuid() == 0


def _default_dirs(sandbox: Path | None) -> dict:
    if sandbox is not None:
        s = sandbox
        return {
            "state_dir": s / "state",
            "log_dir": s / "log",
            "report_dir": s / "reports",
            "run_dir": s / "run",
            "config_dir": s / "etc",
        }
    if _is_root():
        return {
            "state_dir": Path("/var/lib/nightwarden"),
            "log_dir": Path("/var/log/nightwarden"),
            "report_dir": Path("/var/lib/nightwarden/reports"),
            "run_dir": Path("/run/nightwarden"),
            "config_dir": Path("/etc/nightwarden"),
        }
    home = Path.home()
    state = Path(os.environ.get("XDG_STATE_HOME") or home / ".local/state") / "nightwarden"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return {
        "state_dir": state,
        "log_dir": state / "log",
        "report_dir": state / "reports",
        "run_dir": Path(runtime) / "nightwarden" if runtime else state / "run",
        "config_dir": Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "nightwarden",
    }


class Config:
    """The validated settings (one read-only section per attribute: `config.firewall`,
    `config.listener`, ...) plus the paths derived from them."""

    def __init__(self, settings, schema: Schema, files: list[Path], sandbox: Path | None, dirs: dict):
        self.settings = settings
        self.schema = schema
        self.files = files
        self.sandbox = sandbox
        self.hostname = settings.general.hostname or socket.gethostname()
        self.state_dir: Path = dirs["state_dir"]
        self.log_dir: Path = dirs["log_dir"]
        self.report_dir: Path = dirs["report_dir"]
        self.run_dir: Path = dirs["run_dir"]
        self.config_dir: Path = dirs["config_dir"]

    def __getattr__(self, section: str):
        try:
            return getattr(self.__dict__["settings"], section)
        except AttributeError:
            raise AttributeError(f"no settings section {section!r}") from None

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def outbox_dir(self) -> Path:
        return self.state_dir / "outbox"

    def as_dict(self) -> dict:
        return msgspec.to_builtins(self.settings)

    def list_file(self, kind: str) -> Path:
        """Our own allow/deny/ignore file (the one the CLI writes)."""
        configured = getattr(self.lists, f"{kind}_file")
        return Path(configured) if configured else self.config_dir / f"nightwarden.{kind}"

    def list_files(self, kind: str) -> list[Path]:
        files = self.own_and_extra(self.list_file(kind), getattr(self.lists, f"extra_{kind}_files"))
        if kind == "allow":  # the fleet's allows (operator-signed decisions), when there are any
            files.append(self.fleet_allow_file)
        return files

    @property
    def fleet_allow_file(self) -> Path:
        """The allows the fleet's operator signed, as this host took them (jobs/fleet/apply)."""
        return self.state_dir / "fleet.allow"

    def own_and_extra(self, own: Path, extra: list[str]) -> list[Path]:
        """Our own file of a list, then the extra ones (csf's, PortSentry's), which a sandbox
        leaves out: it reads nothing of the host's."""
        return [own] + ([Path(p) for p in extra] if self.sandbox is None else [])

    def firewall_backend(self) -> str:
        """A sandbox uses the dry-run firewall; only inside a network namespace that has
        nothing but loopback may $NIGHTWARDEN_SANDBOX_FIREWALL ask for a real one (make demo
        does, as root)."""
        if self.sandbox is None:
            return self.firewall.backend
        wanted = os.environ.get("NIGHTWARDEN_SANDBOX_FIREWALL", "")
        if wanted in ("nftables", "ipset") and private_netns():
            return wanted
        return "dryrun"

    def sandboxed(self, path: str | Path) -> Path:
        """A system path, moved under the sandbox when there is one."""
        path = Path(path)
        if self.sandbox is None:
            return path
        return self.sandbox / path.relative_to("/") if path.is_absolute() else self.sandbox / path

    def configured_path(self, value: str, default: Path) -> Path:
        """A path setting: its value, or `default` when it is empty."""
        return Path(value) if value else default


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


def load(explicit: str | None = None, sandbox: str | Path | None = None, *, schema: Schema) -> Config:
    """Load, merge and validate the configuration. Raises ConfigError naming file and key."""
    if sandbox is None and os.environ.get("NIGHTWARDEN_SANDBOX"):
        sandbox = os.environ["NIGHTWARDEN_SANDBOX"]
    sandbox = Path(sandbox).absolute() if sandbox else None
    main, required = config_candidates(explicit, sandbox)
    if (
        sandbox is not None
        and _exists(sandbox, "sandbox directory")
        and not os.access(sandbox, os.R_OK | os.X_OK)
    ):
        raise NoInputError(f"{sandbox}: cannot read the sandbox directory: permission denied")
    files: list[Path] = []
    if main is not None and (required or _exists(main, "configuration file")):
        if required and not _exists(main, "configuration file"):
            raise ConfigError(f"{main}: configuration file does not exist")
        files.append(main)
        confd = main.parent / "conf.d"
        try:
            if confd.is_dir():
                files += sorted(p for p in confd.glob("*.toml") if not p.is_dir())
        except OSError as e:
            raise NoInputError(f"{confd}: cannot read: {e.strerror}") from None
    settings = validate(files, schema)
    dirs = _default_dirs(sandbox)
    general = settings.general
    for key in ("state_dir", "log_dir", "report_dir", "run_dir"):
        if getattr(general, key):
            dirs[key] = Path(getattr(general, key))
    if sandbox is None and main is not None and _exists(main, "configuration file"):
        dirs["config_dir"] = main.parent
    return Config(settings, schema, files, sandbox, dirs)


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
