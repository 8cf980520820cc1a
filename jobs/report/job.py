"""The daily report: what happened in the period, as text, HTML and JSON, mailed as one digest.

Sections: job health; the log sources read (trusted or spoofable, lines not understood);
auth failures by address, user and service; successful logins; local su/sudo failures;
firewall blocks (active, made and lifted, with reasons); listener scan alerts; events by
kind and by address; integrity checks; suspicious files; list-file problems and mail
waiting in the outbox.
"""

from __future__ import annotations

import html
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

from nightwarden.lib.cli.output import cut
from nightwarden.lib.errors import UsageError
from nightwarden.lib.runner import Result

NAME = "report"


def add_arguments(parser) -> None:
    parser.add_argument("--since", help="start of the period (YYYY-MM-DD[THH:MM] or 24h, 7d)")
    parser.add_argument("--until", help="end of the period (default: now)")
    parser.add_argument("--no-mail", action="store_true", help="save the report, do not mail it")


@dataclass
class ReportSection:
    title: str
    headers: list[str]
    rows: list[list] = field(default_factory=list)
    note: str = ""


def parse_when(text: str, now: float) -> float:
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    if text and text[-1] in units and text[:-1].isdigit():
        return now - int(text[:-1]) * units[text[-1]]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"invalid time {text!r}: use YYYY-MM-DD[THH:MM] or 24h, 7d") from None


