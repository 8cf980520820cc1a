"""Shared fixtures: a private network namespace per firewall test, configs in temp dirs."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import write_config

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.fixture
def netns():
    """Move this test into a fresh network namespace (loopback only) and back afterwards.

    Every rule a test adds lives and dies with that namespace: the host's firewall is never
    touched. Child processes (nft, ipset, iptables) inherit the namespace."""
    if os.geteuid() != 0:
        pytest.skip("firewall tests need root to create a private network namespace")
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    before = _netns_inode()
    if _libc.unshare(CLONE_NEWNET) != 0:
        os.close(original)
        pytest.skip(f"cannot create a network namespace: {os.strerror(ctypes.get_errno())}")
    try:
        assert _netns_inode() != before, "not in a new network namespace: refusing to go on"
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        from nightwarden.lib import netaddr

        netaddr.own_addresses.cache_clear()
        yield
    finally:
        if _libc.setns(original, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "cannot return to the original network namespace")
        os.close(original)
        from nightwarden.lib import netaddr

        netaddr.own_addresses.cache_clear()


@pytest.fixture
def config_file(tmp_path):
    return write_config(tmp_path)


@pytest.fixture
def open_tmp():
    """A directory an unprivileged process can reach (pytest's own temp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="nw-race-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(items):
    """Markers that follow from a test's fixtures: a private namespace needs root."""
    for item in items:
        if "netns" in item.fixturenames:
            item.add_marker(pytest.mark.netns)
            item.add_marker(pytest.mark.root)
        if "open_tmp" in item.fixturenames:
            item.add_marker(pytest.mark.root)
