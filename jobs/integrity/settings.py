"""The integrity job's settings ([integrity] and its [[integrity.rules]])."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from nightwarden.lib.settings import Count, Section, default_list

# the attributes a rule may check; "default" and "all" stand for every one of them
ATTRIBUTES = ("type", "mode", "uid", "gid", "size", "inode", "nlink", "mtime", "ctime", "target",
              "sha256", "xattrs", "acl", "caps", "flags")  # fmt: skip
ATTRS = ("default", "all", *ATTRIBUTES)


class IntegrityRule(Section):
    """The most specific rule (longest path) applies. attrs: "default" or a list of the
    attribute names; growing: a log that may only grow (content and times may change)."""

    path: str
    attrs: list[Literal[ATTRS]] = default_list("default")
    severity: Literal["low", "medium", "high"] = "high"
    growing: bool = False


class IntegritySettings(Section):
    paths: list[str] = default_list(
        "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/local/bin", "/usr/local/sbin", "/etc", "/boot"
    )
    excludes: list[str] = default_list(
        "/etc/mtab",
        "/etc/adjtime",
        "/etc/ld.so.cache",
        "/etc/resolv.conf",
        "/etc/nightwarden/*",
        "*/__pycache__",
        "*.pyc",
        "/usr/lib/locale/locale-archive",
    )
    rules: list[IntegrityRule] = msgspec.field(
        default_factory=lambda: [IntegrityRule(path="/"), IntegrityRule(path="/etc", severity="medium")]
    )
    database: str = ""  # "" = <state_dir>/integrity.db
    private_key: str = ""  # "" = <config dir>/integrity.key (OpenSSH, encrypted)
    public_key: str = ""  # "" = <config dir>/integrity.pub
    passphrase_file: str = ""
    passphrase_env: str = "NIGHTWARDEN_INTEGRITY_PASSPHRASE"
    workers: Count = 2
    quick: bool = False  # skip re-hashing files whose inode, size, mtime, ctime are the same
    package_aware: bool = True
    dpkg_info: str = "/var/lib/dpkg/info"
    dpkg_log: str = "/var/log/dpkg.log"


def integrity_file(config, key: str) -> Path:
    """The database, the private key or the public key: as configured, or the default place."""
    default = {
        "database": config.state_dir / "integrity.db",
        "private_key": config.config_dir / "integrity.key",
        "public_key": config.config_dir / "integrity.pub",
        "seal": config.config_dir / "integrity.seal",
    }[key]
    return config.configured_path(getattr(config.integrity, key, ""), default)
