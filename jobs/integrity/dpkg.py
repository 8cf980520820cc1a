"""Package-aware checking: a changed file whose new content matches the checksum its Debian
package ships (/var/lib/dpkg/info/*.md5sums), where /var/log/dpkg.log shows that package
installed or upgraded since the snapshot, is explained by the upgrade."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path


def owners(info_dir: Path, wanted: set[str]) -> dict[str, tuple[str, str]]:
    """path -> (package, md5) for the wanted absolute paths."""
    rel = {p.lstrip("/"): p for p in wanted}
    found: dict[str, tuple[str, str]] = {}
    try:
        files = sorted(info_dir.glob("*.md5sums"))
    except OSError:
        return found
    for md5file in files:
        package = md5file.name[: -len(".md5sums")].split(":")[0]
        try:
            lines = md5file.read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            md5, _, name = line.partition(b"  ")
            key = os.fsdecode(name.strip())
            if key in rel:
                found[rel[key]] = (package, md5.decode())
    return found


def upgrades(log: Path, since: float) -> dict[str, tuple[float, str]]:
    """package -> (time, version) of its latest install or upgrade since `since`."""
    out: dict[str, tuple[float, str]] = {}
    paths = [log] + sorted(log.parent.glob(log.name + ".[0-9]")) if log.parent.exists() else [log]
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 6 or parts[2] not in ("upgrade", "install"):
                continue
            try:
                when = datetime.strptime(f"{parts[0]} {parts[1]}", "%Y-%m-%d %H:%M:%S").timestamp()
            except ValueError:
                continue
            if when >= since:
                package = parts[3].split(":")[0]
                if package not in out or out[package][0] < when:
                    out[package] = (when, parts[5])
    return out


def md5_of(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def explain(changes, since: float, info_dir: Path, log: Path) -> int:
    """Mark the changes a package upgrade explains; return how many."""
    content = [c for c in changes if any(a[0] == "sha256" for a in c.attrs)]
    if not content:
        return 0
    owned = owners(info_dir, {c.path for c in content})
    if not owned:
        return 0
    upgraded = upgrades(log, since)
    count = 0
    for change in content:
        if change.path not in owned:
            continue
        package, md5 = owned[change.path]
        if package in upgraded and md5_of(change.path) == md5:
            when, version = upgraded[package]
            stamp = datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
            change.explained = f"explained by the upgrade of package {package} to {version} at {stamp}"
            count += 1
    return count
