"""The fleet's tables on a host: the decisions applied here (key and sequence), so a
decision is applied once and an older one is never taken back in."""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE fleet_applied (
        key TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        expires REAL,
        applied REAL NOT NULL,
        by TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL DEFAULT ''
    );
    """
]
EXPORTED_EVENT = "fleet.exported_event"  # the last event id published as evidence
EXPORTED_BLOCK = "fleet.exported_block"  # the last block id published
SUMMARY_AT = "fleet.summary_at"  # when the last daily summary was published
KV_SEQ = "fleet.kv_seq"  # the last bucket sequence taken: a restart follows on from it


class FleetStore:
    def __init__(self, state):
        self.state = state
        state.migrate("fleet", MIGRATIONS)

    def known(self) -> dict[str, int]:
        """key -> the sequence of the last decision taken for it here."""
        return dict(self.state.db.execute("SELECT key, seq FROM fleet_applied").fetchall())

    def record(self, rows) -> None:
        """rows: (key, seq, action, target, expires, applied, by, outcome)."""
        self.state.db.executemany(
            "INSERT INTO fleet_applied(key, seq, action, target, expires, applied, by, outcome)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET seq=excluded.seq,"
            " action=excluded.action, target=excluded.target,"
            " expires=excluded.expires, applied=excluded.applied, by=excluded.by, outcome=excluded.outcome",
            rows,
        )

    def counts(self, now: float) -> dict[str, int]:
        rows = self.state.db.execute(
            "SELECT action, COUNT(*) FROM fleet_applied WHERE action != 'block' OR expires IS NULL"
            " OR expires > ? GROUP BY action",
            (now,),
        )
        return dict(rows.fetchall())

    def last(self) -> float | None:
        return self.state.db.execute("SELECT MAX(applied) FROM fleet_applied").fetchone()[0]

    def applied(self, limit: int = 1000) -> list:
        return self.state.db.execute(
            "SELECT * FROM fleet_applied ORDER BY applied DESC LIMIT ?", (limit,)
        ).fetchall()


def status(config, state) -> dict:
    """For `nightwarden status`: the fleet as this host sees it (its own database only)."""
    import time

    cfg = config.fleet
    if not cfg.servers:
        return {"fleet": "none (fleet.servers; `nightwarden fleet join`)"}
    out = {"broker": ", ".join(cfg.servers), "credentials": cfg.credentials or "none"}
    if cfg.signing_key:
        out["authority"] = f"signs with {cfg.signing_key}"
    try:
        store = FleetStore(state)
        counts = store.counts(time.time())
        last = store.last()
        from .evidence import KINDS

        marks = ",".join("?" * len(KINDS))
        waiting = state.db.execute(
            f"SELECT COUNT(*) FROM events WHERE id > ? AND kind IN ({marks})",
            (int(state.get_meta(EXPORTED_EVENT, "0") or 0), *KINDS),
        ).fetchone()[0]
    except Exception as e:  # a read-only look at a database that has no fleet tables yet
        return {**out, "decisions": f"unknown ({e})"}
    out["decisions"] = ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "none taken yet"
    out["last decision"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else "never"
    if cfg.publish:
        out["evidence waiting"] = str(waiting)
        if waiting > 1000:
            out["problem"] = (
                f"{waiting} events wait to be published: is the listener connected to the broker?"
            )
    return out
