"""`nightwarden fleet report`: one morning digest for the fleet (text, HTML, JSON, as the
daily report): hosts that did not report or lag behind the decisions, sources seen on
several hosts, decisions made and lifted and by whom, hosts with unexplained integrity
changes, quarantined files, failed jobs. Read from the broker with the configured
credentials (the authority's or the operator's)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import datetime

from nightwarden.lib.runner import Result

NAME = "fleet-report"


def add_arguments(parser) -> None:
    parser.add_argument("--no-mail", action="store_true", help="write it, do not mail it")
    parser.add_argument("--hours", type=int, help="the period (default fleet.report_hours)")


async def gather(nc, since: float) -> dict:
    from . import reader

    return {
        "hosts": await reader.hosts(nc),
        "summaries": await reader.summaries(nc, since),
        "evidence": await reader.evidence(nc, since),
        "history": await reader.history(nc, since),
        "decisions": await reader.decisions(nc),
    }


def build(data: dict, since: float, now: float, heartbeat: int) -> tuple[list, str]:
    from nightwarden.jobs.report.job import ReportSection, fmt_time

    hosts = sorted(set(data["hosts"]) | set(data["summaries"]))
    status = ReportSection("Hosts", ["host", "last seen", "version", "applied", "lag", "refused", "summary"])
    silent, lagging = [], []
    for h in hosts:
        st = data["hosts"].get(h, {}).get("status", {})
        seen = st.get("received")
        summaries = data["summaries"].get(h, [])
        if seen is None or now - seen > 3 * max(heartbeat, 10) or not summaries:
            silent.append(h)
        if st.get("lag"):
            lagging.append(h)
        status.rows.append(
            [
                h,
                fmt_time(seen),
                st.get("version", ""),
                st.get("applied", ""),
                st.get("lag", ""),
                st.get("refused", ""),
                fmt_time(summaries[-1]["received"]) if summaries else "none",
            ]
        )
    by_address: dict[str, dict] = defaultdict(lambda: {"hosts": set(), "kinds": set(), "count": 0})
    for host, kind, ev, _t in data["evidence"]:
        a = by_address[str(ev.get("address"))]
        a["hosts"].add(host)
        a["kinds"].add(kind)
        a["count"] += int(ev.get("count", 1) or 1)
    shared = sorted(
        ((addr, a) for addr, a in by_address.items() if len(a["hosts"]) > 1),
        key=lambda x: (-len(x[1]["hosts"]), -x[1]["count"]),
    )
    sources = ReportSection("Sources seen on several hosts", ["address", "hosts", "kinds", "reports"])
    sources.rows = [
        [addr, ", ".join(sorted(a["hosts"])), ", ".join(sorted(a["kinds"])), a["count"]]
        for addr, a in shared[:50]
    ]
    if len(shared) > 50:
        sources.note = f"{len(shared) - 50} more"
    made = ReportSection("Decisions made and lifted", ["time", "action", "target", "scope", "by", "reason"])
    for key, d, deleted, t in data["history"]:
        if deleted:
            made.rows.append([fmt_time(t), "removed (expired)", key, "", "authority", ""])
        elif d is not None:
            made.rows.append(
                [fmt_time(t), d.action, d.target, d.scope + (f" {d.to}" if d.to else ""), d.by, d.reason]
            )
    in_force = sum(1 for _k, d, _r, _t in data["decisions"] if d is not None and d.in_force(now))
    made.note = f"{in_force} decision(s) in force now"
    integrity = ReportSection("Unexplained integrity changes", ["host", "time", "changes", "paths"])
    quarantine = ReportSection("Quarantined files", ["host", "files", "paths"])
    failed = ReportSection("Failed jobs", ["host", "job", "exit", "time", "summary"])
    for h in hosts:
        for s in data["summaries"].get(h, []):
            for c in s.get("integrity", []):
                integrity.rows.append([h, fmt_time(c["time"]), c["unexplained"], ", ".join(c["paths"][:5])])
            for f in s.get("failed_jobs", []):
                failed.rows.append([h, f["job"], f["exit"], fmt_time(f["time"]), f["summary"]])
        last = (data["summaries"].get(h) or [{}])[-1]
        if last.get("quarantined"):
            quarantine.rows.append([h, len(last["quarantined"]), ", ".join(last["quarantined"][:5])])
    attention = ReportSection("Needs attention", ["what", "hosts"])
    for what, names in (
        ("did not report", silent),
        ("lag behind the decisions", lagging),
        ("unexplained integrity changes", sorted({r[0] for r in integrity.rows})),
        ("quarantined files", [r[0] for r in quarantine.rows]),
        ("failed jobs", sorted({r[0] for r in failed.rows})),
    ):
        if names:
            attention.rows.append([what, ", ".join(names)])
    headline = (
        "; ".join(f"{len(r[1].split(', '))} host(s) {r[0]}" for r in attention.rows)
        if attention.rows
        else f"all {len(hosts)} host(s) well"
    ) + f"; {len(made.rows)} decision change(s), {len(shared)} shared source(s)"
    return [attention, status, sources, made, integrity, quarantine, failed], headline


def run(ctx) -> Result:
    from nightwarden.jobs.report.job import render_html, render_text
    from nightwarden.lib.fsutil import atomic_write

    from . import reader

    cfg = ctx.config.fleet
    now = time.time()
    hours = getattr(ctx.args, "hours", None) or cfg.report_hours
    since = now - hours * 3600

    data = reader.run(ctx.config, cfg.credentials, "nightwarden fleet report", gather, since)
    sections, headline = build(data, since, now, cfg.heartbeat)
    text, body_html = render_text(sections), render_html(sections)
    stamp = datetime.fromtimestamp(now).strftime("%Y%m%dT%H%M%S")
    base = ctx.config.report_dir / f"fleet-report-{stamp}"
    record = {
        "since": since,
        "until": now,
        "headline": headline,
        "sections": [
            {
                "title": s.title,
                "headers": s.headers,
                "rows": s.rows,
                "note": s.note,
                "records": [
                    dict(zip([h.replace(" ", "_") for h in s.headers], r, strict=False)) for r in s.rows
                ],
            }
            for s in sections
        ],
    }
    period = f"{datetime.fromtimestamp(since):%Y-%m-%d %H:%M} to {datetime.fromtimestamp(now):%Y-%m-%d %H:%M}"
    fields = {
        "period": period,
        "body": text,
        "body_html": body_html,
        "headline": headline,
        "hosts": len(sections[1].rows),
    }
    msg = ctx.mailer.build("fleetreport", fields)
    if ctx.dry_run:
        ctx.say(text)
        return Result(0, f"dry run: {headline}")
    ctx.config.report_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(base.with_suffix(".txt"), text.encode(), 0o640)
    atomic_write(base.with_suffix(".json"), json.dumps(record, indent=1, default=str).encode(), 0o640)
    page = msg.get_body(("html",))
    if page is not None:
        atomic_write(base.with_suffix(".html"), page.get_content().encode(), 0o640)
    sent = "not mailed"
    if not getattr(ctx.args, "no_mail", False):
        result = ctx.mailer.send(msg)
        sent = f"mail {result.status} ({result.where})"
    ctx.say(f"fleet report: {base}.txt (.html, .json); {sent}")
    return Result(0, headline)
