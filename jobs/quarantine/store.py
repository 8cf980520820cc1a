"""The quarantine's tables: a manifest row per file handled, and each archive's committed
length (what a crashed run appended after it is cut off by the next one)."""

from __future__ import annotations

import time

MIGRATIONS = [
    # 1: the manifest and the archives' committed lengths (IF NOT EXISTS: databases made
    # before the stores had their own migrations have these tables already)
    """
    CREATE TABLE IF NOT EXISTS quarantine (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        path BLOB NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        action TEXT NOT NULL,
        archive TEXT,
        member BLOB,
        member_offset INTEGER,
        sha256 TEXT,
        size INTEGER,
        uid INTEGER,
        gid INTEGER,
        owner TEXT,
        mode INTEGER,
        mtime REAL,
        link_target BLOB,
        restored REAL
    );
    CREATE INDEX IF NOT EXISTS quarantine_time ON quarantine(time);
    CREATE TABLE IF NOT EXISTS archives (
        name TEXT PRIMARY KEY,
        committed INTEGER NOT NULL,
        created REAL NOT NULL
    );
    """,
]

COLUMNS = (
    "time",
    "path",
    "kind",
    "reason",
    "action",
    "archive",
    "member",
    "member_offset",
    "sha256",
    "size",
    "uid",
    "gid",
    "owner",
    "mode",
    "mtime",
    "link_target",
)


class QuarantineStore:
    """Queries over the quarantine's tables, on the shared state connection."""

    def __init__(self, state):
        self.state = state
        state.migrate("quarantine", MIGRATIONS)

    def reported(self) -> set[tuple[bytes, int, float]]:
        """(path, size, mtime) of what was only reported, so it is not reported again."""
        return {
            (bytes(r[0]), r[1], r[2])
            for r in self.state.db.execute(
                "SELECT path, size, mtime FROM quarantine WHERE action LIKE 'reported%'"
            )
        }

    def current_archive(self):
        return self.state.db.execute(
            "SELECT name, committed FROM archives ORDER BY created DESC, name DESC LIMIT 1"
        ).fetchone()

    def new_archive(self) -> str:
        """Name and register the next archive file (in a transaction of its own)."""
        number = 1 + self.state.db.execute("SELECT COUNT(*) FROM archives").fetchone()[0]
        name = f"quarantine-{number:04d}.tar"
        with self.state:
            self.state.db.execute(
                "INSERT INTO archives(name, committed, created) VALUES (?,?,?)", (name, 0, time.time())
            )
        return name

    def set_committed(self, archive: str, length: int) -> None:
        self.state.db.execute("UPDATE archives SET committed = ? WHERE name = ?", (length, archive))

    def add(self, **row) -> int:
        """One manifest row (inside the caller's transaction); its id."""
        cur = self.state.db.execute(
            f"INSERT INTO quarantine({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            [row[c] for c in COLUMNS],
        )
        return cur.lastrowid

    def set_action(self, ident: int, action: str) -> None:
        self.state.db.execute("UPDATE quarantine SET action = ? WHERE id = ?", (action, ident))

    def get(self, ident: int):
        return self.state.db.execute("SELECT * FROM quarantine WHERE id = ?", (ident,)).fetchone()

    def all(self) -> list:
        return self.state.db.execute("SELECT * FROM quarantine ORDER BY id").fetchall()

    def between(self, since: float, until: float) -> list:
        return self.state.db.execute(
            "SELECT * FROM quarantine WHERE time >= ? AND time < ? ORDER BY id", (since, until)
        ).fetchall()

    def old_archives(self, before: float) -> list[str]:
        """Archives, the current one aside, whose every entry is older than `before` (and
        that still have their file: a pruned archive's entries name none)."""
        current = self.current_archive()
        rows = self.state.db.execute(
            "SELECT a.name, MAX(q.time) AS newest FROM archives a JOIN quarantine q ON q.archive = a.name "
            "GROUP BY a.name HAVING newest < ?",
            (before,),
        ).fetchall()
        return [r["name"] for r in rows if current is None or r["name"] != current["name"]]

    def archive_pruned(self, name: str, when: float) -> int:
        """The archive's file is gone: its entries keep their record, without an archive."""
        stamp = time.strftime("%Y-%m-%d", time.localtime(when))
        with self.state:
            return self.state.db.execute(
                "UPDATE quarantine SET action = action || ?, archive = NULL, member = NULL WHERE archive = ?",
                (f"; archive pruned {stamp}", name),
            ).rowcount

    def mark_restored(self, ident: int) -> None:
        with self.state:
            self.state.db.execute("UPDATE quarantine SET restored = ? WHERE id = ?", (time.time(), ident))
