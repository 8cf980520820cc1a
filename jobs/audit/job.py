"""`nightwarden audit`: the server security check (see the package's docstring). Prints each
finding with its severity, evidence and fix (`--json`: objects); exit bits by severity (1 low,
2 medium, 4 high, added); findings not seen at the last audit are marked new, recorded as an
event, and listed in the daily report."""

from __future__ import annotations

import json

from nightwarden.lib.runner import Result

from . import checks

NAME = "audit"
ORDER = {"high": 0, "medium": 1, "low": 2}
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS audit_last (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="the findings as JSON objects")


def trees(config) -> list:
    cfg = config.audit
    paths = cfg.trees or [*config.integrity.paths, *config.watch.paths]
    return [config.sandboxed(p) for p in dict.fromkeys(paths)]


def _last(state, name: str):
    row = state.db.execute("SELECT value FROM audit_last WHERE name = ?", (name,)).fetchone()
    return json.loads(row[0]) if row else None


def _ignored(ident: str, ignore: list[str]) -> bool:
    """audit.ignore names a finding ("ssh.x11forwarding") or a family ("services.gone")."""
    return any(ident == i or ident.startswith(i + ".") for i in ignore)


def run(ctx) -> Result:
    config = ctx.config
    cfg = config.audit
    ctx.state.migrate("audit", MIGRATIONS)
    previous_listeners = _last(ctx.state, "listeners")
    found: list[checks.Finding] = []
    found += checks.ssh(cfg)
    found += checks.accounts(config)
    svc, listening = checks.services(
        None if previous_listeners is None else {tuple(x) for x in previous_listeners}
    )
    found += svc
    found += checks.writable_dirs(trees(config), cfg.max_dirs)
    found += checks.mounts()
    found += checks.own_files(config)
    found += checks.firewall(config)
    found = [f for f in found if not _ignored(f.id, cfg.ignore)]
    found.sort(key=lambda f: (ORDER[f.severity], f.id))
    before = set(_last(ctx.state, "findings") or [])
    new = [f for f in found if f.id not in before]
    if getattr(ctx.args, "json", False):
        ctx.say(json.dumps([{**f.as_dict(), "new": f.id not in before} for f in found], indent=1))
    else:
        for f in found:
            mark = " (new)" if f.id not in before else ""
            ctx.say(f"[{f.severity}]{mark} {f.what}\n    evidence: {f.evidence}\n    fix: {f.fix}")
        if not found:
            ctx.say("nothing to say")
    if not ctx.dry_run:
        with ctx.state:
            for name, value in (
                ("findings", [f.id for f in found]),
                ("listeners", sorted(list(x) for x in listening)),
            ):
                ctx.state.db.execute(
                    "INSERT OR REPLACE INTO audit_last(name, value) VALUES (?, ?)", (name, json.dumps(value))
                )
            if new:
                ctx.state.add_event("audit", source=NAME, findings=[f.as_dict() for f in new][:100])
    code = 0
    for f in found:
        code |= checks.SEVERITY_BITS[f.severity]
    counts = {s: sum(1 for f in found if f.severity == s) for s in ORDER}
    summary = f"{counts['high']} high, {counts['medium']} medium, {counts['low']} low; {len(new)} new"
    return Result(code, summary)


def status(config, state) -> dict:
    """For `nightwarden status`: the last audit's findings."""
    state.migrate("audit", MIGRATIONS)
    found = _last(state, "findings")
    if found is None:
        return {"last audit": "never (nightwarden audit)"}
    runs = [r for r in state.runs(0, job=NAME) if r["exit_code"] is not None]
    return {"last audit": f"{len(found)} finding(s)" + (f"; {runs[-1]['summary']}" if runs else "")}