def fmt_time(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def job_health(state, since: float, until: float) -> ReportSection:
    """Runs of the jobs in the period (runs only: looking at the quarantine or the integrity
    database is none, nor is a dry run); this report's own run, still going, is left out."""
    from nightwarden.jobs import JOBS

    sec = ReportSection(
        "Job health", ["job", "runs", "failed", "last run", "last exit", "last success", "last summary"]
    )
    runs = [
        r
        for r in state.runs(since)
        if r["started"] < until and not r["dry_run"] and not (r["job"] == NAME and r["exit_code"] is None)
    ]
    names = list(JOBS) + sorted({r["job"] for r in runs} - set(JOBS))
    for name in names:
        mine = [r for r in runs if r["job"] == name]
        last = mine[-1] if mine else None
        failed = sum(1 for r in mine if r["exit_code"] is not None and r["exit_code"] >= 64)
        sec.rows.append(
            [
                name,
                len(mine),
                failed,
                fmt_time(last["started"]) if last else "never",
                "-" if last is None else ("running" if last["exit_code"] is None else last["exit_code"]),
                fmt_time(state.last_success(name)),
                cut(last["summary"] if last else "", 60),
            ]
        )
    return sec


def missed_runs(config, state, since: float, until: float, grace: float = 600) -> list[str]:
    """Scheduled jobs that should have run in the period (a fire time at least `grace`
    seconds before its end) and did not run at all: cron or the timers are broken."""
    from datetime import UTC

    from nightwarden.lib.schedule import entries, trigger

    ran = {r["job"] for r in state.runs(since) if r["started"] < until}
    out = []
    for entry in entries(config):
        if entry.job in ran or entry.job == NAME or not state.last_runs(entry.job, 1):
            continue  # a job that never ran at all is said once, as such
        start = datetime.fromtimestamp(since, UTC)
        due = trigger(entry, UTC).get_next_fire_time(None, start)
        if due is not None and due.timestamp() <= until - grace:
            out.append(
                f"{entry.job} should have run at {fmt_time(due.timestamp())} and did not run in the period"
            )
    return out


def blocks_sections(state, since: float, until: float, lists) -> list[ReportSection]:
    active = state.active_blocks()
    temp = [b for b in active if not b.permanent]
    perm = [b for b in active if b.permanent]
    summary = ReportSection(
        "Firewall",
        ["what", "count"],
        [
            ["temporary blocks active", len(temp)],
            ["permanent blocks active", len(perm)],
            ["deny list entries", len(lists.deny.entries)],
            ["allow list entries", len(lists.allow.entries)],
            ["ignore list entries", len(lists.ignore.entries)],
        ],
    )
    made = ReportSection(
        "Blocks made in the period", ["address", "kind", "source", "reason", "created", "expires"]
    )
    lifted = ReportSection("Blocks lifted in the period", ["address", "source", "reason", "removed", "why"])
    for b in state.blocks_since(since):
        if since <= b.created < until:
            made.rows.append(
                [
                    b.address,
                    "permanent" if b.permanent else "temporary",
                    b.source,
                    b.reason,
                    fmt_time(b.created),
                    fmt_time(b.expires),
                ]
            )
        if b.removed and since <= b.removed < until:
            lifted.rows.append([b.address, b.source, b.reason, fmt_time(b.removed), b.removed_reason])
    return [summary, made, lifted]


def events_sections(state, since: float, until: float) -> list[ReportSection]:
    events = state.events(since, until)
    by_kind: dict[str, int] = {}
    by_addr: dict[tuple, int] = {}
    for e in events:
        by_kind[e["kind"]] = by_kind.get(e["kind"], 0) + 1
        if e["address"]:
            key = (e["address"], e["kind"])
            by_addr[key] = by_addr.get(key, 0) + 1
    kinds = ReportSection(
        "Events by kind",
        ["kind", "count"],
        [[k, n] for k, n in sorted(by_kind.items(), key=lambda kv: -kv[1])],
    )
    top = ReportSection(
        "Top addresses",
        ["address", "kind", "events"],
        [[a, k, n] for (a, k), n in sorted(by_addr.items(), key=lambda kv: -kv[1])[:20]],
    )
    return [kinds, top]


def quarantine_section(records: list) -> ReportSection:
    """records: the manifest rows of the period."""
    from nightwarden.jobs.quarantine.archive import shown

    sec = ReportSection("Suspicious files", ["time", "path", "owner", "reason", "action"])
    for r in records:
        sec.rows.append(
            [
                fmt_time(r["time"]),
                cut(shown(bytes(r["path"])), 70, middle=True),
                r["owner"],
                cut(r["reason"], 50),
                r["action"],
            ]
        )
    return sec


def integrity_sections(events: list) -> list[ReportSection]:
    """events: the period's integrity checks, (time, detail) each."""
    checks = ReportSection(
        "Integrity checks", ["time", "added", "removed", "changed", "explained by packages", "unreadable"]
    )
    changes = ReportSection("Integrity changes", ["time", "path", "change", "before", "after"])
    for when, d in events:
        checks.rows.append(
            [
                fmt_time(when),
                d.get("added", 0),
                d.get("removed", 0),
                d.get("changed", 0),
                d.get("explained", 0),
                d.get("unreadable", 0),
            ]
        )
        for p in d.get("paths", []):
            attrs = p.get("attributes") or [["", "", ""]]
            for i, (name, before, after) in enumerate(attrs):
                label = f"{name}: " if name else ""
                changes.rows.append(
                    [
                        fmt_time(when) if i == 0 else "",
                        p["path"] if i == 0 else "",
                        p["change"] if i == 0 else "",
                        f"{label}{before}" if before else "-",
                        f"{label}{after}" if after else "-",
                    ]
                )
        listed = len(d.get("paths", []))
        total = d.get("added", 0) + d.get("removed", 0) + d.get("changed", 0)
        if total > listed:
            changes.note = f"{total - listed} more not listed: the integrity-<time>.txt report has them all."
    return [checks, changes]


def scans_section(state, since: float, until: float, lists) -> ReportSection:
    sec = ReportSection(
        "Listener scan alerts", ["address", "hits", "ports", "protocols", "first", "last", "blocked now"]
    )
    rows, total = state.scan_sources(since, until, 20)
    for r in rows:
        sec.rows.append(
            [
                r["address"],
                r["hits"],
                r["ports"],
                r["protos"] or "",
                fmt_time(r["first"]),
                fmt_time(r["last"]),
                _blocked_now(state, lists, r["address"]),
            ]
        )
    if total > len(rows):
        sec.note = f"{total} scanning addresses in all; nightwarden scan-history has the analysis."
    return sec


def _blocked_now(state, lists, address: str) -> str:
    from nightwarden.lib.blocks import blocked_by
    from nightwarden.lib.netaddr import parse_network

    try:
        why = blocked_by(state, lists, parse_network(address))
    except Exception:  # not an address: nothing to say
        return "no"
    return "no" if why is None else ("yes" if why == "blocked" else f"yes, {why}")


def auth_sections(ctx, since: float, until: float) -> list[ReportSection]:
    from nightwarden.jobs.login_failures import report

    return [
        ReportSection(d["title"], d["headers"], d["rows"], d["note"])
        for d in report.sections(ctx.config, since, until, fmt_time)
    ]


def audit_section(state, since: float, until: float) -> ReportSection | None:
    """The security audit's findings that were new in the period (none: no section)."""
    sec = ReportSection("Security audit: new findings", ["time", "severity", "finding", "fix"])
    for e in state.events(since, until, kind="audit"):
        for f in json.loads(e["detail"] or "{}").get("findings", []):
            sec.rows.append(
                [fmt_time(e["time"]), f.get("severity", "?"), f.get("what", "?"), f.get("fix", "")]
            )
    return sec if sec.rows else None


def processes_section(state, since: float, until: float) -> ReportSection:
    from nightwarden.jobs.processes import report

    d = report.section(state, since, until, fmt_time)
    return ReportSection(d["title"], d["headers"], d["rows"], d["note"])


def problems_section(ctx, since: float, until: float) -> ReportSection:
    """What `nightwarden status` calls problems (the firewall off, list lines, failed jobs, a
    job's prerequisites, the listener down, the outbox) and the runs cron did not start."""
    from nightwarden.lib.cli.status_cmd import facts

    problems = facts(ctx)["problems"] + missed_runs(ctx.config, ctx.state, since, until)
    return ReportSection("Problems", ["problem"], [[p] for p in problems])


def summary_section(
    sections: list[ReportSection], changes: list[dict], files: list[list], pruned: list[str] = ()
) -> tuple[ReportSection, str]:
    """What needs attention today, first; and the mail's subject line. files: the suspicious
    files' (path, reason, action), paths whole."""
    by = {s.title: s for s in sections}
    quarantined = [f for f in files if str(f[2]).startswith("quarantined")]
    new_perm = [r for r in by["Blocks made in the period"].rows if r[1] == "permanent"]
    made = len(by["Blocks made in the period"].rows)
    failed = [r for r in by["Job health"].rows if r[2]]
    problems = by["Problems"].rows
    suspicious = [r for r in by["Processes"].rows if r[1] in ("suspicious", "killed")]
    rows = []
    for c in changes[:10]:
        attrs = [(a, b, f) for a, b, f in c.get("attributes", []) if a]
        # the times follow every change: said only when nothing else changed
        telling = [x for x in attrs if x[0] not in ("mtime", "ctime")] or attrs
        what = "; ".join(
            f"{a} {cut(b, 13)} -> {cut(f, 13)}" if a == "sha256" else f"{a} {b} -> {f}" for a, b, f in telling
        )
        what = what or c["change"]
        rows.append(
            ["integrity", f"{c['path']}: {c['change']}" + (f" ({what})" if c["change"] == "changed" else "")]
        )
    if len(changes) > 10:
        rows.append(["integrity", f"{len(changes) - 10} more changes (see Integrity changes)"])
    for path, reason, _ in quarantined[:10]:
        rows.append(["quarantined", f"{path} ({reason})"])
    for r in new_perm[:10]:
        rows.append(["permanent block", f"{r[0]} ({r[2]}: {r[3]})"])
    for r in suspicious[:10]:
        rows.append([f"{r[1]} process", f"{r[2]} pid {r[3]} {r[4]}"])
    if len(suspicious) > 10:
        rows.append(["suspicious process", f"{len(suspicious) - 10} more (see Processes)"])
    audit = by.get("Security audit: new findings")
    for r in (audit.rows if audit else [])[:10]:
        if r[1] in ("high", "medium"):
            rows.append([f"audit ({r[1]})", r[2]])
    for r in failed:
        rows.append(["job failed", f"{r[0]}: {r[2]} of {r[1]} runs; last: {r[6]}"])
    rows += [["problem", p[0]] for p in problems]
    rows += [["pruned", p] for p in pruned]
    if not rows:
        rows.append(["-", "nothing needs attention"])
    parts = []
    if changes:
        parts.append(f"{len(changes)} integrity change{'s' if len(changes) != 1 else ''}")
    if quarantined:
        parts.append(f"{len(quarantined)} file{'s' if len(quarantined) != 1 else ''} quarantined")
    if suspicious:
        parts.append(f"{len(suspicious)} suspicious process{'es' if len(suspicious) != 1 else ''}")
    parts.append(f"{made} block{'s' if made != 1 else ''}")
    if failed:
        parts.append(f"{len(failed)} job{'s' if len(failed) != 1 else ''} failing")
    if problems:
        parts.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}")
    return ReportSection("Needs attention", ["what", "detail"], rows), ", ".join(parts)


