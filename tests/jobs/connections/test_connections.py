"""Connection tracking (CT_LIMIT): real TCP connections from many 127.x sources inside a private
network namespace, counted from the kernel's socket table; the cron job and the listener's
thread block the address over the limit, the allow list wins; the tables' formats."""

from __future__ import annotations

import mailbox
import socket

import pytest

from helpers import ListenerProcess, listener_config, need, nft_set, run_cli, wait_for, write_config
from nightwarden.jobs.connections import count


class Holder:
    """A server whose connections stay open (the kernel completes them into the backlog), and
    clients from chosen source addresses."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1024)
        self.port = self.server.getsockname()[1]
        self.clients: list[socket.socket] = []

    def connect(self, source: str, n: int) -> None:
        for _ in range(n):
            c = socket.socket()
            c.bind((source, 0))
            c.connect(("127.0.0.1", self.port))
            self.clients.append(c)

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.server.close()


@pytest.fixture
def holder(netns):
    h = Holder()
    h.connect("127.9.0.1", 30)
    h.connect("127.9.0.2", 5)
    h.connect("127.9.0.3", 30)  # allowed
    yield h
    h.close()


def settings(tmp_path, port: int) -> str:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "allow").write_text("127.9.0.3\n")
    return f"""[connections]
limit = 20
interval = 1
ports = ["{port}"]

[mail]
transport = "mbox"
mbox = "{tmp_path}/mbox"
"""


def test_the_job_blocks_the_address_over_the_limit_and_not_the_allowed_one(tmp_path, holder):
    need("nft")
    cfg = write_config(tmp_path, 'backend = "nftables"\n' + settings(tmp_path, holder.port))
    run_cli("--config", str(cfg), "firewall", "start", check=0)
    dry = run_cli("--config", str(cfg), "connections", "--dry-run")
    assert "would block 127.9.0.1" in dry.stdout and "127.9.0.1" not in nft_set()
    done = run_cli("--config", str(cfg), "connections")
    assert done.returncode == 1, done.stderr
    assert "127.9.0.1: 30 connections, blocked" in done.stdout
    assert "127.9.0.3: 30 connections, not blocked" in done.stdout  # the allow list wins
    blocked = nft_set()
    assert "127.9.0.1" in blocked and "127.9.0.2" not in blocked and "127.9.0.3" not in blocked
    (mail,) = list(mailbox.mbox(tmp_path / "mbox"))
    assert "Excessive connections (2 addresses)" in mail["Subject"]
    again = run_cli("--config", str(cfg), "connections")
    assert "127.9.0.1" not in again.stdout  # blocked already


def test_the_listener_tracks_connections_and_the_job_leaves_it_alone(tmp_path, holder):
    need("nft")
    cfg = listener_config(tmp_path, settings(tmp_path, holder.port))
    run = ListenerProcess(cfg, tmp_path).start()
    try:
        assert wait_for(lambda: "127.9.0.1" in nft_set(), 5.0)
        assert "127.9.0.2" not in nft_set()
        out = run_cli("--config", str(cfg), "connections")
        assert out.returncode == 0 and "tracked by the listener" in out.stdout
    finally:
        run.stop()


def test_the_socket_and_conntrack_tables_by_state_and_port(tmp_path):
    tcp = tmp_path / "tcp"
    tcp.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   9: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 10 1\n"
        # this host's own connections out, to a database: not the database's count
        "   8: 0100007F:9C50 0A00000A:1538 01 00000000:00000000 00:00000000 00000000 0 0 14 1\n"
        "   7: 0100007F:9C51 0A00000A:1538 01 00000000:00000000 00:00000000 00000000 0 0 15 1\n"
        "   0: 0100007F:0050 0500A8C0:9C40 01 00000000:00000000 00:00000000 00000000 0 0 11 1\n"
        "   1: 0100007F:0050 0500A8C0:9C41 06 00000000:00000000 00:00000000 00000000 0 0 0 1\n"
        "   2: 0100007F:0016 0500A8C0:9C42 01 00000000:00000000 00:00000000 00000000 0 0 12 1\n"
        "   3: 0100007F:0050 0600A8C0:9C43 03 00000000:00000000 00:00000000 00000000 0 0 13 1\n"
    )

    class Cfg:
        ports = ["80"]
        states: list = []
        skip_time_wait = False
        conntrack = True

    assert count.from_sockets(Cfg, str(tmp_path)) == {"192.168.0.5": 2, "192.168.0.6": 1}
    Cfg.ports = []  # no ports given: connections to a port this host listens on (80)
    assert count.from_sockets(Cfg, str(tmp_path)) == {"192.168.0.5": 2, "192.168.0.6": 1}
    Cfg.ports = ["80"]
    Cfg.skip_time_wait = True
    assert count.from_sockets(Cfg, str(tmp_path)) == {"192.168.0.5": 1, "192.168.0.6": 1}
    Cfg.states = ["SYN_RECV"]
    assert count.from_sockets(Cfg, str(tmp_path)) == {"192.168.0.6": 1}
    ct = tmp_path / "nf_conntrack"
    ct.write_text(
        "ipv4     2 tcp      6 431999 ESTABLISHED src=198.51.100.7 dst=192.0.2.1 sport=40000 dport=80 "
        "src=192.0.2.1 dst=198.51.100.7 sport=80 dport=40000 [ASSURED] mark=0 use=1\n"
        "ipv6     10 tcp      6 431999 ESTABLISHED src=2001:0db8:0000:0000:0000:0000:0000:0007 "
        "dst=2001:0db8:0000:0000:0000:0000:0000:0001 sport=40000 dport=80 "
        "src=x dst=y sport=80 dport=1 use=1\n"
        "ipv4     2 udp      17 20 src=198.51.100.7 dst=192.0.2.1 sport=5353 dport=53 use=1\n"
        "ipv4     2 tcp      6 100 ESTABLISHED src=198.51.100.8 dst=192.0.2.1 sport=40001 dport=22 use=1\n"
    )
    Cfg.states, Cfg.skip_time_wait = [], False
    assert count.from_conntrack(Cfg, str(ct), frozenset()) == {"198.51.100.7": 1, "2001:db8::7": 1}
    assert count.from_conntrack(Cfg, str(ct), frozenset({"198.51.100.7"})) == {"2001:db8::7": 1}
    assert count.from_conntrack(Cfg, str(tmp_path / "missing"), frozenset()) == {}
