"""Quarantine on arrival (quarantine.follow = true): the listener's inotify watch sweeps what
arrives within a second, with the job's own checks and archive, and waits for the scheduled
sweep's lock."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ListenerProcess, listener_config, wait_for, write_config
from nightwarden.lib.lock import LockFile

pytestmark = [pytest.mark.root, pytest.mark.netns]

NOBODY = 65534
ELF = Path("/bin/true").read_bytes()


def watch_config(tmp_path) -> tuple[Path, Path]:
    """(the watched directory, anyone may write it; a listener config following only it)."""
    watched = tmp_path / "watch"
    watched.mkdir()
    watched.chmod(0o1777)
    cfg = listener_config(
        tmp_path,
        f"""[logins]
follow = "cron"

[quarantine]
dirs = ["{watched}"]
follow = true
""",
        backend="dryrun",
    )
    return watched, cfg


@pytest.fixture
def following(tmp_path, netns):
    watched, cfg = watch_config(tmp_path)
    run = ListenerProcess(cfg, tmp_path).start("--no-mail")
    yield watched, cfg
    if run.proc.poll() is None:
        run.stop()


def drop(path: Path, data: bytes, mode: int = 0o644) -> float:
    """A file written by nobody, as an attacker would; when it was closed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchown(fd, NOBODY, NOBODY)
    os.write(fd, data)
    os.close(fd)
    return time.monotonic()


def archived(tmp_path: Path) -> str:
    tars = sorted((tmp_path / "state" / "quarantine").glob("*.tar"))
    return "".join(
        subprocess.run(["tar", "-tf", str(t)], capture_output=True, text=True).stdout for t in tars
    )


def test_a_dropped_file_is_quarantined_within_a_second(following, tmp_path):
    watched, _ = following
    closed = drop(watched / "upload.php", b"<?php system($_GET['c']); ?>\n")
    assert wait_for(lambda: not (watched / "upload.php").exists(), 3.0)
    assert time.monotonic() - closed < 1.0
    assert wait_for(lambda: "upload.php" in archived(tmp_path), 2.0)
    # a new directory tree made at once, a binary at its bottom: the new directories are
    # watched as they come, and what was written before the watch is swept with its top
    os.makedirs(watched / ".x" / "a" / "b")
    drop(watched / ".x" / "a" / "b" / "kworker", ELF, 0o755)
    assert wait_for(lambda: not (watched / ".x" / "a" / "b" / "kworker").exists(), 3.0)
    # a harmless name first, renamed to a script's later: the rename is an event too
    drop(watched / "page.txt", b"<?php eval($_POST['x']); ?>\n")
    time.sleep(0.5)
    assert (watched / "page.txt").exists()
    os.rename(watched / "page.txt", watched / "page.php")
    assert wait_for(lambda: not (watched / "page.php").exists(), 3.0)
    # a harmless file stays
    drop(watched / "readme.txt", b"hello\n")
    time.sleep(1.0)
    assert (watched / "readme.txt").exists()


def test_what_arrives_during_the_scheduled_sweep_waits_for_its_lock(following, tmp_path):
    watched, cfg = following
    lock = LockFile(tmp_path / "run" / "quarantine.lock", "job quarantine").acquire()
    try:
        drop(watched / "x.sh", b"#!/bin/sh\nrm -rf /\n", 0o755)
        time.sleep(1.0)
        assert (watched / "x.sh").exists()  # the job holds the lock: no second sweep beside it
    finally:
        lock.release()
    assert wait_for(lambda: not (watched / "x.sh").exists(), 3.0)


def test_a_dry_run_listener_finds_and_says_but_touches_nothing(tmp_path, netns):
    watched, cfg = watch_config(tmp_path)
    run = ListenerProcess(cfg, tmp_path).start("--dry-run", "--no-mail")
    try:
        drop(watched / "upload.php", b"<?php system($_GET['c']); ?>\n")
        assert wait_for(lambda: "quarantine on arrival: " in run.log() and "1 suspicious" in run.log(), 3.0)
        assert (watched / "upload.php").exists()
        assert not list((tmp_path / "state" / "quarantine").glob("*.tar"))
    finally:
        run.stop()


def test_an_overflowing_inotify_queue_makes_the_next_sweep_a_whole_one(tmp_path):
    """The kernel's queue overflows at fs.inotify.max_queued_events, a host-wide setting a test
    must not lower: the overflow event is handed in as the kernel would send it."""
    from helpers import load_config
    from nightwarden.jobs.quarantine.follow import QuarantineFollower
    from nightwarden.lib import inotify

    watched = tmp_path / "watch"
    watched.mkdir()
    cfg = load_config(write_config(tmp_path, f'\n[quarantine]\ndirs = ["{watched}"]\nfollow = true\n'))
    # a file no event was seen for (it arrived while the queue was full)
    drop(watched / "deep" / "er" / "miner", ELF, 0o755)
    follower = QuarantineFollower(cfg, mail=False)

    class Overflowed:
        def read(self):
            return [inotify.Event(-1, inotify.IN_Q_OVERFLOW, 0, b"")]

    follower.ino = Overflowed()
    follower._events()
    assert follower.everything and not follower.pending
    assert follower._sweep()
    assert not (watched / "deep" / "er" / "miner").exists()
    assert "miner" in archived(tmp_path)