TEXT_WIDTH = 78  # a mail's text part reads in a terminal or a phone


def _widths(rows: list[list], headers: list[str], width: int = TEXT_WIDTH) -> list[int]:
    """Column widths that keep a table within `width` (two spaces between columns): the
    widest column gives way first, no column below 6 (tabulate wraps its cells and headers)."""
    cols = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    while sum(cols) + 2 * (len(cols) - 1) > width:
        widest = max(range(len(cols)), key=lambda i: cols[i])
        if cols[widest] <= 6:
            break
        cols[widest] -= 1
    return cols


def render_text(sections: list[ReportSection]) -> str:
    import textwrap

    from tabulate import tabulate

    out = []
    for sec in sections:
        out.append(sec.title)
        out.append("=" * len(sec.title))
        if sec.rows:
            budget = TEXT_WIDTH
            for _ in range(8):  # tabulate pads some columns: narrow the budget by what overflowed
                widths = _widths(sec.rows, sec.headers, budget)
                text = tabulate(
                    sec.rows, sec.headers, tablefmt="simple", maxcolwidths=widths, maxheadercolwidths=widths
                )
                over = max(len(line) for line in text.splitlines()) - TEXT_WIDTH
                if over <= 0:
                    break
                budget -= over
            out.append(text)
        else:
            out.append("(none)")
        if sec.note:
            out.append(textwrap.fill(sec.note, TEXT_WIDTH))
        out.append("")
    return "\n".join(out)


