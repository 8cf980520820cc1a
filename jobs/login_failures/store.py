"""The login-failure job's table: attempts per service, address and minute, kept for the
longest counting window so that failures spread over several runs add up."""

from __future__ import annotations

MIGRATIONS = [
    # 1 (IF NOT EXISTS: databases made before the stores had their own migrations have it)
    """
    CREATE TABLE IF NOT EXISTS login_attempts (
        service TEXT NOT NULL,
        address TEXT NOT NULL,
        time REAL NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS login_attempts_key ON login_attempts(service, address, time);
    CREATE INDEX IF NOT EXISTS login_attempts_time ON login_attempts(time);
    """,
]


class AttemptStore:
    def __init__(self, state):
        self.state = state
        state.migrate("login_failures", MIGRATIONS)

    def since(self, since: float) -> list[tuple[str, str, float, int]]:
        """(service, address, time, count) rows from `since` on."""
        return [
            tuple(r)
            for r in self.state.db.execute(
                "SELECT service, address, time, count FROM login_attempts WHERE time >= ?", (since,)
            )
        ]

    def add(self, rows) -> None:
        """rows: (service, address, time, count)."""
        self.state.db.executemany(
            "INSERT INTO login_attempts(service, address, time, count) VALUES (?,?,?,?)", rows
        )

    def clear(self, service: str, address: str) -> None:
        """Forget an address's attempts at a service (it was just blocked)."""
        self.state.db.execute(
            "DELETE FROM login_attempts WHERE service = ? AND address = ?", (service, address)
        )

    def prune(self, before: float) -> None:
        self.state.db.execute("DELETE FROM login_attempts WHERE time < ?", (before,))
