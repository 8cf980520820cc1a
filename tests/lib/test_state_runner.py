"""The state database and the job runner: migrations, corrupt files, locks, exit codes."""

from __future__ import annotations

import os
import sqlite3
import types

import pytest

from helpers import NIGHTWARDEN, load_config, run_cli, write_config
from nightwarden.lib.errors import EXIT_BUSY, EXIT_SOFTWARE, DataError, NightwardenError
from nightwarden.lib.lock import LockFile
from nightwarden.lib.runner import Result, run_job
from nightwarden.lib.state import SCHEMA_VERSION, State


def test_fresh_database_is_wal_and_current(tmp_path):
    state = State(tmp_path / "state.db")
    assert state.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert state.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(DataError, match="newer than this nightwarden understands"):
        State(path)


def test_corrupt_database_is_a_clear_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError, match=f"{path}: the state database is unusable"):
        State(path)


def test_block_rows_refresh_instead_of_duplicating(tmp_path):
    state = State(tmp_path / "state.db")
    with state:
        state.add_block("192.0.2.1", 4, False, "cli", "first", 100.0, 200.0)
        state.add_block("192.0.2.1", 4, False, "listener", "again", 150.0, 300.0)
    rows = state.active_blocks(now=0)
    assert len(rows) == 1 and rows[0].expires == 300.0 and rows[0].reason == "again"
    with state:
        state.add_block("192.0.2.1", 4, True, "cli", "escalated", 160.0, None)
    assert state.active_block("192.0.2.1").permanent


def job(run):
    return types.SimpleNamespace(NAME="testjob", run=run)


def test_runner_records_runs_and_maps_errors(tmp_path):
    cfg = load_config(write_config(tmp_path))
    from nightwarden.lib import logsetup

    logsetup.setup(0, cfg.log_dir, use_syslog=False, job="testjob")
    assert run_job(job(lambda ctx: Result(1, "found one")), cfg) == 1

    def bad(ctx):
        raise DataError("input.log:3: truncated line")

    assert run_job(job(bad), cfg) == 65

    def bug(ctx):
        return {}["missing"]

    assert run_job(job(bug), cfg) == EXIT_SOFTWARE
    runs = State(cfg.db_path).runs(job="testjob")
    assert [(r["exit_code"], r["summary"]) for r in runs] == [
        (1, "found one"),
        (65, "input.log:3: truncated line"),
        (70, "internal error: KeyError: 'missing'"),
    ]
    log = (tmp_path / "log" / "nightwarden.log").read_text()
    assert "testjob: internal error: KeyError" in log and "Traceback" in log


def test_busy_job_exits_75(tmp_path):
    cfg = load_config(write_config(tmp_path))
    holder = LockFile(cfg.run_dir / "testjob.lock", "job testjob").acquire()
    try:
        assert run_job(job(lambda ctx: Result()), cfg) == EXIT_BUSY
    finally:
        holder.release()
    assert run_job(job(lambda ctx: Result()), cfg) == 0


def test_lock_refuses_a_symlink(tmp_path):
    (tmp_path / "target").write_text("precious")
    (tmp_path / "x.lock").symlink_to(tmp_path / "target")
    with pytest.raises(NightwardenError, match="cannot open the lock file"):
        LockFile(tmp_path / "x.lock", "x").acquire()
    assert (tmp_path / "target").read_text() == "precious"


def test_a_state_database_with_flipped_header_bytes_is_one_clear_line(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "block", "203.0.113.50", check=0)
    db = box / "state" / "state.db"
    data = bytearray(db.read_bytes())
    for i in range(16, 100):  # the header past its magic: page size, versions, encoding
        data[i] ^= 0xA5
    db.write_bytes(bytes(data))
    for wal in (box / "state").glob("state.db-*"):
        wal.unlink()
    done = run_cli("--sandbox", str(box), "blocks")
    assert done.returncode == 65 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "move it aside" in done.stderr


@pytest.mark.slow
def test_a_state_database_locked_by_another_process_is_busy_not_a_traceback(tmp_path):
    import subprocess
    import sys

    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "block", "203.0.113.51", check=0)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(45)",
            str(box / "state" / "state.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = run_cli("--sandbox", str(box), "block", "203.0.113.52", timeout=90)
    finally:
        holder.kill()
    assert done.returncode == 75 and "Traceback" not in done.stderr, done.stderr
    assert "busy" in done.stderr


def test_a_full_disk_is_exit_74_not_a_traceback(tmp_path):
    """A real full file system: a tiny tmpfs in a private mount namespace."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private mount")
    box = tmp_path / "sb"
    box.mkdir()
    script = (
        f"mount -t tmpfs -o size=64k tmpfs '{box}' && "
        f"dd if=/dev/zero of='{box}/filler' bs=1k count=64 2>/dev/null; "
        f"'{NIGHTWARDEN}' --sandbox '{box}' block 203.0.113.53; echo rc=$?"
    )
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert "rc=74" in done.stdout or "rc=73" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
