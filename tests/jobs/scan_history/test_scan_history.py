"""Scan-history analysis on a synthetic history with known answers; both PortSentry formats;
malformed lines reported with file:line."""

from __future__ import annotations

import json
import mailbox
import re
from datetime import UTC, datetime

import pytest

from helpers import load_config, run_cli, write_config
from nightwarden.jobs.scan_history import analysis, importer, store
from nightwarden.lib.state import State

pytest.importorskip("pandas")
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC).timestamp()


def v12(t: float, ip: str, port: int, proto: str = "TCP") -> str:
    stamp = datetime.fromtimestamp(t).strftime("%m/%d/%Y %H:%M:%S")
    return f"{int(t)} - {stamp} Host: {ip}/{ip} Port: {port} {proto} Blocked\n"


def v2(t: float, ip: str, port: int, kind: str = "SYN") -> str:
    stamp = datetime.fromtimestamp(t, UTC).isoformat()
    return (
        f"{stamp} Scan from: [{ip}] ({ip}) protocol: [TCP] port: [{port}] type: [{kind}] "
        f"IP opts: [unknown] ignored: [false] triggered: [true] noblock: [unset] blocked: [true]\n"
    )


@pytest.fixture
def known(tmp_path):
    """203.0.113.5: 200 probes over 50 ports (danger 4); 198.51.100.1-6: one probe each to 22
    (a /24 of six sources); 192.0.2.9: 3 probes to 23, blocked 3 times before (repeat offender);
    yesterday: 10 probes from 192.0.2.50."""
    f12 = tmp_path / "portsentry.history"
    f2 = tmp_path / "portsentry2.history"
    lines12 = [v12(NOW - 3600 + i, "203.0.113.5", 1000 + i % 50) for i in range(200)]
    lines12 += [v12(NOW - 1800, "192.0.2.9", 23) for _ in range(3)]
    lines12 += ["this is not a history line\n", v12(NOW - 1800, "999.1.1.1", 1)]
    lines12 += [v12(NOW - 86400 - 3600, "192.0.2.50", 80) for _ in range(10)]
    f12.write_text("".join(lines12))
    f2.write_text("".join(v2(NOW - 600, f"198.51.100.{i}", 22) for i in range(1, 7)))
    cfg = write_config(
        tmp_path, "\n[history]\nsubnet_min_sources = 5\nrepeat_blocks = 3\ncandidate_danger = 4\n"
    )
    state = State(load_config(cfg).db_path)
    with state:
        for n in range(3):
            state.add_block(
                "192.0.2.9", 4, False, "listener", "scan", NOW - 86400 * (n + 2), NOW - 86400 * (n + 2) + 60
            )
            state.end_block("192.0.2.9", "expired", NOW - 86400 * (n + 2) + 60)
    return cfg, f12, f2


def test_both_formats_import_and_bad_lines_name_file_and_line(known):
    cfg, f12, f2 = known
    state = State(load_config(cfg).db_path)
    count, errors = importer.import_file(state, f12)
    assert count == 213
    assert errors == [
        f"{f12}:204: not a PortSentry 1.2 or 2.x history line; line skipped",
        f"{f12}:205: '999.1.1.1' does not appear to be an IPv4 or IPv6 address; line skipped",
    ]
    assert importer.import_file(state, f12) == (0, []), "a second import adds nothing"
    count, errors = importer.import_file(state, f2)
    assert (count, errors) == (6, [])
    kinds = {json.loads(r["detail"])["type"] for r in state.events(kind="scan")}
    assert kinds == {"connect", "SYN"}


def test_every_table_has_the_known_answer(known):
    cfg, f12, f2 = known
    state = State(load_config(cfg).db_path)
    importer.import_file(state, f12)
    importer.import_file(state, f2)
    df = store.scan_frame(state, NOW - 86400, NOW)
    prev = store.scan_frame(state, NOW - 2 * 86400, NOW - 86400)
    blocks = {"192.0.2.9": (3, False)}
    a = analysis.analyse(df, prev, blocks, load_config(cfg).history)
    top = a.tables["Top sources"]
    assert top.index[0] == "203.0.113.5"
    assert top.loc["203.0.113.5", ["hits", "ports", "danger"]].tolist() == [200, 50, 4]
    assert top.loc["192.0.2.9", ["hits", "times blocked"]].tolist() == [3, 3]
    ports = a.tables["Top ports"]
    assert ports.index[0] == (22, "tcp") and ports.iloc[0].tolist() == [6, 6]
    assert len(ports) == 20 and set(ports["hits"].iloc[1:]) == {4}  # 50 ports x 4 probes
    nets = a.tables["Subnets /24"]
    assert nets.loc["198.51.100.0/24", "sources"] == 6 and nets.index[0] == "198.51.100.0/24"
    assert a.tables["Subnets /16"].loc["203.0.0.0/16", "hits"] == 200
    assert a.tables["Scan types"].loc["SYN", "hits"] == 6
    assert a.tables["Scan types"].loc["connect", "hits"] == 203
    assert int(a.tables["Hourly"]["hits"].sum()) == 209
    assert a.summary == {"hits": 209, "sources": 8, "ports": 52, "previous_hits": 10, "previous_sources": 1}
    assert list(a.tables["Repeat offenders"].index) == ["192.0.2.9"]
    assert set(a.candidates) == {"203.0.113.5", "192.0.2.9"}
    assert a.subnets == ["198.51.100.0/24"]
    assert analysis.change(209, 10) == "+1990 %"


