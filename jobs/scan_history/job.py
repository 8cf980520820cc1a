"""Scan-history analysis: what the listener (and imported PortSentry history files) saw,
read as an analyst would: top sources, ports, subnets, scan types, trends, change against the
previous period, repeat offenders, danger levels and recommendations. Text, HTML with charts,
JSON; mailed. `--apply` blocks the recommendations through the firewall library.
"""

from __future__ import annotations

import html
import json
import time
from datetime import datetime
from pathlib import Path

from nightwarden.lib.runner import Result

NAME = "scan-history"


def add_arguments(parser) -> None:
    parser.add_argument("--since", help="start (YYYY-MM-DD[THH:MM] or 24h, 7d); default: the period")
    parser.add_argument("--until", help="end (default: now)")
    parser.add_argument(
        "--import",
        dest="imports",
        metavar="FILE",
        action="append",
        default=[],
        help="a PortSentry history file (1.2 or 2.x format) to bring in first",
    )
    parser.add_argument(
        "--apply", action="store_true", help="block the recommended sources (permanently) and subnets"
    )
    parser.add_argument("--no-mail", action="store_true")


def _shown(df, index_name: str):
    """A table as rows for tabulate: the index as a column, times as text."""
    shown = df.reset_index()
    shown.columns = [index_name if c == "index" else str(c) for c in shown.columns]
    for col in shown.columns:
        if str(shown[col].dtype).startswith("datetime"):
            shown[col] = shown[col].dt.strftime("%Y-%m-%d %H:%M:%S")
    return shown.values.tolist(), list(shown.columns)


def _table_text(df, index_name: str) -> str:
    from tabulate import tabulate

    return tabulate(*_shown(df, index_name)) if df is not None and not df.empty else "(none)"


def _table_html(df, index_name: str) -> str:
    from tabulate import tabulate

    if df is None or df.empty:
        return '<p class="muted">(none)</p>'
    return tabulate(*_shown(df, index_name), tablefmt="html")  # html escapes the cells


SECTIONS = [
    ("Top sources", "address"),
    ("Top ports", "port"),
    ("Subnets /24", "subnet"),
    ("Subnets /16", "subnet"),
    ("Scan types", "type"),
    ("Repeat offenders", "address"),
    ("Daily (shown)", "day"),
    ("Hourly (shown)", "hour"),
]


def analyse_period(ctx, since: float, until: float):
    from . import analysis, store

    state = ctx.state
    df = store.scan_frame(state, since, until)
    previous = store.scan_frame(state, since - (until - since), since)
    seen = analysis.analyse(df, previous, state.block_counts(), ctx.config.history)
    from nightwarden.lib.lists import load_lists

    lists = load_lists(ctx.config)
    seen.candidates = [a for a in seen.candidates if _worth_blocking(state, lists, a)]
    seen.subnets = [n for n in seen.subnets if _worth_blocking(state, lists, str(n))]
    return seen


def _worth_blocking(state, lists, target: str) -> bool:
    """A recommendation is never what is blocked or denied already, nor anything the allow or
    ignore list or the protection of loopback and this host's own addresses cover, whether
    that protection is on in this configuration or not."""
    from nightwarden.lib.blocks import blocked_by
    from nightwarden.lib.netaddr import parse_network, protection_reason

    try:
        net = parse_network(target)
    except Exception:
        return False
    if protection_reason(net, True, True) or lists.allow.match(net) or lists.ignore.match(net):
        return False
    return blocked_by(state, lists, net) is None


def render_history(analysis, since: float, until: float, chart_names: dict) -> tuple[str, str, dict]:
    from .analysis import change

    s = analysis.summary
    period = (
        f"{datetime.fromtimestamp(since):%Y-%m-%d %H:%M} to {datetime.fromtimestamp(until):%Y-%m-%d %H:%M}"
    )
    head = (
        f"Scan history {period}: {s['hits']} probes from {s['sources']} sources to {s['ports']} ports; "
        f"against the previous period: probes {change(s['hits'], s['previous_hits'])}, "
        f"sources {change(s['sources'], s['previous_sources'])}"
    )
    rec = [f"permanent-block candidate: {a}" for a in analysis.candidates] + [
        f"subnet worth blocking: {n}" for n in analysis.subnets
    ]
    text = [head, ""]
    body = [f"<p>{html.escape(head)}</p>"]
    for name in ("timeline", "ports", "sources"):
        if name in chart_names:
            body.append(f'<p><img src="cid:{chart_names[name]}" alt="{name}"></p>')
    for title, index_name in SECTIONS:
        df = analysis.tables.get(title)
        label = title.replace(" (shown)", " (busiest buckets, most recent)")
        text += [label, "=" * len(label), _table_text(df, index_name), ""]
        body += [f"<h2>{html.escape(label)}</h2>", _table_html(df, index_name)]
    text += ["Recommendations", "===============", "\n".join(rec) or "(none)", ""]
    body += [
        "<h2>Recommendations</h2>",
        "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in rec) + "</ul>"
        if rec
        else '<p class="muted">(none)</p>',
    ]
    data = {
        "since": since,
        "until": until,
        "summary": s,
        "candidates": analysis.candidates,
        "subnets": analysis.subnets,
        "tables": {
            t: json.loads(df.reset_index().to_json(orient="records", date_format="iso"))
            for t, df in analysis.tables.items()
            if not t.endswith("(shown)")
        },
    }
    return "\n".join(text), "\n".join(body), data


