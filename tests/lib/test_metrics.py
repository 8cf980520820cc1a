"""Metrics in node_exporter's textfile format, read back with prometheus_client's own parser."""

from __future__ import annotations

import stat

import pytest

from helpers import run_cli

pytest.importorskip("prometheus_client")


def families(path) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(path.read_text()):
        for sample in fam.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_every_job_run_rewrites_the_textfile_with_runs_blocks_and_events(tmp_path):
    box = tmp_path / "sb"
    (box / "etc").mkdir(parents=True)
    (box / "etc" / "nightwarden.toml").write_text('[metrics]\ntextfile_dir = "/var/lib/node-exporter"\n')
    run_cli("--sandbox", str(box), "firewall", "start", check=0)
    run_cli("--sandbox", str(box), "block", "192.0.2.5", "--ttl", "1h", check=0)
    run_cli("--sandbox", str(box), "block", "192.0.2.6", "--permanent", check=0)
    run_cli("--sandbox", str(box), "expire", check=0)
    prom = box / "var" / "lib" / "node-exporter" / "nightwarden.prom"
    m = families(prom)
    assert m[("nightwarden_job_last_exit_code", (("job", "expire"),))] == 0
    assert m[("nightwarden_job_last_duration_seconds", (("job", "expire"),))] >= 0
    assert m[("nightwarden_blocks_active", (("kind", "temporary"), ("source", "cli")))] == 1
    assert m[("nightwarden_blocks_active", (("kind", "permanent"), ("source", "cli")))] == 1
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644 and stat.S_IMODE(prom.parent.stat().st_mode) == 0o755
    (box / "tmp").mkdir(exist_ok=True)
    run_cli("--sandbox", str(box), "quarantine", "--no-mail", check=0)
    m = families(prom)
    assert ("nightwarden_job_last_run_timestamp_seconds", (("job", "quarantine"),)) in m
    run_cli("--sandbox", str(box), "quarantine", "list", check=0)  # not a run: nothing rewritten
    before = prom.stat().st_mtime_ns
    run_cli("--sandbox", str(box), "expire", "--dry-run", check=0)
    assert prom.stat().st_mtime_ns == before  # a dry run writes nothing, not even metrics


def test_metrics_off_by_default_write_nothing(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "expire", check=0)
    assert not list(box.rglob("*.prom"))


def test_the_listener_serves_the_metrics_on_loopback(tmp_path, netns):
    import urllib.request

    from helpers import ListenerProcess, free_port, wait_for, write_config

    port = free_port()
    cfg = write_config(
        tmp_path,
        'backend = "dryrun"\n[listener]\ntcp_ports = [1]\nudp_ports = []\n'
        'bind4 = "127.0.0.1"\nipv6 = false\n'
        f'[logins]\nfollow = "cron"\n[metrics]\nlisten_port = {port}\n',
    )
    run_cli("--config", str(cfg), "block", "192.0.2.7", "--ttl", "1h", check=0)
    run = ListenerProcess(cfg, tmp_path).start("--no-mail")
    try:

        def scrape() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                return ""

        assert wait_for(
            lambda: 'nightwarden_blocks_active{kind="temporary",source="cli"} 1.0' in scrape(), 5.0
        )
    finally:
        run.stop()