def render_html(sections: list[ReportSection]) -> str:
    from tabulate import tabulate

    out = []
    for sec in sections:
        out.append(f"<h2>{html.escape(sec.title)}</h2>")
        # tabulate's "html" format escapes cell text
        table = tabulate(sec.rows, sec.headers, tablefmt="html") if sec.rows else ""
        out.append(f'<div class="scroll">{table}</div>' if sec.rows else '<p class="muted">(none)</p>')
        if sec.note:
            out.append(f"<p>{html.escape(sec.note)}</p>")
    return "\n".join(out)


def build_report(ctx, since: float, until: float) -> tuple[list[ReportSection], str, str]:
    from nightwarden.lib.lists import load_lists

    lists = load_lists(ctx.config)
    state = ctx.state
    from nightwarden.jobs.quarantine.archive import shown
    from nightwarden.jobs.quarantine.store import QuarantineStore

    quarantined = QuarantineStore(state).between(since, until)
    checks = [(e["time"], json.loads(e["detail"])) for e in state.events(since, until, kind="integrity")]
    sections = [
        job_health(state, since, until),
        *auth_sections(ctx, since, until),
        *blocks_sections(state, since, until, lists),
        scans_section(state, since, until, lists),
        *events_sections(state, since, until),
        *integrity_sections(checks),
        quarantine_section(quarantined),
        processes_section(state, since, until),
        problems_section(ctx, since, until),
    ]
    audit = audit_section(state, since, until)
    if audit is not None:
        sections.insert(-1, audit)
    files = [[shown(bytes(r["path"])), r["reason"], r["action"]] for r in quarantined]
    changes = [p for _, d in checks for p in d.get("paths", [])]
    pruned = []
    for e in state.events(since, until, kind="prune"):
        d = json.loads(e["detail"])
        if d.get("quarantine_archives"):  # never silently
            pruned.append(f"{d['quarantine_archives']} quarantine archive(s) past retention.quarantine_days")
    summary, headline = summary_section(sections, changes, files, pruned)
    period = f"{fmt_time(since)} to {fmt_time(until)}"
    return [summary, *sections], period, headline


