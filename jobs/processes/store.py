"""What the processes job reported: a process (pid and start time, since pids are reused) is
reported once; its row goes when the process does."""

from __future__ import annotations

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
