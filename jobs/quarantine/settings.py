"""The quarantine job's settings ([quarantine])."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from nightwarden.lib.settings import Count, Section, default_list

RULES = ("elf", "shebang", "extension", "exploit_name", "bad_name", "hidden_dir", "symlink", "core")


class QuarantineSettings(Section):
    dirs: list[str] = default_list("/tmp", "/dev/shm", "/var/tmp")
    mode: Literal["quarantine", "report"] = "quarantine"  # report: find and alert, touch nothing
    ignore_root: bool = True  # files owned by root are not examined (as lfd does)
    ignore_file: str = ""  # "" = <config dir>/nightwarden.fignore (csf.fignore format)
    extra_ignore_files: list[str] = default_list("/etc/csf/csf.fignore")
    rules: list[Literal[RULES]] = default_list(*RULES)
    extensions: list[str] = default_list(
        ".pl", ".cgi", ".php", ".php3", ".php4", ".php5", ".phtml", ".py", ".sh", ".bash"
    )
    exploit_names: list[str] = default_list(
        "r00t",
        "rootkit",
        "xploit",
        "sploit",
        "ptrace",
        "vmsplice",
        "dirtycow",
        "dirtypipe",
        "pwnkit",
        "overlayfs",
        "xmrig",
        "kinsing",
        "kdevtmpfsi",
        "kaiten",
        "tsunami",
        "mirai",
        "psybnc",
        "eggdrop",
        "emech",
        "bindshell",
        "backconnect",
        "c99shell",
        "r57shell",
        "wso.php",
    )
    # the resident listener watches the directories (inotify) and sweeps what arrives within
    # a second; the scheduled sweep stays as the safety net
    follow: bool = False
    follow_delay: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.1  # quiet time before a sweep
    max_files: Count = 1000  # per sweep; the rest are reported
    max_size: Count = 52428800  # larger files are reported and made unreadable
    max_depth: Annotated[int, msgspec.Meta(ge=1, le=200)] = 64  # levels entered (the walk recurses)
    time_limit: Count = 120  # seconds per sweep
    archive_dir: str = ""  # "" = <state_dir>/quarantine
    archive_max_size: Count = 1073741824  # then a new archive is started


def archive_dir(config) -> Path:
    return config.configured_path(config.quarantine.archive_dir, config.state_dir / "quarantine")


def watched_dirs(config) -> list[Path]:
    """The directories swept; under a sandbox they move into it too."""
    return [config.sandboxed(d) for d in config.quarantine.dirs]


def ignore_files(config) -> list[Path]:
    """Our own csf.fignore-format file, then the extra ones (not under a sandbox)."""
    q = config.quarantine
    own = config.configured_path(q.ignore_file, config.config_dir / "nightwarden.fignore")
    return config.own_and_extra(own, q.extra_ignore_files)
