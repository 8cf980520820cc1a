"""The listener against real scans (nmap) and real kernel rules, in a private namespace.
Attackers are 127.x sources; the listener binds the bait ports of 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ListenerProcess, need, nft_set, wait_for, write_config
from nightwarden.lib.state import State

pytestmark = [pytest.mark.peer, pytest.mark.netns, pytest.mark.root]

BAIT_TCP = [1, 11, 15, 79, 111, 119, 143, 540, 635, 1080]
BAIT_UDP = [1, 7, 9, 69, 161, 162]


class Running(ListenerProcess):
    """The listener on the test's bait ports."""

    def __init__(self, tmp_path: Path, extra: str = "", mode: str = "connect"):
        cfg = write_config(
            tmp_path,
            f'backend = "nftables"\n\n[listener]\nmode = "{mode}"\n'
            f"tcp_ports = {BAIT_TCP}\nudp_ports = {BAIT_UDP}\n"
            f'bind4 = "127.0.0.1"\nipv6 = false\n' + extra,
        )
        super().__init__(cfg, tmp_path)

    def start(self) -> Running:
        return super().start("--no-mail")

    def events(self) -> list:
        return State(self.tmp / "state" / "state.db").events(kind="scan")


def blocked() -> set[str]:
    return nft_set("temp4")


def nmap(*args: str) -> None:
    subprocess.run(
        ["nmap", "-n", "-Pn", "-e", "lo", "--max-retries", "0", "--host-timeout", "20s", *args, "127.0.0.1"],
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def listener(netns, tmp_path):
    need("nft", "nmap")
    made = []

    def make(extra: str = "", mode: str = "connect") -> Running:
        run = Running(tmp_path, extra, mode)
        made.append(run)
        return run.start()

    yield make
    for run in made:
        if run.proc and run.proc.poll() is None:
            run.proc.kill()


def test_nmap_connect_scan_is_blocked_and_recorded(listener, tmp_path):
    run = listener()
    nmap("-sT", "-S", "127.0.0.5", "-p", ",".join(map(str, BAIT_TCP)))
    assert wait_for(lambda: "127.0.0.5" in blocked())
    assert wait_for(lambda: any(e["address"] == "127.0.0.5" for e in run.events()))
    kinds = {json.loads(e["detail"])["type"] for e in run.events() if e["address"] == "127.0.0.5"}
    assert kinds == {"connect"}
    history = (tmp_path / "state" / "portsentry.history").read_text()
    assert " Host: 127.0.0.5/127.0.0.5 Port: " in history and history.rstrip().endswith("TCP Blocked")
    assert run.stop() < 2.0


def test_nmap_udp_scan_is_blocked(listener):
    run = listener()
    nmap("-sU", "-S", "127.0.0.6", "-p", ",".join(map(str, BAIT_UDP)))
    assert wait_for(lambda: "127.0.0.6" in blocked())
    assert {json.loads(e["detail"])["type"] for e in run.events()} == {"UDP"}


def test_ignored_source_is_never_blocked(listener, tmp_path):
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "ignore").write_text("127.0.0.9 # our scanner\n")
    run = listener()
    nmap("-sT", "-S", "127.0.0.9", "-p", ",".join(map(str, BAIT_TCP)))
    nmap("-sT", "-S", "127.0.0.10", "-p", "1")
    assert wait_for(lambda: "127.0.0.10" in blocked())
    assert "127.0.0.9" not in blocked()
    assert all(e["address"] != "127.0.0.9" for e in run.events())


@pytest.mark.parametrize("flag, kind", [("-sS", "SYN"), ("-sF", "FIN"), ("-sN", "NULL"), ("-sX", "XMAS")])
def test_advanced_mode_names_the_scan_type(listener, flag, kind):
    run = listener(mode="advanced")
    nmap(flag, "-S", "127.0.0.20", "-p", "20-40")
    assert wait_for(lambda: "127.0.0.20" in blocked())
    assert wait_for(lambda: run.events())
    assert {json.loads(e["detail"])["type"] for e in run.events()} == {kind}


def test_one_alert_line_per_source_and_port_range(listener):
    run = listener(mode="advanced")
    nmap("-sS", "-S", "127.0.0.21", "-p", "1-200")
    assert wait_for(lambda: "attackalert" in run.log(), 5)
    time.sleep(1.5)
    lines = [line for line in run.log().splitlines() if "attackalert" in line]
    assert len(lines) == 1, lines
    assert "SYN/Normal scan from host: 127.0.0.21/127.0.0.21 to TCP port: " in lines[0]


def test_burst_of_a_thousand_sources_all_detected_firewall_under_cap(listener):
    run = listener("\n[blocks]\ntemp_limit = 400\nperm_block_count = 0\n")
    socks = []
    start = time.monotonic()
    for i in range(1000):
        s = socket.socket()
        s.setblocking(False)
        s.bind((f"127.3.{i // 250}.{i % 250 + 1}", 0))
        s.connect_ex(("127.0.0.1", BAIT_TCP[i % len(BAIT_TCP)]))
        socks.append(s)
    took = time.monotonic() - start
    assert took < 1.0, f"the burst took {took:.2f} s"
    assert wait_for(lambda: len({e["address"] for e in run.events()}) == 1000, 15), len(
        {e["address"] for e in run.events()}
    )
    for s in socks:
        s.close()
    assert wait_for(lambda: len(blocked()) == 400, 10) and len(blocked()) <= 400
    assert "rotated out" in run.log()


