"""What the processes job reported: a process (pid and start time, since pids are reused) is
reported once; its row goes when the process does."""

from __future__ import annotations

import json
import time

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS process_reports (
        pid INTEGER NOT NULL,
        started REAL NOT NULL,
        reasons TEXT NOT NULL,
        time REAL NOT NULL,
        PRIMARY KEY (pid, started)
    );
    """,
    # 2: resource, process-count and load alerts, by a key of what they were about
    """
    CREATE TABLE IF NOT EXISTS process_alerts (
        key TEXT PRIMARY KEY,
        time REAL NOT NULL
    );
    """,
    # 3: what the job learnt at its first run (the ports that listened then)
    """
    CREATE TABLE IF NOT EXISTS process_baseline (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        time REAL NOT NULL
    );
    """,
]


class ProcessStore:
    def __init__(self, state):
        self.state = state
        state.migrate("processes", MIGRATIONS)

    def reported(self) -> set[tuple[int, float]]:
        return {(r[0], r[1]) for r in self.state.db.execute("SELECT pid, started FROM process_reports")}

    def record(self, findings) -> None:
        now = time.time()
        self.state.db.executemany(
            "INSERT OR REPLACE INTO process_reports(pid, started, reasons, time) VALUES (?,?,?,?)",
            [(f.pid, f.started, "; ".join(f.reasons), now) for f in findings],
        )

    def forget_gone(self, alive: set[tuple[int, float]]) -> None:
        gone = self.reported() - alive
        self.state.db.executemany("DELETE FROM process_reports WHERE pid = ? AND started = ?", list(gone))

    def alerted(self) -> dict[str, float]:
        return {k: t for k, t in self.state.db.execute("SELECT key, time FROM process_alerts")}

    def set_alerted(self, keys: list[str]) -> None:
        now = time.time()
        self.state.db.executemany(
            "INSERT OR REPLACE INTO process_alerts(key, time) VALUES (?, ?)", [(k, now) for k in keys]
        )

    def forget_alerts(self, keep: set[str]) -> None:
        """Alerts about what is over no more (a process gone, a user back under the limit)."""
        gone = [k for k in self.alerted() if k not in keep and not k.startswith("load")]
        self.state.db.executemany("DELETE FROM process_alerts WHERE key = ?", [(k,) for k in gone])

    def listeners(self) -> set[tuple[str, int]] | None:
        """The (proto, port) pairs that listened when the baseline was taken; None before."""
        row = self.state.db.execute("SELECT value FROM process_baseline WHERE name = 'listeners'").fetchone()
        if row is None:
            return None
        try:
            return {(str(proto), int(port)) for proto, port in json.loads(row[0])}
        except (ValueError, TypeError):  # damaged: taken again, and said by the caller
            return None

    def set_listeners(self, pairs: set[tuple[str, int]]) -> None:
        self.state.db.execute(
            "INSERT OR REPLACE INTO process_baseline(name, value, time) VALUES ('listeners', ?, ?)",
            (json.dumps(sorted(pairs)), time.time()),
        )