@pytest.mark.slow
def test_job_writes_text_html_json_charts_mails_and_applies(known, tmp_path):
    cfg, f12, f2 = known
    done = run_cli(
        "--config",
        str(cfg),
        "scan-history",
        "--import",
        str(f12),
        "--import",
        str(f2),
        "--since",
        "2026-11-20T12:00",
        "--until",
        "2026-11-21T12:00",
        "--apply",
        check=0,
    )
    assert "permanent-block candidate: 203.0.113.5" in done.stdout
    assert "subnet worth blocking: 198.51.100.0/24" in done.stdout
    assert "applied: blocked" in done.stdout
    reports = tmp_path / "reports"
    pngs = sorted(p.name.rsplit("-", 1)[1] for p in reports.glob("scan-history-*.png"))
    assert pngs == ["ports.png", "sources.png", "timeline.png"]
    for png in reports.glob("scan-history-*.png"):
        assert png.read_bytes().startswith(b"\x89PNG")
    data = json.loads(next(reports.glob("scan-history-*.json")).read_text())
    assert data["summary"]["hits"] == 209
    msg = list(mailbox.mbox(tmp_path / "state" / "mail" / "mbox"))[-1]
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 3 and all(p["Content-ID"] for p in images)
    html_part = [p for p in msg.walk() if p.get_content_type() == "text/html"][0]
    assert "cid:" in html_part.get_payload(decode=True).decode()
    state = State(tmp_path / "state" / "state.db")
    row = state.active_block("203.0.113.5")
    assert row.permanent and row.source == "scan-history"
    assert state.active_block("198.51.100.0/24").permanent


def test_the_loader_without_arrow_gives_the_same_frame(known, monkeypatch):
    cfg, f12, f2 = known
    state = State(load_config(cfg).db_path)
    importer.import_file(state, f12)
    importer.import_file(state, f2)
    fast = store.scan_frame(state, 0, NOW + 1)  # Arrow
    monkeypatch.setattr(store, "_load_arrow", lambda *a: None)
    slow = store.scan_frame(state, 0, NOW + 1)  # Python rows
    key = ["time", "address", "port"]
    frames = [
        f.astype({"address": str, "proto": str, "type": str}).sort_values(key).reset_index(drop=True)
        for f in (fast, slow)
    ]
    assert len(frames[0]) == 219 and frames[0].equals(frames[1])


@pytest.mark.slow
def test_the_daily_report_mail_carries_the_scan_charts(known, tmp_path):
    cfg, f12, f2 = known
    state = State(load_config(cfg).db_path)
    import time as _time

    with state:
        for i in range(30):
            state.add_event(
                "scan",
                address=f"198.51.100.{i % 7 + 1}",
                port=20 + i,
                proto="tcp",
                source="listener",
                when=_time.time() - 600,
                type="SYN",
            )
    run_cli("--config", str(cfg), "report", check=0)
    msg = list(mailbox.mbox(tmp_path / "state" / "mail" / "mbox"))[-1]
    assert msg["X-Nightwarden-Template"] == "report" and " blocks" in msg["Subject"]
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 3
    html_part = [p for p in msg.walk() if p.get_content_type() == "text/html"][0].get_payload(decode=True)
    assert html_part.count(b'src="cid:report-') == 3
    saved = sorted((tmp_path / "reports").glob("report-*.html"))[-1]
    page = saved.read_text()
    assert "cid:" not in page  # on disk the page shows the PNG files beside it
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (saved.parent / src).is_file(), src


def test_recommendations_leave_out_what_is_denied_blocked_or_protected(known, tmp_path):
    """The same history; 203.0.113.0/24 is denied already, 192.0.2.9 is blocked inside a
    blocked network, and loopback scanners are never proposed even with protection off."""
    cfg, f12, f2 = known
    loopback = tmp_path / "loop.history"
    loopback.write_text("".join(v12(NOW - 900 + i, "127.0.0.77", 2000 + i) for i in range(200)))
    (tmp_path / "etc" / "deny").write_text("203.0.113.0/24 # known scanners\n")
    state = State(load_config(cfg).db_path)
    with state:
        state.add_block("192.0.2.0/24", 4, True, "cli", "hostile", NOW - 60, None)
    state.close()
    done = run_cli(
        "--config",
        str(cfg),
        "scan-history",
        "--import",
        str(f12),
        "--import",
        str(f2),
        "--import",
        str(loopback),
        "--since",
        "2026-11-20T12:00",
        "--until",
        "2026-11-21T12:00",
        "--no-mail",
        check=0,
    )
    assert "permanent-block candidate" not in done.stdout, done.stdout
    assert "subnet worth blocking: 198.51.100.0/24" in done.stdout
    assert "127.0.0.77" in done.stdout  # in the tables, never in the recommendations
    assert "candidate: 127.0.0.77" not in done.stdout and "blocking: 127.0.0.0/24" not in done.stdout
    run_cli("--config", str(cfg), "deny", "198.51.100.0/24", check=0)
    with State(load_config(cfg).db_path) as s:
        for i in range(1, 4):
            s.add_event(
                "scan", address=f"198.51.100.{i}", port=22, proto="tcp", source="listener", when=NOW - 100
            )
    run_cli(
        "--config",
        str(cfg),
        "report",
        "--since",
        "2026-11-20T12:00",
        "--until",
        "2026-11-21T12:00",
        "--no-mail",
        check=0,
    )
    latest = sorted((tmp_path / "reports").glob("report-*.json"))[-1]
    rows = next(
        s for s in json.loads(latest.read_text())["sections"] if s["title"] == "Listener scan alerts"
    )["rows"]
    mine = [r for r in rows if r[0].startswith("198.51.100.")]
    assert mine and all(r[6].startswith("yes, on the deny list") for r in mine), mine
