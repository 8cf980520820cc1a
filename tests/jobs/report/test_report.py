"""The daily report as a sysadmin reads it at 06:00: what needs attention first (integrity
changes with their attributes, quarantined files, new permanent blocks, failing jobs,
problems), a subject that says it, and job health that counts runs of the jobs only."""

from __future__ import annotations

import json
import mailbox
import os
import shutil
import time
from pathlib import Path

from helpers import run_cli

ENV = {"NIGHTWARDEN_INTEGRITY_PASSPHRASE": "test passphrase"}


def sandbox(tmp_path: Path) -> Path:
    box = tmp_path / "sb"
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/local/bin", "usr/local/sbin", "boot", "etc", "tmp"):
        (box / d).mkdir(parents=True, exist_ok=True)
    for name in ("ls", "cat"):
        shutil.copy(f"/bin/{name}", box / "usr" / "bin" / name)
    return box


def nw(box: Path, *args: str, check: int | None = None):
    return run_cli("--sandbox", str(box), *args, env=ENV, check=check)


def report(box: Path) -> tuple[str, dict, object]:
    nw(box, "report", check=0)
    txt = sorted((box / "reports").glob("report-*.txt"))[-1]
    messages = list(mailbox.mbox(box / "state" / "mail" / "mbox"))
    return txt.read_text(), json.loads(txt.with_suffix(".json").read_text()), messages[-1]


def test_the_summary_comes_first_and_names_the_paths_files_and_blocks(tmp_path):
    box = sandbox(tmp_path)
    nw(box, "firewall", "start", check=0)
    nw(box, "integrity", "keygen", check=0)
    nw(box, "integrity", "init", check=0)
    os.chmod(box / "usr" / "bin" / "cat", 0o4755)  # the setuid bit added
    nw(box, "integrity", "check", "--no-mail")
    shell = box / "tmp" / "upload.php"
    shell.write_text("<?php system($_GET['c']); ?>\n")
    if os.geteuid() == 0:
        os.chown(shell, 65534, 65534)  # files of root's are not examined
    nw(box, "quarantine", "--no-mail")
    nw(box, "block", "192.0.2.40", "--permanent", "--reason", "manual", check=0)
    text, data, mail = report(box)
    assert max(len(line) for line in text.splitlines()) <= 78  # the text part reads on a phone
    page = sorted((box / "reports").glob("report-*.html"))[-1].read_text()
    assert '<meta name="viewport"' in page and '<div class="scroll"><table>' in page
    assert text.startswith("Needs attention\n")
    first = text.split("\n\n")[0]
    assert "/usr/bin/cat: changed (mode" in first and "4755" in first
    assert "upload.php" in first and "quarantined" in first
    assert "192.0.2.40" in first and "permanent block" in first
    assert data["sections"][0]["title"] == "Needs attention"
    changes = next(s for s in data["sections"] if s["title"] == "Integrity changes")
    assert any(r[1].endswith("/usr/bin/cat") and "4755" in r[4] for r in changes["rows"])
    # the JSON gives the rows as records too, named by their columns
    assert any(r["path"].endswith("/usr/bin/cat") and "4755" in r["after"] for r in changes["records"])
    assert mail["Subject"].endswith(": 1 integrity change, 1 file quarantined, 1 block, 1 problem") or (
        ": 1 integrity change, 1 file quarantined, 1 block" in mail["Subject"]
    ), mail["Subject"]


def test_job_health_counts_runs_of_the_jobs_only_and_not_itself(tmp_path):
    box = sandbox(tmp_path)
    nw(box, "quarantine", "--no-mail")
    for _ in range(3):
        nw(box, "quarantine", "show", "99")  # a mistyped id: no run of the job
    nw(box, "quarantine", "list", check=0)
    nw(box, "quarantine", "--dry-run")
    nw(box, "integrity", "show")
    text, data, _ = report(box)
    health = {r[0]: r for r in next(s for s in data["sections"] if s["title"] == "Job health")["rows"]}
    assert health["quarantine"][1:3] == [1, 0], health["quarantine"]
    assert health["integrity"][1] == 0
    assert health["report"][4] != "running"


def test_a_job_that_should_have_run_and_did_not_is_a_problem(tmp_path):
    box = sandbox(tmp_path)
    nw(box, "expire", check=0)  # it has run before...
    from nightwarden.lib.state import State

    db = State(box / "state" / "state.db")
    db.db.execute("UPDATE runs SET started = started - 3 * 86400, ended = ended - 3 * 86400")
    db.db.commit()
    db.close()
    text, data, mail = report(box)  # ...but not in the last day: cron is broken
    problems = [r[0] for r in next(s for s in data["sections"] if s["title"] == "Problems")["rows"]]
    assert any(p.startswith("expire should have run at ") for p in problems), problems
    assert "problem" in mail["Subject"]
    assert time.time()  # the period ends now