def run(ctx) -> Result:
    import sys

    from nightwarden.jobs.report.job import parse_when
    from nightwarden.lib.fsutil import atomic_write
    from nightwarden.lib.portsentry import read_history
    from nightwarden.lib.progress import Progress

    from . import analysis, importer

    args = ctx.args
    hcfg = ctx.config.history
    errors: list[str] = []
    for path in [*hcfg.import_files, *(getattr(args, "imports", None) or [])]:
        if ctx.dry_run:
            found = read_history(Path(path))
            ctx.say(f"dry run: {path}: {len(found.rows)} rows would be imported")
            errors += found.errors
            continue
        progress = Progress(
            "scan-history", "importing", enabled=None if getattr(args, "verbosity", 0) >= 0 else False
        )
        if progress.enabled:  # a big history takes a while: say what is going on meanwhile
            size = Path(path).stat().st_size if Path(path).is_file() else 0
            print(
                f"scan-history: importing {path} ({size / 1e6:.1f} MB)...",
                end="",
                file=sys.stderr,
                flush=True,
            )
        count, errs = importer.import_file(ctx.state, Path(path))
        if progress.enabled:
            print(f" {count:,} rows", file=sys.stderr, flush=True)
        errors += errs
        ctx.say(f"imported {count} row(s) from {path}")
    for error in errors[:50]:
        ctx.log.warning("%s", error)
    now = time.time()
    until = parse_when(args.until, now) if args is not None and getattr(args, "until", None) else now
    since = (
        parse_when(args.since, now)
        if args is not None and getattr(args, "since", None)
        else until - hcfg.period_hours * 3600
    )
    seen = analyse_period(ctx, since, until)
    stamp = datetime.fromtimestamp(until).strftime("%Y%m%dT%H%M%S")
    stem = f"scan-history-{stamp}"
    pngs = analysis.charts(seen, ctx.config.report_dir, stem) if hcfg.charts and not ctx.dry_run else {}
    cids = {name: f"{stem}-{name}" for name in pngs}
    text, body_html, data = render_history(seen, since, until, cids)
    if not ctx.dry_run:
        base = ctx.config.report_dir / stem
        atomic_write(base.with_suffix(".txt"), text.encode(), 0o640)
        atomic_write(base.with_suffix(".json"), json.dumps(data, indent=1, default=str).encode(), 0o640)
        html_page = body_html
        for name, path in pngs.items():
            html_page = html_page.replace(f"cid:{cids[name]}", path.name)
        atomic_write(
            base.with_suffix(".html"),
            ("<!DOCTYPE html><html><body>" + html_page + "</body></html>").encode(),
            0o640,
        )
    ctx.say(text)
    applied = ""
    if getattr(args, "apply", False) and (seen.candidates or seen.subnets) and ctx.dry_run:
        ctx.say(f"dry run: would block permanently {', '.join(map(str, seen.candidates + seen.subnets))}")
    elif getattr(args, "apply", False) and (seen.candidates or seen.subnets):
        mgr = ctx.blocks
        mgr.ensure_ready()
        done = mgr.block(
            seen.candidates + seen.subnets,
            source="scan-history",
            reason="recommended by the scan-history analysis",
            permanent=True,
            strict=False,
        )
        applied = f"; applied: {len(done.added)} blocked, {len(done.refused)} refused"
        ctx.say(
            f"applied: blocked {', '.join(str(n) for n in done.added) or 'nothing'}"
            + (f"; refused {', '.join(a for a, _ in done.refused)}" if done.refused else "")
        )
    if not getattr(args, "no_mail", False) and seen.summary["hits"]:
        images = {cids[name]: path.read_bytes() for name, path in pngs.items()}
        ctx.mailer.alert(
            "history",
            {"summary": text.split("\n", 1)[0], "body": text, "body_html": body_html},
            images=images,
        )
    s = seen.summary
    return Result(
        0,
        f"{s['hits']} probes from {s['sources']} sources; {len(seen.candidates)} "
        f"candidates, {len(seen.subnets)} subnets{applied}; {len(errors)} bad lines",
    )
