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
