"""--dry-run changes nothing, anywhere: every job and command that takes it runs against a
sandbox full of state (blocks, lists, a quarantine, an integrity database, login failures,
a scan history) and the sandbox is the same afterwards, file by file and row by row. Only
the log and the lock files (run/) may change."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow  # a full sandbox, 21 runs: make test runs it, test-quick does not

ENV = {
    "NIGHTWARDEN_INTEGRITY_PASSPHRASE": "dry run passphrase",
    "NIGHTWARDEN_INTEGRITY_PASSPHRASE_NEW": "another passphrase",
}
ELF = Path("/bin/true").read_bytes()


def nw(box: Path, *args: str, check: int | None = None):
    return run_cli("--sandbox", str(box), *args, env=ENV, check=check)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    box = tmp_path_factory.mktemp("dry") / "sb"
    (box / "etc").mkdir(parents=True)
    (box / "etc" / "nightwarden.toml").write_text("[firewall]\nprotect_loopback = false\n")
    nw(box, "firewall", "start", check=0)
    nw(box, "block", "203.0.113.1", "--ttl", "1h", check=0)
    nw(box, "block", "203.0.113.2", "--permanent", check=0)
    nw(box, "deny", "198.51.100.0/24", check=0)
    nw(box, "allow", "198.18.0.200", check=0)
    (box / "usr" / "bin").mkdir(parents=True)
    (box / "usr" / "bin" / "tool").write_bytes(ELF)
    nw(box, "integrity", "keygen", check=0)
    nw(box, "integrity", "init", check=0)
    (box / "usr" / "bin" / "tool").write_bytes(ELF + b"changed")
    (box / "tmp").mkdir()
    (box / "tmp" / "shell.php").write_text("<?php system($_GET['c']); ?>")
    (box / "tmp" / "xmrig").write_bytes(ELF)
    (box / "var" / "log").mkdir(parents=True)
    (box / "var" / "log" / "auth.log").write_text(
        "".join(
            f"Nov 21 05:00:{i:02d} web1 sshd[{100 + i}]: Failed password for root from 203.0.113.77 "
            f"port {i} ssh2\n"
            for i in range(20)
        )
    )
    (box / "ps.history").write_text(
        "".join(
            f"{1_790_000_000 + i} - 09/21/2026 10:00:{i % 60:02d} Host: 203.0.113.{90 + i % 5}/"
            f"203.0.113.{90 + i % 5} Port: {1 + i} TCP Blocked\n"
            for i in range(200)
        )
    )
    return box


def snapshot(box: Path) -> dict:
    """Every file's bytes (the state database by its rows) but the log and the locks."""
    out = {}
    for path in sorted(box.rglob("*")):
        rel = path.relative_to(box)
        if rel.parts[0] in ("log", "run") or path.name.startswith("state.db"):
            continue
        if path.is_symlink():
            out[str(rel)] = ("link", os.readlink(path))
        elif path.is_file():
            st = path.stat()
            out[str(rel)] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode, st.st_mtime_ns)
        elif path.is_dir():
            out[str(rel)] = ("dir", path.stat().st_mode)
    db = sqlite3.connect(box / "state" / "state.db")
    out["state.db"] = list(db.iterdump())
    db.close()
    return out


DRY_RUNS = [
    ["expire"],
    ["login-failures"],
    ["quarantine"],
    ["integrity", "check"],
    ["integrity", "init", "--force"],
    ["integrity", "update", "--all"],
    ["integrity", "rekey"],
    ["scan-history", "--import", "PS", "--apply"],
    ["purge"],
    ["prune"],
    ["processes"],
    ["report"],
    ["daily"],
    ["block", "203.0.113.9"],
    ["unblock", "203.0.113.1"],
    ["allow", "203.0.113.10"],
    ["deny", "203.0.113.11"],
    ["ignore", "203.0.113.12"],
    ["allow", "--remove", "198.18.0.200"],
    ["deny", "--remove", "198.51.100.0/24"],
    ["unignore", "203.0.113.12"],
    ["firewall", "start"],
    ["firewall", "stop"],
    ["mail", "flush"],
    ["mail", "test"],
    ["install", "--root", "ROOT"],
    ["uninstall", "--root", "ROOT"],
]


@pytest.mark.parametrize("argv", DRY_RUNS, ids=[" ".join(a) for a in DRY_RUNS])
def test_dry_run_changes_nothing_anywhere(box, tmp_path, argv):
    root = tmp_path / "root"
    argv = [str(box / "ps.history") if a == "PS" else str(root) if a == "ROOT" else a for a in argv]
    before = snapshot(box)
    done = nw(box, *argv, "--dry-run")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode < 64, (done.returncode, done.stdout, done.stderr)
    after = snapshot(box)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"--dry-run changed {changed}"
    assert not root.exists(), "install --dry-run wrote under --root"
