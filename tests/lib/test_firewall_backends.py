"""Each firewall backend against the real kernel, inside a private network namespace.

The attackers are 127.x.y.z source addresses; every 127.x address is local in the namespace.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time

import pytest

from helpers import Server, connects, real_backend
from nightwarden.lib.firewall import Entry, Filter
from nightwarden.lib.lists import parse_filter

BACKENDS = ["nftables", "ipset", "iptc"]


def net(text):
    return ipaddress.ip_network(text)


def sh(*argv) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def kernel_text(name: str) -> str:
    """What a sysadmin's own tools show for this backend."""
    if name == "nftables":
        return sh("nft", "list", "ruleset")
    if name == "ipset":
        return sh("ipset", "list") + sh("iptables-save") + sh("ip6tables-save")
    return sh("iptables-legacy-save") + sh("ip6tables-legacy-save")


def user_rule(name: str, add: bool = True) -> None:
    """A rule of the user's own in INPUT (or their own nft table)."""
    if name == "nftables":
        if add:
            sh("nft", "add", "table", "inet", "mine")
            sh(
                "nft",
                "add",
                "chain",
                "inet",
                "mine",
                "input",
                "{ type filter hook input priority 0; policy accept; }",
            )
            sh("nft", "add", "rule", "inet", "mine", "input", "ip", "saddr", "10.9.9.9", "drop")
        return
    tool = "iptables" if name == "ipset" else "iptables-legacy"
    sh(tool, "-A", "INPUT", "-s", "10.9.9.9", "-j", "DROP")


def user_rule_present(name: str) -> bool:
    if name == "nftables":
        return "10.9.9.9" in sh("nft", "list", "table", "inet", "mine")
    tool = "iptables-save" if name == "ipset" else "iptables-legacy-save"
    return "-A INPUT -s 10.9.9.9/32 -j DROP" in sh(tool)


@pytest.fixture(params=BACKENDS)
def backend(request, netns):
    return request.param, real_backend(request.param)


def test_block_drops_and_unblock_restores_a_real_connection(backend):
    name, fw = backend
    fw.ensure()
    server = Server()
    try:
        assert connects(server, "127.0.0.5")
        fw.block([Entry(net("127.0.0.5"), "temp", 600)])
        assert "127.0.0.5" in kernel_text(name)
        assert not connects(server, "127.0.0.5"), "blocked source still connects"
        assert connects(server, "127.0.0.6"), "another source must still connect"
        fw.unblock([Entry(net("127.0.0.5"), "temp")])
        assert connects(server, "127.0.0.5")
        assert "127.0.0.5" not in kernel_text(name)
    finally:
        server.close()


def test_setup_twice_adds_no_second_jump_and_block_twice_is_one_entry(backend):
    name, fw = backend
    fw.ensure()
    fw.ensure()
    assert fw.is_ready()
    text = kernel_text(name)
    if name == "nftables":
        assert text.count("table inet nwtest") == 1
        assert text.count("hook input") == 1
    else:
        assert text.count("-A INPUT -j NWTEST") + text.count("-A INPUT -m comment") == 2  # v4 + v6
        assert text.count(":NWTEST ") == 2
    fw.block([Entry(net("127.0.0.7"), "temp", 300)])
    fw.block([Entry(net("127.0.0.7"), "temp", 900)])
    entries = [e for e in fw.list() if e.network == net("127.0.0.7")]
    assert len(entries) == 1
    if fw.kernel_timeouts:
        assert entries[0].expires_in > 800, "blocking again must refresh the timeout"


def test_user_rules_survive_everything_we_do(backend):
    name, fw = backend
    user_rule(name)
    fw.ensure()
    fw.block([Entry(net("127.0.0.8"), "temp"), Entry(net("10.20.0.0/16"), "perm")])
    fw.purge("temp")
    fw.ensure()
    assert user_rule_present(name)
    fw.teardown()
    assert user_rule_present(name)
    assert "nwtest" not in kernel_text(name).lower()


