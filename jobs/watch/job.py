"""`nightwarden watch`: the watched paths compared with the last look (see the package's
docstring). Exit 1 when something changed; the first run takes the baseline."""

from __future__ import annotations

import fnmatch
import json
import re
import time
from dataclasses import dataclass

from nightwarden.lib.runner import Result

NAME = "watch"
MAX_LIST = 1 << 20  # bytes of csf.dirwatch read
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS watch_snapshot (
        path TEXT PRIMARY KEY,
        record TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS watch_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]


def add_arguments(parser) -> None:
    parser.add_argument("--no-mail", action="store_true", help="no alert mail")


@dataclass(frozen=True)
class Rule:
    path: str
    attrs: frozenset
    severity: str
    growing: bool


class WatchPolicy:
    """What integrity's scanner asks of a policy: the paths, the excludes, every attribute."""

    def __init__(self, paths: list, excludes: list[str]):
        from nightwarden.jobs.integrity.settings import ATTRIBUTES

        self.paths = paths
        pattern = "|".join(f"(?:{fnmatch.translate(p)})" for p in excludes)
        self._excluded = re.compile(pattern, re.DOTALL) if pattern else None
        self.rule = Rule("/", frozenset(ATTRIBUTES), "high", False)

    def excluded(self, path: str) -> bool:
        return bool(self._excluded and self._excluded.match(path))

    def rule_for(self, path: str) -> Rule:
        return self.rule


def watched(config, log) -> list:
    """The configured paths and those of the extra lists (csf.dirwatch), sandboxed."""
    from nightwarden.lib.fsutil import read_regular

    cfg = config.watch
    paths = list(cfg.paths)
    for name in cfg.extra_files if config.sandbox is None else []:
        try:
            text = read_regular(name, MAX_LIST, "watch list", follow=True).decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        except Exception as e:  # said; the other paths are still watched
            log.warning("%s: %s", name, getattr(e, "message", None) or e)
            continue
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("/"):
                log.warning("%s:%d: not an absolute path: %r", name, n, line[:80])
                continue
            paths.append(line)
    return [config.sandboxed(p) for p in dict.fromkeys(paths)]


class Store:
    def __init__(self, state):
        self.state = state
        state.migrate("watch", MIGRATIONS)

    def snapshot(self) -> dict[str, list] | None:
        if self.state.db.execute("SELECT 1 FROM watch_meta WHERE key = 'taken'").fetchone() is None:
            return None
        return {p: json.loads(r) for p, r in self.state.db.execute("SELECT path, record FROM watch_snapshot")}

    def save(self, records: dict[str, list], paths: list) -> None:
        with self.state:
            self.state.db.execute("DELETE FROM watch_snapshot")
            self.state.db.executemany(
                "INSERT INTO watch_snapshot(path, record) VALUES (?, ?)",
                [(p, json.dumps(r)) for p, r in records.items()],
            )
            self.state.db.execute(
                "INSERT OR REPLACE INTO watch_meta(key, value) VALUES ('taken', ?)",
                (json.dumps({"time": time.time(), "paths": [str(p) for p in paths]}),),
            )

    def paths(self) -> list[str]:
        row = self.state.db.execute("SELECT value FROM watch_meta WHERE key = 'taken'").fetchone()
        return json.loads(row[0])["paths"] if row else []


def lines(comparison) -> list[str]:
    """What changed, one line each: the path and, for a change, each attribute before -> after."""
    out = [f"added:   {p} ({what})" for p, _, what in comparison.added]
    out += [f"removed: {p} (was {what})" for p, _, what in comparison.removed]
    for c in comparison.changed:
        out.append(f"changed: {c.path}")
        out += [f"           {name}: {old} -> {new}" for name, old, new in c.attrs]
    return out


def run(ctx) -> Result:
    from nightwarden.jobs.integrity.compare import compare
    from nightwarden.jobs.integrity.scan import TreeScanner
    from nightwarden.lib.cli.output import printable

    cfg = ctx.config.watch
    paths = watched(ctx.config, ctx.log)
    store = Store(ctx.state)
    before = store.snapshot()
    policy = WatchPolicy(
        paths, [str(ctx.config.sandboxed(p)) if p.startswith("/") else p for p in cfg.excludes]
    )
    scan = TreeScanner(policy, workers=1, previous=before, progress=False).run()
    for path, error in sorted(scan.errors.items())[:50]:
        ctx.log.warning("%s: %s", printable(path), error)
    if before is None or sorted(map(str, paths)) != sorted(store.paths()):
        if not ctx.dry_run:
            store.save(scan.records, paths)
        what = "taken" if before is None else "taken again (the list of paths changed)"
        ctx.say(f"{len(scan.records)} entries under {len(paths)} watched paths: the baseline {what}")
        return Result(0, f"baseline of {len(scan.records)} entries")
    comparison = compare(before, scan.records, policy)
    changed = lines(comparison)
    for line in changed:
        ctx.say(printable(line))
    count = len(comparison.added) + len(comparison.removed) + len(comparison.changed)
    if count and not ctx.dry_run:
        store.save(scan.records, paths)  # said once: the next look compares with this one
        with ctx.state:
            ctx.state.add_event(
                "watch",
                source=NAME,
                added=[p for p, _, _ in comparison.added][:200],
                removed=[p for p, _, _ in comparison.removed][:200],
                changed=[c.path for c in comparison.changed][:200],
            )
        if cfg.alert and not getattr(ctx.args, "no_mail", False):
            ctx.mailer.alert(
                "watchalert", {"count": count, "changes": "\n".join(printable(x) for x in changed[:2000])}
            )
    summary = f"{len(scan.records)} entries looked at, {count} changed ({scan.files_hashed} hashed)"
    return Result(1 if count else 0, summary)


def status(config, state) -> dict:
    """For `nightwarden status`: how much is watched, since when."""
    from nightwarden.lib.cli.output import when

    store = Store(state)
    row = state.db.execute("SELECT value FROM watch_meta WHERE key = 'taken'").fetchone()
    if row is None:
        return {"watched": f"{len(config.watch.paths)} paths, no baseline yet (the first run takes it)"}
    count = state.db.execute("SELECT COUNT(*) FROM watch_snapshot").fetchone()[0]
    taken = json.loads(row[0])
    return {"watched": f"{len(store.paths())} paths, {count} entries, baseline of {when(taken['time'])}"}
