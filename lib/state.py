"""The state database: one SQLite file in WAL mode, versioned, migrated forward.

The shared tables live here: blocks (every block ever made, with its expiry and how it
ended), events (scan hits, login failures, ...), runs (one row per job run), cursors (log
positions), meta. A job's own tables come with its store module, which migrates them
through `State.migrate` (their version is kept in meta). No SQL outside these modules.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, translate
from .fsutil import ensure_dir

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE blocks (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL,
        family INTEGER NOT NULL,
        permanent INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        expires REAL,
        active INTEGER NOT NULL DEFAULT 1,
        removed REAL,
        removed_reason TEXT
    );
    CREATE UNIQUE INDEX blocks_active ON blocks(address) WHERE active = 1;
    CREATE INDEX blocks_address ON blocks(address, created);
    CREATE INDEX blocks_expires ON blocks(expires) WHERE active = 1;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        address TEXT,
        port INTEGER,
        proto TEXT,
        source TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_time ON events(time);
    CREATE INDEX events_address ON events(address, time);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        exit_code INTEGER,
        summary TEXT NOT NULL DEFAULT '',
        dry_run INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_job ON runs(job, started);
    CREATE TABLE cursors (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2 and 3 made the quarantine's and the login-failure job's tables; those tables now
    # come with their jobs' stores (jobs/quarantine/store.py, jobs/login_failures/store.py)
    "",
    "",
]

SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class BlockRow:
    id: int
    address: str
    family: int
    permanent: bool
    source: str
    reason: str
    created: float
    expires: float | None
    active: bool
    removed: float | None
    removed_reason: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> BlockRow:
        return cls(
            row["id"],
            row["address"],
            row["family"],
            bool(row["permanent"]),
            row["source"],
            row["reason"],
            row["created"],
            row["expires"],
            bool(row["active"]),
            row["removed"],
            row["removed_reason"],
        )


class State:
    """A connection to the state database. Use as a context manager for a transaction."""

    def __init__(self, path: Path, dry_run: bool = False):
        """dry_run: nothing is ever written to the file: a database that does not exist yet
        is made in memory, an existing one is opened with query_only (a write is an error,
        not a change)."""
        self.path = path
        self.dry_run = dry_run
        try:
            if dry_run and not path.exists():
                self.db = sqlite3.connect(":memory:", isolation_level=None)
            else:
                if not dry_run:
                    ensure_dir(path.parent)
                self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            if not dry_run:
                # a new database gives freed pages back bit by bit (prune's vacuum_step); it
                # must be said before the first table is made, and is ignored after
                self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            if dry_run:
                self.db.execute("PRAGMA query_only=ON")
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            known = translate(e)  # locked (busy), disk full (I/O): not a corrupt database
            if known is not None and not isinstance(known, DataError):
                raise known from None
            raise DataError(
                f"{path}: the state database is unusable ({e}); move it aside and the next run "
                f"starts a new one (blocks come back with `nightwarden firewall start`)"
            ) from None
        if not dry_run:
            try:
                path.chmod(0o640)
            except OSError:
                pass

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DataError(
                f"{self.path}: schema version {version} is newer than this "
                f"nightwarden understands ({SCHEMA_VERSION}); upgrade nightwarden"
            )
        for number in range(version, SCHEMA_VERSION):
            self._step(MIGRATIONS[number], lambda n=number + 1: self.db.execute(f"PRAGMA user_version={n}"))

    def _step(self, migration: str, record) -> None:
        """One migration and `record()` (which notes its version), in one transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            record()
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def migrate(self, component: str, migrations: list[str]) -> None:
        """Bring a job's own tables to the newest version (kept in meta as schema.<component>).
        A dry run on a database that lacks them sees them empty (temporary tables)."""
        key = f"schema.{component}"
        version = int(self.get_meta(key, "0"))
        if self.dry_run and version < len(migrations):
            # the tables as empty temporary ones, gone with the connection; nothing on disk
            self.db.execute("PRAGMA query_only=OFF")
            for statement in "".join(migrations).split(";"):
                if "CREATE TABLE" in statement:
                    self.db.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE"))
            self.db.execute("PRAGMA query_only=ON")
            return
        if version > len(migrations):
            raise DataError(
                f"{self.path}: the {component} tables are newer ({version}) than this "
                f"nightwarden understands ({len(migrations)}); upgrade nightwarden"
            )
        for number in range(version, len(migrations)):
            self._step(migrations[number], lambda n=number + 1: self.set_meta(key, str(n)))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> State:
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    # -- blocks ---------------------------------------------------------------
    def active_blocks(self, now: float | None = None, include_expired: bool = False) -> list[BlockRow]:
        now = time.time() if now is None else now
        sql = "SELECT * FROM blocks WHERE active = 1"
        args: tuple = ()
        if not include_expired:
            sql += " AND (expires IS NULL OR expires > ?)"
            args = (now,)
        rows = self.db.execute(sql + " ORDER BY created", args).fetchall()
        return [BlockRow.from_row(r) for r in rows]

    def due_blocks(self, now: float) -> list[BlockRow]:
        """Active blocks whose time is up."""
        rows = self.db.execute(
            "SELECT * FROM blocks WHERE active = 1 AND expires IS NOT NULL AND expires <= ? ORDER BY expires",
            (now,),
        ).fetchall()
        return [BlockRow.from_row(r) for r in rows]

    def dynamic_blocks(self, now: float, created_before: float | None = None) -> list[tuple[str, str]]:
        """(address, source) of active temporary blocks, optionally only the older ones."""
        sql = (
            "SELECT address, source FROM blocks WHERE active = 1 AND permanent = 0"
            " AND (expires IS NULL OR expires > ?)"
        )
        args: list = [now]
        if created_before is not None:
            sql += " AND created <= ?"
            args.append(created_before)
        return [(r[0], r[1]) for r in self.db.execute(sql, args)]

    def active_block(self, address: str) -> BlockRow | None:
        row = self.db.execute("SELECT * FROM blocks WHERE active = 1 AND address = ?", (address,)).fetchone()
        return BlockRow.from_row(row) if row else None

    def add_block(
        self,
        address: str,
        family: int,
        permanent: bool,
        source: str,
        reason: str,
        created: float,
        expires: float | None,
    ) -> None:
        """Insert an active block, or refresh the active one for the same address."""
        current = self.active_block(address)
        if current is None:
            self.db.execute(
                "INSERT INTO blocks(address, family, permanent, source, reason, created, expires)"
                " VALUES (?,?,?,?,?,?,?)",
                (address, family, int(permanent), source, reason, created, expires),
            )
            return
        permanent = permanent or current.permanent
        if permanent or expires is None or current.expires is None:
            new_expires = None  # permanent, or "until purged", wins over a TTL
        else:
            new_expires = max(expires, current.expires)
        self.db.execute(
            "UPDATE blocks SET permanent = ?, expires = ?, reason = ?, source = ? WHERE id = ?",
            (int(permanent), new_expires, reason or current.reason, source, current.id),
        )

    def end_block(self, address: str, reason: str, when: float | None = None) -> bool:
        cur = self.db.execute(
            "UPDATE blocks SET active = 0, removed = ?, removed_reason = ? WHERE active = 1 AND address = ?",
            (time.time() if when is None else when, reason, address),
        )
        return cur.rowcount > 0

    def end_blocks(self, addresses: list[str], reason: str, when: float | None = None) -> int:
        """End many active blocks in one statement per chunk."""
        when = time.time() if when is None else when
        total = 0
        for i in range(0, len(addresses), 500):
            chunk = addresses[i : i + 500]
            marks = ",".join("?" * len(chunk))
            cur = self.db.execute(
                f"UPDATE blocks SET active = 0, removed = ?, removed_reason = ?"
                f" WHERE active = 1 AND address IN ({marks})",
                (when, reason, *chunk),
            )
            total += cur.rowcount
        return total

    def count_active(self, permanent: bool, exclude_sources: tuple = ()) -> int:
        marks = ",".join("?" * len(exclude_sources)) or "''"
        return self.db.execute(
            f"SELECT COUNT(*) FROM blocks WHERE active = 1 AND permanent = ? AND source NOT IN ({marks})",
            (int(permanent), *exclude_sources),
        ).fetchone()[0]

    def oldest_active(self, permanent: bool, limit: int, exclude_sources: tuple = ()) -> list[BlockRow]:
        marks = ",".join("?" * len(exclude_sources)) or "''"
        rows = self.db.execute(
            f"SELECT * FROM blocks WHERE active = 1 AND permanent = ?"
            f" AND source NOT IN ({marks}) ORDER BY created, id LIMIT ?",
            (int(permanent), *exclude_sources, limit),
        ).fetchall()
        return [BlockRow.from_row(r) for r in rows]

    def make_permanent(self, address: str, reason: str) -> None:
        self.db.execute(
            "UPDATE blocks SET permanent = 1, expires = NULL, reason = ? WHERE active = 1 AND address = ?",
            (reason, address),
        )

    def temp_block_counts(self, addresses: list[str], since: float) -> dict[str, int]:
        """How many temporary blocks each address got since `since` (active or ended)."""
        counts: dict[str, int] = {}
        for i in range(0, len(addresses), 500):
            chunk = addresses[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT address, COUNT(*) FROM blocks WHERE created >= ?"
                f" AND address IN ({marks}) GROUP BY address",
                (since, *chunk),
            )
            counts.update({a: n for a, n in rows})
        return counts

    def recent_addresses(self, since: float, family: int) -> list[str]:
        """Addresses (hosts) blocked since `since`, active or not."""
        rows = self.db.execute(
            "SELECT DISTINCT address FROM blocks WHERE created >= ?"
            " AND family = ? AND address NOT LIKE '%/%'",
            (since, family),
        )
        return [r[0] for r in rows]

    def all_blocks(self) -> list[BlockRow]:
        rows = self.db.execute("SELECT * FROM blocks ORDER BY created").fetchall()
        return [BlockRow.from_row(r) for r in rows]

    def block_counts(self) -> dict[str, tuple[int, bool]]:
        """address -> (how often it was ever blocked, whether a permanent block is active)."""
        rows = self.db.execute(
            "SELECT address, COUNT(*), MAX(permanent * active) FROM blocks GROUP BY address"
        )
        return {address: (count, bool(permanent)) for address, count, permanent in rows}

    def block_history(self, address: str) -> list[BlockRow]:
        rows = self.db.execute(
            "SELECT * FROM blocks WHERE address = ? ORDER BY created", (address,)
        ).fetchall()
        return [BlockRow.from_row(r) for r in rows]

    def blocks_since(self, since: float) -> list[BlockRow]:
        rows = self.db.execute(
            "SELECT * FROM blocks WHERE created >= ? OR removed >= ? ORDER BY created", (since, since)
        ).fetchall()
        return [BlockRow.from_row(r) for r in rows]

    # -- events ---------------------------------------------------------------
    def add_event(
        self,
        kind: str,
        address: str | None = None,
        port: int | None = None,
        proto: str | None = None,
        source: str = "",
        when: float | None = None,
        **detail,
    ) -> None:
        self.add_events([(time.time() if when is None else when, kind, address, port, proto, source, detail)])

    def add_events(self, rows) -> None:
        """Many events at once: (time, kind, address, port, proto, source, detail), the detail a
        dict or its JSON text already."""
        self.db.executemany(
            "INSERT INTO events(time, kind, address, port, proto, source, detail) VALUES (?,?,?,?,?,?,?)",
            [
                (*row[:6], row[6] if isinstance(row[6], str) else json.dumps(row[6], sort_keys=True))
                for row in rows
            ],
        )

    def scan_sources(self, since: float, until: float, top: int) -> tuple[list[sqlite3.Row], int]:
        """The scanning addresses with the most hits in the period, and how many there were."""
        rows = self.db.execute(
            "SELECT address, COUNT(*) AS hits, COUNT(DISTINCT port) AS ports,"
            " GROUP_CONCAT(DISTINCT proto) AS protos, MIN(time) AS first, MAX(time) AS last"
            " FROM events WHERE kind = 'scan' AND time >= ? AND time < ?"
            " GROUP BY address ORDER BY hits DESC LIMIT ?",
            (since, until, top),
        ).fetchall()
        total = self.db.execute(
            "SELECT COUNT(DISTINCT address) FROM events WHERE kind = 'scan' AND time >= ? AND time < ?",
            (since, until),
        ).fetchone()[0]
        return rows, total

    def count_events(self, kind: str, since: float, until: float) -> int:
        return self.db.execute(
            "SELECT COUNT(*) FROM events WHERE kind = ? AND time >= ? AND time < ?", (kind, since, until)
        ).fetchone()[0]

    def events(
        self,
        since: float = 0,
        until: float | None = None,
        address: str | None = None,
        kind: str | None = None,
    ) -> list[sqlite3.Row]:
        sql, args = "SELECT * FROM events WHERE time >= ?", [since]
        if until is not None:
            sql += " AND time < ?"
            args.append(until)
        if address is not None:
            sql += " AND address = ?"
            args.append(address)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        return self.db.execute(sql + " ORDER BY time", args).fetchall()

    # -- runs -----------------------------------------------------------------
    # what `prune` may delete: (table, time column, extra condition)
    PRUNABLE = {
        "runs": ("runs", "started", "ended IS NOT NULL"),
        "events": ("events", "time", "kind != 'scan'"),
        "scans": ("events", "time", "kind = 'scan'"),
        "blocks": ("blocks", "removed", "active = 0"),
    }

    def prune(self, what: str, before: float, batch: int = 5000) -> int:
        """Delete `what` (a PRUNABLE name) older than `before`, `batch` rows per transaction
        (a long delete would hold the database from the listener and the jobs). Rows deleted."""
        table, column, extra = self.PRUNABLE[what]
        sql = (
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {column} < ? AND {extra} LIMIT ?)"
        )
        total = 0
        while True:
            with self:
                done = self.db.execute(sql, (before, batch)).rowcount
            total += done
            if done < batch:
                return total

    def vacuum_step(self, pages: int = 2000) -> bool:
        """Give freed pages back to the file system a little at a time (incremental
        auto-vacuum, set on a database made since); False when the database does not have it."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return False
        self.db.execute(f"PRAGMA incremental_vacuum({int(pages)})")
        return True

    def event_counts(self, since: float, until: float) -> dict[str, int]:
        """Events per kind in [since, until)."""
        rows = self.db.execute(
            "SELECT kind, COUNT(*) FROM events WHERE time >= ? AND time < ? GROUP BY kind", (since, until)
        )
        return {kind: n for kind, n in rows}

    def job_names(self) -> list[str]:
        """Every job that has a run recorded."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT job FROM runs ORDER BY job")]

    def start_run(self, job: str, dry_run: bool) -> int:
        cur = self.db.execute(
            "INSERT INTO runs(job, started, dry_run) VALUES (?,?,?)", (job, time.time(), int(dry_run))
        )
        return cur.lastrowid

    def end_run(self, run_id: int, exit_code: int, summary: str) -> None:
        self.db.execute(
            "UPDATE runs SET ended = ?, exit_code = ?, summary = ? WHERE id = ?",
            (time.time(), exit_code, summary, run_id),
        )

    def runs(self, since: float = 0, job: str | None = None) -> list[sqlite3.Row]:
        sql, args = "SELECT * FROM runs WHERE started >= ?", [since]
        if job:
            sql += " AND job = ?"
            args.append(job)
        return self.db.execute(sql + " ORDER BY started", args).fetchall()

    def last_runs(self, job: str, count: int) -> list[sqlite3.Row]:
        """The job's last `count` runs, oldest first."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE job = ? ORDER BY started DESC LIMIT ?", (job, count)
        ).fetchall()
        return rows[::-1]

    def last_success(self, job: str) -> float | None:
        row = self.db.execute(
            "SELECT MAX(ended) FROM runs WHERE job = ? AND exit_code < 64 AND dry_run = 0", (job,)
        ).fetchone()
        return row[0]

    # -- cursors and meta -----------------------------------------------------
    def get_cursor(self, key: str) -> dict | None:
        row = self.db.execute("SELECT value FROM cursors WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_cursor(self, key: str, value: dict) -> None:
        self.db.execute(
            "INSERT INTO cursors(key, value, updated) VALUES (?,?,?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value,"
            " updated = excluded.updated",
            (key, json.dumps(value), time.time()),
        )

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
