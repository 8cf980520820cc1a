"""Operations: real logrotate runs against our logrotate.d file while the listener and the
jobs keep logging; the listener hosting the schedule."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import NIGHTWARDEN, need, run_cli


def wait_for(path: Path, text: str, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path}: {path.read_text() if path.exists() else '(none)'}")


def probe(source: str, port: int = 31337) -> None:
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            pass


def start_listener(box: Path, config: str) -> subprocess.Popen:
    (box / "etc").mkdir(parents=True)
    (box / "etc" / "nightwarden.toml").write_text(config)
    return subprocess.Popen(
        [NIGHTWARDEN, "--sandbox", str(box), "listen", "--no-mail"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


@pytest.fixture
def listener(tmp_path, netns):
    box = tmp_path / "sb"
    # test attackers are 127.x addresses: loopback may be acted on here
    proc = start_listener(box, "[firewall]\nprotect_loopback = false\n")
    log = box / "log" / "nightwarden.log"
    try:
        wait_for(log, "listening (connect mode)")
        yield box, log
    finally:
        stop(proc)


@pytest.mark.peer
def test_logrotate_keeps_the_listener_and_jobs_writing_and_loses_nothing(listener, tmp_path):
    need("logrotate")
    box, log = listener
    conf = tmp_path / "logrotate.conf"
    conf.write_text(run_cli("--sandbox", str(box), "schedule", "logrotate", check=0).stdout)
    assert f"{box}/log/*.log {{" in conf.read_text()

    probe("127.0.1.1")
    wait_for(log, "127.0.1.1")
    run_cli("--sandbox", str(box), "expire", check=0)
    before = log.read_text()
    assert before.count("expire finished") == 1

    rot = subprocess.run(
        ["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)], capture_output=True, text=True
    )
    assert rot.returncode == 0, rot.stderr
    rotated = box / "log" / "nightwarden.log.1"
    assert rotated.exists() and (not log.exists() or log.stat().st_size == 0)

    probe("127.0.1.2")
    run_cli("--sandbox", str(box), "expire", check=0)
    wait_for(log, "127.0.1.2")  # the listener writes into the new file
    new, old = log.read_text(), rotated.read_text()
    assert "127.0.1.1" in old and "127.0.1.1" not in new
    assert old.count("expire finished") == 1 and new.count("expire finished") == 1
    # nothing lost, nothing written twice: every line of before is in the rotated file
    assert old.startswith(before)
    assert not set(new.splitlines()) & set(old.splitlines())


@pytest.mark.slow
def test_the_listener_can_host_the_schedule(tmp_path, netns):
    box = tmp_path / "sb"
    proc = start_listener(box, "[schedule]\nin_listener = true\n")
    log = box / "log" / "nightwarden.log"
    try:
        wait_for(log, "scheduler in the listener: 13 jobs")
        wait_for(log, "listening (connect mode)")
        # the schedule's first per-minute job runs as its own process within a minute
        wait_for(log, "login-failures exited 0", timeout=75)
    finally:
        assert stop(proc) == 0


def test_a_sandbox_uses_a_real_firewall_only_in_a_loopback_only_namespace(tmp_path, netns, monkeypatch):
    need("ip")
    from nightwarden.jobs import load_config

    monkeypatch.setenv("NIGHTWARDEN_SANDBOX_FIREWALL", "nftables")
    cfg = load_config(sandbox=str(tmp_path / "sb"))
    assert cfg.firewall_backend() == "nftables"  # this namespace has only lo
    subprocess.run(["ip", "link", "add", "nwv0", "type", "veth", "peer", "name", "nwv1"], check=True)
    assert cfg.firewall_backend() == "dryrun"  # an interface: it could be the host's
    monkeypatch.delenv("NIGHTWARDEN_SANDBOX_FIREWALL")
    subprocess.run(["ip", "link", "del", "nwv0"], check=True)
    assert cfg.firewall_backend() == "dryrun"
