"""csf.allow / csf.deny / csf.ignore / portsentry.ignore parsing."""

from __future__ import annotations

import ipaddress

from nightwarden.lib.lists import AddressList, append_entry, parse_filter, read_list_file, remove_entry

CSF_ALLOW = """\
###############################################################################
# csf.allow as shipped, with the user's lines
###############################################################################
1.2.3.4 # csf SSH installation/upgrade IP address - Mon Jan 1 10:00:00 2026
10.0.0.0/8
2001:db8::/32 # IPv6 network
tcp:in:d=3306:s=11.22.33.44
tcp|in|d=22|s=2001:db8:1::5
udp|in|d=53_55|s=192.0.2.0/24
999.1.1.1
10.0.0.1/8
tcp:in:d=99999:s=1.1.1.1
ssh.example.com
Include /nonexistent/extra.allow
"""


def load(tmp_path, text: str, name="csf.allow") -> AddressList:
    path = tmp_path / name
    path.write_text(text)
    result = AddressList("allow")
    read_list_file(path, "allow", result)
    return result


def test_csf_allow_good_lines_apply_and_bad_lines_name_file_and_line(tmp_path):
    lst = load(tmp_path, CSF_ALLOW)
    assert [str(e.network) for e in lst.whole] == ["1.2.3.4/32", "10.0.0.0/8", "2001:db8::/32"]
    assert lst.whole[0].comment.startswith("csf SSH installation")
    assert [str(e.filter) for e in lst.filters] == [
        "tcp|in|d=3306|s=11.22.33.44",
        "tcp|in|d=22|s=2001:db8:1::5",
        "udp|in|d=53_55|s=192.0.2.0/24",
    ]
    path = tmp_path / "csf.allow"
    assert lst.errors == [
        f"{path}:10: '999.1.1.1' is not a valid IP address or CIDR; line skipped",
        f"{path}:11: '10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?); line skipped",
        f"{path}:12: port out of range in '99999'; line skipped",
        f"{path}:13: 'ssh.example.com' is not a valid IP address or CIDR "
        "(host names are not supported: use addresses); line skipped",
    ]


def test_match_ignores_port_filters(tmp_path):
    lst = load(tmp_path, CSF_ALLOW)
    assert lst.match(ipaddress.ip_network("10.1.2.3")).line == 5
    assert lst.match(ipaddress.ip_network("11.22.33.44")) is None


def test_portsentry_ignore_format(tmp_path):
    lst = load(tmp_path, "127.0.0.1/32\n0.0.0.0\n192.168.2.0/24\n", "portsentry.ignore")
    assert [str(e.network) for e in lst.entries] == ["127.0.0.1/32", "0.0.0.0/32", "192.168.2.0/24"]
    assert lst.errors == []


def test_include_and_binary_garbage(tmp_path):
    extra = tmp_path / "extra.allow"
    extra.write_text("5.6.7.8\n")
    (tmp_path / "csf.allow").write_bytes(f"Include {extra}\n".encode() + b"\xff\xfe\n")
    lst = AddressList("allow")
    read_list_file(tmp_path / "csf.allow", "allow", lst)
    assert [str(e.network) for e in lst.entries] == ["5.6.7.8/32"]
    assert lst.errors == [f"{tmp_path}/csf.allow:2: not UTF-8 text; line skipped"]


def test_filter_errors():
    assert parse_filter("tcp:in:d=22")[1] == "advanced filter has no address (s=IP or d=IP)"
    assert parse_filter("tcp:in:s=1.2.3.4")[1] == "advanced filter has no port (d=PORT or s=PORT)"
    assert parse_filter("tcp:sideways:d=22:s=1.2.3.4")[1] == "unknown filter field 'sideways'"


def test_append_and_remove_keep_other_lines(tmp_path):
    path = tmp_path / "deny"
    path.write_text("# my notes\n192.0.2.1 # keep\n")
    append_entry(path, ipaddress.ip_network("198.51.100.0/24"), "added")
    assert path.read_text() == "# my notes\n192.0.2.1 # keep\n198.51.100.0/24 # added\n"
    assert remove_entry(path, ipaddress.ip_network("198.51.100.0/24")) == 1
    assert path.read_text() == "# my notes\n192.0.2.1 # keep\n"


def test_the_index_finds_exactly_what_a_linear_scan_finds():
    import random

    from nightwarden.lib.lists import ListEntry

    def span(n):
        return n.version, int(n.network_address), int(n.broadcast_address)

    rng = random.Random(7)
    nets = [
        ipaddress.ip_network((rng.getrandbits(32), rng.choice([8, 16, 24, 30, 32])), strict=False)
        for _ in range(1500)
    ]
    nets += [
        ipaddress.ip_network((rng.getrandbits(128), rng.choice([32, 48, 64, 128])), strict=False)
        for _ in range(500)
    ]
    spans = [span(n) for n in nets]
    lst = AddressList("allow", [ListEntry(n, "f", i) for i, n in enumerate(nets)])
    for _ in range(3000):
        v6 = rng.random() < 0.3
        query = ipaddress.ip_network(
            (rng.getrandbits(128 if v6 else 32), rng.choice([32, 64, 128] if v6 else [16, 24, 32])),
            strict=False,
        )
        version, low, high = span(query)
        linear = any(v == version and lo <= high and hi >= low for v, lo, hi in spans)
        found = lst.match(query)
        assert (found is not None) == linear, query
        assert found is None or found.network.overlaps(query)


def test_a_list_file_that_cannot_be_read_is_unreadable_not_empty(tmp_path):
    import os

    for name, make in (("dir", os.mkdir), ("fifo", os.mkfifo)):
        result = AddressList("allow")
        make(tmp_path / name)
        read_list_file(tmp_path / name, "allow", result)
        assert result.unreadable and str(tmp_path / name) in result.unreadable[0]