def test_sighup_reloads_the_ignore_list_and_sigterm_is_quick(listener, tmp_path):
    run = listener()
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "ignore").write_text("127.0.0.30\n")
    run.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded" in run.log())
    nmap("-sT", "-S", "127.0.0.30", "-p", "1,11")
    nmap("-sT", "-S", "127.0.0.31", "-p", "1")
    assert wait_for(lambda: "127.0.0.31" in blocked())
    assert "127.0.0.30" not in blocked()
    assert run.stop() < 2.0


def test_blocks_survive_a_restart_and_a_lost_table(listener, tmp_path):
    run = listener()
    nmap("-sT", "-S", "127.0.0.40", "-p", "1")
    assert wait_for(lambda: "127.0.0.40" in blocked())
    run.stop()
    assert "127.0.0.40" in blocked(), "stopping the listener keeps the blocks"
    subprocess.run(["nft", "delete", "table", "inet", "nwtest"], check=True)  # a reboot
    run.notify.close()
    os.unlink(run.notify_path)
    again = listener()
    assert "127.0.0.40" in blocked(), "the restarted listener put the block back"
    assert State(tmp_path / "state" / "state.db").active_block("127.0.0.40") is not None
    again.stop()


def _connect(source: str, port: int) -> bool:
    """A connection from `source` to a bait port: True when it was answered."""
    with socket.socket() as s:
        s.settimeout(2)
        s.bind((source, 0))
        try:
            s.connect(("127.0.0.1", port))
            return True
        except (TimeoutError, ConnectionRefusedError):
            return False


def test_sighup_puts_new_ports_ttl_trigger_and_allow_list_in_force(listener, tmp_path):
    run = listener()
    assert _connect("127.0.0.49", 1) and wait_for(lambda: "127.0.0.49" in blocked())
    assert not _connect("127.0.0.50", 2000), "2000 is not a bait port yet"
    write_config(
        tmp_path,
        'backend = "nftables"\n\n[listener]\nmode = "connect"\n'
        'tcp_ports = [11, 2000]\nudp_ports = [7]\nbind4 = "127.0.0.1"\n'
        "ipv6 = false\nscan_trigger = 1\nblock_ttl = 600\n",
    )
    (tmp_path / "etc" / "allow").write_text("127.0.0.51 # the office\n")
    run.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded" in run.log())
    assert "ttl 600 s, trigger 1" in run.log()
    # the port list: 1 is closed, 2000 is bait now
    assert not _connect("127.0.0.50", 1)
    assert _connect("127.0.0.52", 2000)
    # the trigger: one probe more than scan_trigger is needed
    time.sleep(0.3)
    assert "127.0.0.52" not in blocked()
    assert _connect("127.0.0.52", 11)
    assert wait_for(lambda: "127.0.0.52" in blocked())
    # the TTL, in state and in the kernel
    state = State(tmp_path / "state" / "state.db")
    assert wait_for(lambda: state.active_block("127.0.0.52") is not None)
    row = state.active_block("127.0.0.52")
    assert 590 <= row.expires - row.created <= 600
    kernel = subprocess.run(
        ["nft", "-j", "list", "set", "inet", "nwtest", "temp4"], capture_output=True, text=True, check=True
    ).stdout
    timeouts = [
        e["elem"]["timeout"]
        for e in json.loads(kernel)["nftables"][1]["set"]["elem"]
        if isinstance(e, dict) and e["elem"]["val"] == "127.0.0.52"
    ]
    assert timeouts == [600]
    # the allow list
    assert _connect("127.0.0.51", 11) and _connect("127.0.0.51", 2000)
    time.sleep(0.3)
    assert "127.0.0.51" not in blocked()
    assert run.stop() < 2.0


def test_a_bad_configuration_on_sighup_changes_nothing(listener, tmp_path):
    run = listener()
    run.cfg.write_text(run.cfg.read_text() + "\n[listener]\nblock_ttl = 'soon'\n")
    run.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in run.log())
    assert _connect("127.0.0.60", 1) and wait_for(lambda: "127.0.0.60" in blocked())
    assert run.stop() < 2.0


def test_an_unreadable_ignore_list_makes_the_listener_refuse_to_block_loudly(listener, tmp_path):
    (tmp_path / "etc").mkdir(exist_ok=True)
    os.mkfifo(tmp_path / "etc" / "ignore")
    run = listener()
    assert _connect("127.0.0.70", 1)
    assert wait_for(lambda: "refusing to block 127.0.0.70" in run.log())
    time.sleep(0.3)
    assert "127.0.0.70" not in blocked() and run.proc.poll() is None
    (tmp_path / "etc" / "ignore").unlink()
    (tmp_path / "etc" / "ignore").write_text("")
    run.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded" in run.log())
    assert _connect("127.0.0.70", 11) and wait_for(lambda: "127.0.0.70" in blocked())
    assert run.stop() < 2.0


@pytest.mark.slow
def test_a_source_over_the_block_cap_is_blocked_once_the_cap_makes_room(listener):
    run = listener("max_blocks_per_minute = 2\n")
    for i in (81, 82, 83):
        assert _connect(f"127.0.0.{i}", 1)
    assert wait_for(lambda: {"127.0.0.81", "127.0.0.82"} <= blocked())
    assert "127.0.0.83" not in blocked()
    assert wait_for(lambda: "127.0.0.83/127.0.0.83 to TCP port: 1 (not blocked: cap)" in run.log(), 3)
    assert wait_for(lambda: "127.0.0.83" in blocked(), 70), "never blocked once the cap made room"
    assert run.stop() < 2.0
