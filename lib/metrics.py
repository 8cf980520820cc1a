"""Metrics for Prometheus in node_exporter's textfile-collector format: after every job run
the runner rewrites <metrics.textfile_dir>/nightwarden.prom (atomically, through
prometheus_client's write_to_textfile) from the state database: each job's last run, duration,
exit code and last success; active blocks by kind and source; events of the last day by kind
(probes, login blocks, quarantined files...); the last integrity check's changes. Only jobs
import this module, and only when a directory is configured."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .errors import UnavailableError
from .logsetup import get

log = get("metrics")
FILE = "nightwarden.prom"


def textfile(config) -> Path | None:
    d = config.metrics.textfile_dir
    return config.sandboxed(d) / FILE if d else None


def _client():
    try:
        import prometheus_client
    except ImportError:
        raise UnavailableError(
            "metrics are configured but prometheus-client is not installed "
            "(pip install 'nightwarden[metrics]')"
        ) from None
    return prometheus_client


def write(config, state) -> Path | None:
    """Rewrite the metrics file; None when metrics are off. A missing prometheus_client is
    said once per run (UnavailableError), never a job's failure."""
    path = textfile(config)
    if path is None:
        return None
    client = _client()
    reg = registry(config, state)
    if not path.parent.is_dir():  # ours: node_exporter (its own user) must be able to enter it
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
    client.write_to_textfile(str(path), reg)
    path.chmod(0o644)  # node_exporter runs as its own user: the figures are not secret
    return path


def serve(config, make_state) -> object | None:
    """The listener's loopback HTTP endpoint (metrics.listen_port): each scrape reads the state
    database afresh through its own connection. None when off."""
    port = config.metrics.listen_port
    if not port:
        return None
    client = _client()

    class Live:
        def collect(self):
            state = make_state()
            try:
                yield from registry(config, state).collect()
            finally:
                state.close()

    reg = client.CollectorRegistry()
    reg.register(Live())
    server, _ = client.start_http_server(port, addr="127.0.0.1", registry=reg)
    return server


def registry(config, state):
    """Every figure, in a fresh registry."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    now = time.time()
    last_run = Gauge(
        "nightwarden_job_last_run_timestamp_seconds", "When the job last started", ["job"], registry=reg
    )
    duration = Gauge(
        "nightwarden_job_last_duration_seconds", "How long its last run took", ["job"], registry=reg
    )
    exit_code = Gauge(
        "nightwarden_job_last_exit_code",
        "Its last exit code (0, 1-63 findings, 64+ failed)",
        ["job"],
        registry=reg,
    )
    success = Gauge(
        "nightwarden_job_last_success_timestamp_seconds", "When it last ended below 64", ["job"], registry=reg
    )
    for name in state.job_names():
        runs = [r for r in state.last_runs(name, 1) if r["ended"] is not None]
        if runs:
            r = runs[-1]
            last_run.labels(name).set(r["started"])
            duration.labels(name).set(r["ended"] - r["started"])
            exit_code.labels(name).set(r["exit_code"])
        ok = state.last_success(name)
        if ok is not None:
            success.labels(name).set(ok)
    blocks = Gauge("nightwarden_blocks_active", "Active blocks", ["kind", "source"], registry=reg)
    counts: dict = {}
    for b in state.active_blocks(now):
        key = ("permanent" if b.permanent else "temporary", b.source)
        counts[key] = counts.get(key, 0) + 1
    for (kind, source), n in counts.items():
        blocks.labels(kind, source).set(n)
    events = Gauge(
        "nightwarden_events_last_day", "Events of the last 24 hours by kind", ["kind"], registry=reg
    )
    for kind, n in state.event_counts(now - 86400, now).items():
        events.labels(kind).set(n)
    integrity = Gauge(
        "nightwarden_integrity_last_check", "The last integrity check's findings", ["what"], registry=reg
    )
    checks = state.events(now - 40 * 86400, now, kind="integrity")
    if checks:
        d = json.loads(checks[-1]["detail"])
        for what in ("added", "removed", "changed", "explained", "unreadable"):
            integrity.labels(what).set(d.get(what, 0))
        integrity.labels("timestamp").set(checks[-1]["time"])
    return reg