def test_batch_of_a_thousand_and_purge_keeps_permanent(backend):
    name, fw = backend
    fw.ensure()
    many = [Entry(net(f"10.1.{i // 250}.{i % 250 + 1}"), "temp", 3600) for i in range(1000)]
    fw.block(
        many
        + [
            Entry(net("192.0.2.0/24"), "perm"),
            Entry(net("2001:db8::/32"), "perm"),
            Entry(net("2001:db8:1::1"), "temp"),
        ]
    )
    listed = fw.list()
    assert sum(1 for e in listed if e.kind == "temp") == 1001
    assert {e.network for e in listed if e.kind == "perm"} == {net("192.0.2.0/24"), net("2001:db8::/32")}
    assert fw.purge("temp") == 1001
    listed = fw.list()
    assert [e.kind for e in listed] == ["perm", "perm"]


def test_allow_wins_over_a_block(backend):
    name, fw = backend
    fw.ensure()
    server = Server()
    try:
        fw.block([Entry(net("127.0.9.0/24"), "perm"), Entry(net("127.0.9.9"), "allow")])
        assert not connects(server, "127.0.9.8")
        assert connects(server, "127.0.9.9"), "allowed address must get through a network block"
    finally:
        server.close()


def test_advanced_filter_allows_one_port_only(backend):
    name, fw = backend
    server, other = Server(), Server()
    try:
        rule, err = parse_filter(f"tcp:in:d={server.port}:s=127.0.3.3")
        assert err is None
        fw.ensure([Filter(rule, "allow")])
        fw.block([Entry(net("127.0.3.3"), "temp")])
        assert connects(server, "127.0.3.3"), "the filter's port stays open to that source"
        assert not connects(other, "127.0.3.3"), "other ports stay blocked"
    finally:
        server.close()
        other.close()


@pytest.mark.parametrize("name", ["nftables", "ipset"])
def test_temporary_block_expires_in_the_kernel(name, netns):
    fw = real_backend(name)
    fw.ensure()
    server = Server()
    try:
        fw.block([Entry(net("127.0.0.9"), "temp", 1)])
        assert not connects(server, "127.0.0.9", timeout=0.3)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(e.network == net("127.0.0.9") for e in fw.list()):
            time.sleep(0.2)
        assert not any(e.network == net("127.0.0.9") for e in fw.list())
        assert connects(server, "127.0.0.9")
    finally:
        server.close()


@pytest.mark.parametrize("name", BACKENDS)
def test_ipv6_block(name, netns):
    fw = real_backend(name)
    subprocess.run(["ip", "-6", "addr", "add", "fd00::5/128", "dev", "lo", "nodad"], check=True)
    fw.ensure()
    server = Server(socket.AF_INET6, "::1")
    try:
        assert connects(server, "fd00::5")
        fw.block([Entry(net("fd00::5"), "temp")])
        assert not connects(server, "fd00::5")
        fw.unblock([Entry(net("fd00::5"), "temp")])
        assert connects(server, "fd00::5")
    finally:
        server.close()


def test_the_fast_path_adds_entries_by_netlink_with_their_timeout_and_falls_back(netns):
    """nftables' fast path (one netlink message per family) puts entries the kernel enforces,
    with the TTL; a set the kernel does not have is refused there and libnftables is used."""
    from nightwarden.lib.firewall import nfnetlink

    fw = real_backend("nftables")
    fw.ensure()
    server = Server()
    try:
        fw.fast_block([net("127.0.5.1"), net("127.0.5.2"), net("fd00::7")], 600)
        assert not connects(server, "127.0.5.1", timeout=0.3)
        listed = subprocess.run(
            ["nft", "list", "set", "inet", "nwtest", "temp4"], capture_output=True, text=True
        )
        assert "127.0.5.2 timeout 10m" in listed.stdout
        assert (
            "fd00::7"
            in subprocess.run(
                ["nft", "list", "set", "inet", "nwtest", "temp6"], capture_output=True, text=True
            ).stdout
        )
        fw.fast_block([net("127.0.5.1")], 600)  # again: no error, still one entry
        assert listed.stdout.count("127.0.5.1 ") == 1
        with pytest.raises(OSError):
            nfnetlink.add_elements("inet", "nwtest", "nosuchset", [bytes(4)], None)
        with pytest.raises(OSError):  # an IPv6 key for an IPv4 set
            nfnetlink.add_elements("inet", "nwtest", "temp4", [bytes(16)], None)
    finally:
        server.close()
