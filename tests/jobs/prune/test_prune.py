"""Retention: what is older than its keeping time goes, in small transactions; what is younger,
still active, or another kind stays; a dry run counts and keeps everything."""

from __future__ import annotations

import json
import mailbox
import os
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from helpers import run_cli
from nightwarden.lib.state import State

DAY = 86400


def fill(box, now: float) -> None:
    db = State(box / "state" / "state.db")
    with db:
        for age in (200, 100, 10):  # days
            t = now - age * DAY
            db.db.execute(
                "INSERT INTO runs(job, started, ended, exit_code, summary, dry_run) "
                "VALUES ('expire', ?, ?, 0, '', 0)",
                (t, t + 1),
            )
            db.add_event("login_block", "192.0.2.1", when=t, source="sshd")
            db.add_event("scan", "192.0.2.2", port=22, proto="tcp", when=t, source="listener")
            db.add_block(f"192.0.2.{age}", 4, False, "cli", "old", t, t + 60)
            db.end_block(f"192.0.2.{age}", "expired", t + 60)
        db.add_block("192.0.2.98", 4, False, "cli", "long ago", now - 400 * DAY, now - 400 * DAY + 60)
        db.end_block("192.0.2.98", "expired", now - 400 * DAY + 60)
        db.add_block("192.0.2.99", 4, True, "cli", "still here", now - 400 * DAY, None)  # active: kept
    db.close()
    reports = box / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    for age in (120, 5):
        for name in (f"report-{age}.txt", f"report-{age}.png", f"integrity-{age}.json"):
            (reports / name).write_text("x")
            os.utime(reports / name, (now - age * DAY, now - age * DAY))
    (reports / "notes.txt").write_text("mine")
    os.utime(reports / "notes.txt", (now - 400 * DAY, now - 400 * DAY))
    (box / "state" / "mail").mkdir(parents=True, exist_ok=True)
    mbox = mailbox.mbox(box / "state" / "mail" / "mbox")
    for age in (100, 1):
        msg = EmailMessage()
        msg["Subject"] = f"{age} days old"
        msg["Date"] = format_datetime(datetime.fromtimestamp(now - age * DAY, UTC))
        msg.set_content("x")
        mbox.add(msg)
    mbox.close()


def test_prune_forgets_what_is_older_than_its_keeping_time(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "expire", check=0)  # the state database
    now = time.time()
    fill(box, now)
    dry = run_cli("--sandbox", str(box), "prune", "--dry-run", check=0).stdout
    assert "would prune 2 runs, 1 events, 1 blocks, 3 report files, 1 mails" in dry, dry
    out = run_cli("--sandbox", str(box), "prune", check=0).stdout
    assert "pruned 2 runs, 1 events, 1 blocks, 3 report files, 1 mails" in out, out
    db = State(box / "state" / "state.db")
    assert db.db.execute("SELECT COUNT(*) FROM runs WHERE started < ?", (now - 90 * DAY,)).fetchone()[0] == 0
    kinds = [(e["kind"], round((now - e["time"]) / DAY)) for e in db.events()]
    assert ("login_block", 200) not in kinds and ("login_block", 100) in kinds  # 180 days
    assert ("scan", 200) in kinds  # the scan history is kept a year
    assert db.active_block("192.0.2.99") is not None  # an active block is never pruned
    assert db.block_history("192.0.2.98") == [] and db.block_history("192.0.2.200")
    assert [e["kind"] for e in db.events(kind="prune")] == ["prune"]
    assert db.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # made incremental from the start
    db.close()
    left = sorted(p.name for p in (box / "reports").iterdir() if not p.name.startswith("report-2"))
    assert left == ["integrity-5.json", "notes.txt", "report-5.png", "report-5.txt"]
    assert [m["Subject"] for m in mailbox.mbox(box / "state" / "mail" / "mbox")] == ["1 days old"]


def test_an_old_quarantine_archive_goes_and_its_entries_say_so(tmp_path):
    box = tmp_path / "sb"
    (box / "etc").mkdir(parents=True)
    (box / "etc" / "nightwarden.toml").write_text("[quarantine]\narchive_max_size = 1\n")  # one per sweep
    (box / "tmp").mkdir()
    for name in ("old.php", "new.php"):
        shell = box / "tmp" / name
        shell.write_text("<?php ?>\n")
        if os.geteuid() == 0:
            os.chown(shell, 65534, 65534)  # files of root's are not examined
        run_cli("--sandbox", str(box), "quarantine", "--no-mail")
    archives = sorted((box / "state" / "quarantine").glob("*.tar"))
    assert [a.name for a in archives] == ["quarantine-0001.tar", "quarantine-0002.tar"]
    db = State(box / "state" / "state.db")
    with db:
        db.db.execute("UPDATE quarantine SET time = time - 400 * 86400 WHERE archive = 'quarantine-0001.tar'")
    db.close()
    out = run_cli("--sandbox", str(box), "prune", check=0).stdout
    assert "1 quarantine archives" in out, out
    assert [a.name for a in (box / "state" / "quarantine").glob("*.tar")] == ["quarantine-0002.tar"]
    rows = json.loads(run_cli("--sandbox", str(box), "quarantine", "list", "--json", check=0).stdout)
    old = next(r for r in rows if r["path"].endswith("old.php"))
    assert old["archive"] is None and "archive pruned" in old["action"]
    done = run_cli("--sandbox", str(box), "quarantine", "restore", str(old["id"]))
    assert done.returncode == 65 and "archive pruned" in done.stderr and "nothing to restore" in done.stderr
    run_cli("--sandbox", str(box), "report", "--no-mail", check=0)
    text = sorted((box / "reports").glob("report-*.txt"))[-1].read_text()
    assert "pruned" in text.split("\n\n")[0] and "quarantine archive" in text.split("\n\n")[0]
