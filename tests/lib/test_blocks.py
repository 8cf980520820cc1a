"""Block management end to end: the CLI, the state database and real nftables rules."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import Server, connects, load_config, need, run_cli, write_config
from nightwarden.lib.blocks import BlockManager
from nightwarden.lib.errors import EXIT_DATAERR, EXIT_REFUSED, DataError, FirewallError, RefusedError
from nightwarden.lib.firewall.nftables import NftablesBackend
from nightwarden.lib.state import State


@pytest.fixture
def nft_config(tmp_path, netns):
    need("nft")
    return write_config(tmp_path, 'backend = "nftables"\n')


def nft_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def test_cli_block_unblock_with_a_real_connection(nft_config):
    server = Server()
    try:
        run_cli(
            "--config",
            str(nft_config),
            "block",
            "127.0.0.5",
            "--ttl",
            "10m",
            "--reason",
            "test brute force",
            check=0,
        )
        assert "127.0.0.5" in nft_ruleset()
        assert not connects(server, "127.0.0.5")
        done = run_cli("--config", str(nft_config), "blocks", "--json", check=0)
        rows = json.loads(done.stdout)
        assert [(r["address"], r["kind"], r["reason"]) for r in rows] == [
            ("127.0.0.5", "temporary", "test brute force")
        ]
        run_cli("--config", str(nft_config), "unblock", "127.0.0.5", check=0)
        assert connects(server, "127.0.0.5")
        assert "127.0.0.5" not in nft_ruleset()
    finally:
        server.close()


def test_cli_refuses_bad_and_allowed_addresses_and_blocks_the_rest(nft_config):
    cfg = str(nft_config)
    run_cli("--config", cfg, "allow", "127.0.4.4", "--comment", "office", check=0)
    before = nft_ruleset()
    done = run_cli("--config", cfg, "block", "127.0.0.6", "not-an-ip")
    assert done.returncode == EXIT_DATAERR
    assert done.stderr == "nightwarden: 'not-an-ip' is not a valid IP address or CIDR\n"
    assert nft_ruleset() == before, "a malformed address stops the whole command"
    done = run_cli("--config", cfg, "block", "127.0.0.6", "127.0.4.4")  # what may be, is blocked
    assert done.returncode == EXIT_REFUSED
    assert "127.0.4.4: it is on the allow list" in done.stderr and ":1)" in done.stderr
    assert "127.0.0.6" in nft_ruleset() and "127.0.4.4" not in nft_ruleset().split("allow4")[0]
    assert [
        b["address"]
        for b in json.loads(run_cli("--config", cfg, "blocks", "--json", check=0).stdout)
        if b["kind"] == "temporary"
    ] == ["127.0.0.6"]


def test_loopback_and_own_addresses_are_protected_by_default(tmp_path, netns):
    need("nft", "ip")
    subprocess.run(["ip", "addr", "add", "10.77.0.1/24", "dev", "lo"], check=True)
    cfg = write_config(tmp_path, 'backend = "nftables"\nprotect_loopback = true\n')
    # write_config lets tests block loopback; this test wants the default protection back
    cfg.write_text(cfg.read_text().replace("protect_loopback = false\n", ""))
    done = run_cli("--config", str(cfg), "block", "127.0.0.5")
    assert done.returncode == EXIT_REFUSED and "loopback" in done.stderr
    done = run_cli("--config", str(cfg), "block", "10.77.0.0/24")
    assert done.returncode == EXIT_REFUSED and "10.77.0.1, an address of this host" in done.stderr
    run_cli("--config", str(cfg), "block", "10.77.1.0/24", check=0)


def test_deny_is_permanent_and_survives_a_restart_of_the_firewall(nft_config):
    cfg = str(nft_config)
    server = Server()
    try:
        run_cli("--config", cfg, "deny", "127.0.8.0/24", "--comment", "hostile", check=0)
        run_cli("--config", cfg, "block", "127.0.0.9", "--ttl", "1h", check=0)
        assert "127.0.8.0/24 # hostile" in (nft_config.parent / "deny").read_text()
        # a reboot: the kernel forgets everything, state and lists remember
        run_cli("--config", cfg, "firewall", "stop", check=0)
        assert "nwtest" not in nft_ruleset()
        assert connects(server, "127.0.8.1") and connects(server, "127.0.0.9")
        done = run_cli("--config", cfg, "firewall", "start", check=0)
        assert "2 entries loaded" in done.stdout
        assert not connects(server, "127.0.8.1") and not connects(server, "127.0.0.9")
        status = run_cli("--config", cfg, "firewall", "status", check=0).stdout
        assert "1 temporary, 1 permanent" in status
        # the remaining time came back, not a fresh hour and not forever
        elem = [e for e in NftablesBackend(prefix="nwtest").list() if e.kind == "temp"][0]
        assert 3500 < elem.expires_in <= 3600
    finally:
        server.close()


def test_unblock_of_a_foreign_deny_list_entry_is_refused(tmp_path, netns):
    need("nft")
    csf_deny = tmp_path / "csf.deny"
    csf_deny.write_text("127.0.6.6 # lfd: manual\n")
    cfg = write_config(tmp_path, 'backend = "nftables"\n')
    cfg.write_text(cfg.read_text().replace("extra_deny_files = []", f'extra_deny_files = ["{csf_deny}"]'))
    run_cli("--config", str(cfg), "firewall", "start", check=0)
    done = run_cli("--config", str(cfg), "unblock", "127.0.6.6")
    assert done.returncode == EXIT_REFUSED
    assert f"{csf_deny}:1" in done.stderr
    assert "127.0.6.6" in nft_ruleset()


def test_grep_tells_everything_about_an_address(nft_config):
    cfg = str(nft_config)
    run_cli("--config", cfg, "block", "127.0.0.12", "--reason", "scan", check=0)
    (nft_config.parent / "ignore").write_text("127.0.0.0/24 # our monitoring\n")
    out = run_cli("--config", cfg, "grep", "127.0.0.12", check=0).stdout
    assert "ignore list: 127.0.0.0/24" in out and "our monitoring" in out
    assert "can be blocked: no, it is on the ignore list" in out
    assert "block: temporary by cli" in out and "reason: scan" in out
    assert "firewall: in the temp set as 127.0.0.12" in out


def test_manager_batch_skips_refused_when_not_strict(nft_config):
    cfg = load_config(nft_config)
    (nft_config.parent / "ignore").write_text("127.0.1.0/24\n")
    state = State(cfg.db_path)
    mgr = BlockManager(cfg, state, NftablesBackend(prefix="nwtest"))
    mgr.ensure_ready()
    result = mgr.block(["127.0.1.5", "127.0.2.5", "127.0.2.6"], ttl=60, source="listener", strict=False)
    assert [str(n) for n in result.added] == ["127.0.2.5/32", "127.0.2.6/32"]
    assert result.refused[0][0] == "127.0.1.5"
    with pytest.raises(RefusedError):
        mgr.block(["127.0.1.5"])
    with pytest.raises(DataError):
        mgr.block(["127.0.2.7", "300.1.1.1"])
    assert state.active_block("127.0.2.7") is None
    kernel = {str(e.network) for e in mgr.backend.list()}
    assert kernel == {"127.0.2.5/32", "127.0.2.6/32"}


def test_kernel_refusal_rolls_back_state(nft_config):
    cfg = load_config(nft_config)
    state = State(cfg.db_path)
    fw = NftablesBackend(prefix="nwtest")
    mgr = BlockManager(cfg, state, fw)
    mgr.ensure_ready()
    subprocess.run(["nft", "delete", "table", "inet", "nwtest"], check=True)
    with pytest.raises(FirewallError):
        mgr.block(["127.0.2.9"])
    assert state.active_block("127.0.2.9") is None


def test_network_block_supersedes_the_networks_inside_it(nft_config):
    cfg = str(nft_config)
    run_cli("--config", cfg, "block", "127.5.1.0/24", check=0)
    run_cli("--config", cfg, "block", "127.5.0.0/16", check=0)
    done = run_cli("--config", cfg, "block", "127.5.2.0/24")
    assert done.returncode == EXIT_REFUSED and "already covered" in done.stderr
    rows = json.loads(run_cli("--config", cfg, "blocks", "--json", check=0).stdout)
    assert [r["address"] for r in rows] == ["127.5.0.0/16"]


def test_expiry_in_state_for_a_backend_without_kernel_timeouts(tmp_path, netns):
    need("iptables-legacy")
    from nightwarden.lib.firewall.iptc import IptcBackend

    cfg = load_config(write_config(tmp_path))
    state = State(cfg.db_path)
    mgr = BlockManager(cfg, state, IptcBackend(prefix="nwtest"))
    mgr.ensure_ready()
    mgr.block(["127.0.3.1"], ttl=60)
    import time

    assert mgr.expire(now=time.time() + 120) == 1
    assert mgr.backend.list() == []
    assert state.block_history("127.0.3.1")[0].removed_reason == "expired"


def test_an_unreadable_allow_list_stops_every_block_fail_closed(tmp_path):
    import os

    box = tmp_path / "sb"
    (box / "etc").mkdir(parents=True)
    os.mkfifo(box / "etc" / "nightwarden.allow")  # neither readable nor empty: unknown
    done = run_cli("--sandbox", str(box), "block", "192.0.2.5")
    assert done.returncode == 66, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and "nightwarden.allow" in done.stderr and "allow list" in done.stderr
    assert "192.0.2.5" not in run_cli("--sandbox", str(box), "blocks", check=0).stdout
    (box / "etc" / "nightwarden.allow").unlink()
    run_cli("--sandbox", str(box), "block", "192.0.2.5", check=0)


@pytest.mark.parametrize("ttl", ["-5", "99999999999", "1.5h", "soon"])
def test_a_bad_ttl_is_a_usage_error_before_anything(tmp_path, ttl):
    box = tmp_path / "sb"
    done = run_cli("--sandbox", str(box), "block", "203.0.113.5", "--ttl", ttl)
    assert done.returncode == 64, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and "TTL" in done.stderr
    assert "203.0.113.5" not in run_cli("--sandbox", str(box), "blocks", check=0).stdout


def test_a_ttl_past_what_a_backend_holds_is_refused_in_the_config(tmp_path):
    path = write_config(tmp_path, "default_ttl = 99999999999999999999\n")
    done = run_cli("--config", str(path), "blocks")
    assert done.returncode == 78 and "firewall.default_ttl" in done.stderr


def test_block_of_several_blocks_what_may_be_and_says_each_refusal(tmp_path):
    box = tmp_path / "sb"
    done = run_cli("--sandbox", str(box), "block", "127.0.0.1", "203.0.113.6", "::1")
    assert done.returncode == 79
    assert "refusing to block 127.0.0.1" in done.stderr and "refusing to block ::1" in done.stderr
    assert "blocked 203.0.113.6" in done.stdout
    assert "203.0.113.6" in run_cli("--sandbox", str(box), "blocks", check=0).stdout
    done = run_cli("--sandbox", str(box), "block", "203.0.113.7", "not-an-address")
    assert done.returncode == 65 and "203.0.113.7" not in run_cli("--sandbox", str(box), "blocks").stdout


@pytest.mark.slow
def test_firewall_stop_stays_stopped_until_start(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "block", "203.0.113.8", check=0)
    run_cli("--sandbox", str(box), "firewall", "stop", check=0)
    for job in ("expire", "purge", "login-failures"):
        run_cli("--sandbox", str(box), job, "--no-mail" if job != "expire" else "-q")
    status = run_cli("--sandbox", str(box), "firewall", "status", check=0).stdout
    assert "firewall: OFF: stopped at" in status and "base rules: missing" in status
    assert "entries: 0 temporary" in status
    done = run_cli("--sandbox", str(box), "block", "203.0.113.9")
    assert done.returncode == 69 and "firewall is off" in done.stderr
    run_cli("--sandbox", str(box), "firewall", "start", check=0)
    status = run_cli("--sandbox", str(box), "firewall", "status", check=0).stdout
    assert "firewall: on" in status and "base rules: in place" in status
    run_cli("--sandbox", str(box), "block", "203.0.113.9", check=0)


def test_lists_lose_an_address_with_remove_keeping_every_other_line(nft_config, tmp_path):
    """allow/deny/ignore --remove (csf -ar, -dr): the entry leaves the file, written atomically
    with the comments and other lines as they were, and leaves the kernel."""
    cfg = str(nft_config)
    etc = tmp_path / "etc"
    (etc / "allow").write_text("# office and monitoring\n127.0.7.1 # office\n127.0.7.2 # monitor\n")
    (etc / "deny").write_text("# hostile\n127.0.8.0/24 # scanners\n127.0.9.9\n")
    run_cli("--config", cfg, "firewall", "start", check=0)
    assert "127.0.7.1" in nft_ruleset() and "127.0.8.0/24" in nft_ruleset()
    server = Server()
    try:
        assert connects(server, "127.0.8.5") is False
        run_cli("--config", cfg, "deny", "--remove", "127.0.8.0/24", check=0)
        assert (etc / "deny").read_text() == "# hostile\n127.0.9.9\n"
        assert "127.0.8.0/24" not in nft_ruleset() and connects(server, "127.0.8.5")
    finally:
        server.close()
    done = run_cli("--config", cfg, "unallow", "127.0.7.1", check=0)
    assert "taken off the allow list" in done.stdout
    assert (etc / "allow").read_text() == "# office and monitoring\n127.0.7.2 # monitor\n"
    assert "127.0.7.1" not in nft_ruleset() and "127.0.7.2" in nft_ruleset()
    run_cli("--config", cfg, "block", "127.0.7.1", check=0)  # no longer protected
    run_cli("--config", cfg, "ignore", "127.0.10.1", "--comment", "backup host", check=0)
    run_cli("--config", cfg, "ignore", "127.0.10.2", check=0)
    assert "127.0.10.1 # backup host\n" in (etc / "ignore").read_text()
    run_cli("--config", cfg, "ignore", "--remove", "127.0.10.1", check=0)
    assert "127.0.10.1" not in (etc / "ignore").read_text() and "127.0.10.2" in (etc / "ignore").read_text()
    done = run_cli("--config", cfg, "unignore", "127.0.10.1", check=0)
    assert "not on the ignore list" in done.stdout
    dry = run_cli("--config", cfg, "allow", "--remove", "127.0.7.2", "--dry-run", check=0)
    assert "dry run: would take 127.0.7.2 off" in dry.stdout and "127.0.7.2" in (etc / "allow").read_text()


def test_an_address_allowed_elsewhere_is_not_taken_off_and_unblock_says_where(tmp_path, netns):
    need("nft")
    csf_allow = tmp_path / "csf.allow"
    csf_allow.write_text("127.0.11.1 # csf: office\n")
    cfg = write_config(tmp_path, 'backend = "nftables"\n')
    cfg.write_text(cfg.read_text().replace("extra_allow_files = []", f'extra_allow_files = ["{csf_allow}"]'))
    done = run_cli("--config", str(cfg), "allow", "--remove", "127.0.11.1")
    assert done.returncode == EXIT_REFUSED and f"{csf_allow}:1" in done.stderr
    assert csf_allow.read_text() == "127.0.11.1 # csf: office\n"
    done = run_cli("--config", str(cfg), "unblock", "127.0.11.1", check=0)
    assert f"was not blocked (it is on the allow list in {csf_allow}:1" in done.stdout


def test_blocks_filters_sorts_and_gives_json_times_as_iso_and_seconds(nft_config):
    cfg = str(nft_config)
    run_cli("--config", cfg, "block", "127.0.12.1", "--ttl", "6h", "--reason", "ssh", check=0)
    run_cli("--config", cfg, "block", "127.0.12.2", "--ttl", "10m", check=0)
    run_cli("--config", cfg, "block", "127.0.13.1", "--permanent", check=0)
    run_cli("--config", cfg, "deny", "127.0.14.0/24", check=0)
    db = State(load_config(nft_config).db_path)
    db.db.execute("UPDATE blocks SET source = 'login-failures' WHERE address = '127.0.12.1'")
    db.db.commit()
    db.close()

    def rows(*args):
        return json.loads(run_cli("--config", cfg, "blocks", "--json", *args, check=0).stdout)

    assert [r["address"] for r in rows("--source", "login-failures")] == ["127.0.12.1"]
    assert {r["address"] for r in rows("--permanent")} == {"127.0.13.1", "127.0.14.0/24"}
    assert [r["address"] for r in rows("--temporary", "--sort", "expires")] == ["127.0.12.2", "127.0.12.1"]
    assert {r["address"] for r in rows("--address", "127.0.12.0/24")} == {"127.0.12.1", "127.0.12.2"}
    (six,) = rows("--address", "127.0.12.1")
    assert six["expires"].endswith("Z") and six["created"].endswith("Z")
    assert 21500 < six["expires_in"] <= 21600 and six["active"] is True
    out = run_cli("--config", cfg, "block", "127.0.15.1", "--ttl", "6h", check=0).stdout
    assert "for 6h" in out