def _scan_charts(ctx, since: float, until: float, stem: str) -> dict[str, bytes]:
    """The scan-history charts of the period (saved beside the report), for the mail.
    pandas and matplotlib are loaded only when the period has scans."""
    if not ctx.config.history.charts:
        return {}
    if not ctx.state.count_events("scan", since, until):
        return {}
    from nightwarden.jobs.scan_history import analysis
    from nightwarden.jobs.scan_history.job import analyse_period

    pngs = analysis.charts(analyse_period(ctx, since, until), ctx.config.report_dir, stem)
    return {f"{stem}-{name}": path.read_bytes() for name, path in pngs.items()}


def run(ctx) -> Result:
    from nightwarden.lib.fsutil import atomic_write

    args = ctx.args
    now = time.time()
    until = parse_when(args.until, now) if args and args.until else now
    hours = ctx.config.report.period_hours
    since = parse_when(args.since, now) if args and args.since else until - hours * 3600
    if since >= until:
        raise UsageError("--since must be before --until")
    sections, period, headline = build_report(ctx, since, until)
    text = render_text(sections)
    body_html = render_html(sections)
    data = {
        "host": ctx.config.hostname,
        "since": since,
        "until": until,
        "sections": [
            {
                "title": s.title,
                "headers": s.headers,
                "rows": s.rows,
                # the same rows as objects, named by their column (snake_case)
                "records": [
                    {
                        h.lower().replace(" ", "_").replace("(", "").replace(")", ""): v
                        for h, v in zip(s.headers, r, strict=False)
                    }
                    for r in s.rows
                ],
                "note": s.note,
            }
            for s in sections
        ],
    }
    stamp = datetime.fromtimestamp(until).strftime("%Y%m%dT%H%M%S")
    base = ctx.config.report_dir / f"report-{stamp}"
    if ctx.dry_run or sys.stdout.isatty():  # the report itself, for the person who asked
        ctx.say(text)
    if ctx.dry_run:
        ctx.log.info("dry run: would write %s.{txt,html,json}", base)
    else:
        atomic_write(base.with_suffix(".txt"), text.encode(), 0o640)
        atomic_write(base.with_suffix(".json"), json.dumps(data, indent=1, default=str).encode(), 0o640)
    images = _scan_charts(ctx, since, until, f"report-{stamp}") if not ctx.dry_run else {}
    saved_html = body_html
    if images:
        # the mail carries the charts inline (cid:); the file on disk points at the PNGs beside it
        body_html += "\n<h2>Scans</h2>\n" + "\n".join(
            f'<p><img src="cid:{cid}" alt="{html.escape(cid)}"></p>' for cid in images
        )
        saved_html += "\n<h2>Scans</h2>\n" + "\n".join(
            f'<p><img src="{html.escape(cid)}.png" alt="{html.escape(cid)}"></p>' for cid in images
        )
    fields = {"period": period, "body": text, "body_html": body_html, "headline": headline}
    mailer = ctx.mailer
    msg = mailer.build("report", fields, images=images)
    if not ctx.dry_run and ctx.config.mail.html:
        page = mailer.build("report", {**fields, "body_html": saved_html}).get_body(("html",))
        if page is not None:
            atomic_write(base.with_suffix(".html"), page.get_content().encode(), 0o640)
    sent = "not mailed"
    if not (args and getattr(args, "no_mail", False)):
        result = mailer.send(msg)
        sent = f"mail {result.status} ({result.where})"
    if ctx.dry_run:
        ctx.say(f"dry run: no report written (it would be {base}.txt, .html, .json); {sent}")
    else:
        ctx.say(f"report: {base}.txt (.html, .json); {sent}")
    counts = {s.title: len(s.rows) for s in sections}
    events = sum(r[1] for s in sections if s.title == "Events by kind" for r in s.rows)
    failures = sum(r[1] for s in sections if s.title == "Auth failures by service" for r in s.rows)
    return Result(
        0,
        f"report for {period}: {failures} auth failures, "
        f"{counts['Blocks made in the period']} blocks made, "
        f"{events} events, {counts['Suspicious files']} suspicious files; {sent}",
    )
