"""The command line: help, lazy imports, exit codes, jobs, the daily run in a sandbox."""

from __future__ import annotations

import json
import mailbox
import subprocess
import sys

import pytest

from helpers import NIGHTWARDEN, run_cli
from nightwarden.lib.errors import EXIT_CODES, EXIT_USAGE


def test_help_lists_commands_jobs_and_exit_codes():
    done = run_cli("--help", check=0)
    for word in ("daily", "block", "unblock", "allow", "deny", "blocks", "grep", "report"):
        assert word in done.stdout
    for code, _ in EXIT_CODES:
        assert f"  {code:>18}  " in done.stdout
    assert "integrity 1-15" in done.stdout and "4 changed" in done.stdout
    assert "login-failures 1" in done.stdout and "quarantine 1" in done.stdout


def test_help_imports_no_heavy_module():
    code = (
        "import sys; from nightwarden.lib.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pandas', 'iptc', 'sh', 'tabulate', 'sqlite3', 'apscheduler',"
        " 'cryptography', 'nightwarden.jobs.report.job') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip() == "[]"


def test_usage_error_exits_64():
    done = run_cli("block")
    assert done.returncode == EXIT_USAGE
    done = run_cli("nosuchcommand")
    assert done.returncode == EXIT_USAGE


def test_jobs_lists_schedules_with_day_names_only():
    done = run_cli("jobs", check=0)
    assert "report" in done.stdout and "0 6 * * *" in done.stdout
    from nightwarden.jobs import JOBS

    assert "listen" in done.stdout and "resident" in done.stdout
    for job in JOBS.values():
        if job.resident or job.schedule == "off":
            continue
        dow = job.schedule.split()[4]
        assert dow == "*" or not any(c.isdigit() for c in dow), job


@pytest.mark.slow
def test_daily_in_a_sandbox_writes_report_and_mail(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "block", "203.0.113.7", "--reason", "demo", check=0)
    done = run_cli("--sandbox", str(box), "daily", check=0)
    assert "report:" in done.stdout
    txt = list((box / "reports").glob("report-*.txt"))
    assert len(txt) == 1
    text = txt[0].read_text()
    assert "203.0.113.7" in text and "Job health" in text
    data = json.loads(txt[0].with_suffix(".json").read_text())
    made = [s for s in data["sections"] if s["title"] == "Blocks made in the period"][0]
    assert made["rows"][0][:3] == ["203.0.113.7", "temporary", "cli"]
    messages = list(mailbox.mbox(box / "state" / "mail" / "mbox"))
    assert len(messages) == 1 and ": 1 block" in messages[0]["Subject"], messages[0]["Subject"]
    html = [p for p in messages[0].walk() if p.get_content_type() == "text/html"][0]
    assert "<table>" in html.get_payload(decode=True).decode()
    # the run was recorded: a second report shows the first one's success
    run_cli("--sandbox", str(box), "report", "--no-mail", check=0)
    latest = sorted((box / "reports").glob("report-*.json"))[-1]
    rows = [s for s in json.loads(latest.read_text())["sections"] if s["title"] == "Job health"][0]["rows"]
    health = {r[0]: r for r in rows}
    assert health["report"][1:5] == [1, 0, health["report"][3], 0]  # its own run, going on, is not listed
    assert health["expire"][1:3] == [1, 0]
    assert health["purge"][1] == 0 and health["purge"][3] == "never"


def test_sandbox_never_touches_the_kernel(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "firewall", "start", check=0)
    status = run_cli("--sandbox", str(box), "firewall", "status", check=0).stdout
    assert "dry run" in status


def test_dry_run_changes_nothing(tmp_path):
    box = tmp_path / "sb"
    done = run_cli("--sandbox", str(box), "block", "--dry-run", "192.0.2.9", check=0)
    assert "would block 192.0.2.9" in done.stdout
    assert json.loads(run_cli("--sandbox", str(box), "blocks", "--json", check=0).stdout) == []


def test_console_script_is_installed():
    assert subprocess.run([NIGHTWARDEN, "--version"], capture_output=True, text=True).stdout.startswith(
        "nightwarden "
    )


@pytest.mark.parametrize(
    "argv, code",
    [
        (["jobs"], 0),
        (["runs"], 0),
        (["config", "check"], 0),
        (["config", "show"], 0),
        (["block", "192.0.2.10", "--ttl", "1h"], 0),
        (["blocks"], 0),
        (["blocks", "--all", "--json"], 0),
        (["grep", "192.0.2.10"], 0),
        (["unblock", "192.0.2.10"], 0),
        (["allow", "192.0.2.11"], 0),
        (["deny", "192.0.2.12", "--dry-run"], 0),
        (["firewall", "status"], 0),
        (["firewall", "status", "--json"], 0),
        (["firewall", "list"], 0),
        (["status"], 0),
        (["status", "--json"], 0),
        (["ignore", "192.0.2.13"], 0),
        (["mail", "flush"], 0),
        (["mail", "failed", "nightwarden-expire.service"], 0),
        (["schedule", "show"], 0),
        (["schedule", "cron"], 0),
        (["schedule", "systemd"], 0),
        (["schedule", "logrotate"], 0),
        (["install", "--dry-run", "--root", "ROOT"], 0),
        (["uninstall", "--dry-run", "--root", "ROOT"], 0),
    ],
)
def test_every_command_runs_in_a_sandbox_without_a_traceback(tmp_path, argv, code):
    argv = [str(tmp_path / "root") if a == "ROOT" else a for a in argv]
    done = run_cli("--sandbox", str(tmp_path / "sb"), *argv)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout.strip(), "a command that prints nothing"


@pytest.mark.slow
def test_a_reader_that_goes_away_is_not_a_failure_of_the_jobs(tmp_path):
    box = tmp_path / "sb"
    (box / "tmp").mkdir(parents=True)
    (box / "tmp" / "x.php").write_text("<?php ?>")
    done = subprocess.run(
        f"'{NIGHTWARDEN}' --sandbox '{box}' daily | head -1; echo \"${{PIPESTATUS[0]}}\"",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert int(done.stdout.splitlines()[-1]) < 64, done.stdout + done.stderr
    runs = json.loads(run_cli("--sandbox", str(box), "runs", "-n", "1", "--json", check=0).stdout)
    assert [r["job"] for r in runs if r["exit_code"] >= 64] == []
    assert "internal error" not in done.stderr


def test_files_are_made_with_explicit_modes_whatever_the_umask(tmp_path):
    box = tmp_path / "sb"
    root = tmp_path / "root"
    env_umask = "umask 000; "
    subprocess.run(
        f"{env_umask}'{NIGHTWARDEN}' --sandbox '{box}' block 203.0.113.40; "
        f"{env_umask}'{NIGHTWARDEN}' --sandbox '{box}' install --root '{root}'",
        shell=True,
        check=True,
        capture_output=True,
    )
    log = box / "log" / "nightwarden.log"
    assert log.stat().st_mode & 0o777 == 0o640
    for path in root.rglob("*"):
        assert not path.stat().st_mode & 0o002, f"{path} is writable by anyone"


def test_a_mistyped_command_is_a_usage_error_that_names_the_nearest_command():
    done = run_cli("blokcs")
    assert done.returncode == 64
    assert "did you mean 'blocks'?" in done.stderr
    far = run_cli("zzzzzz")
    assert far.returncode == 64 and "did you mean" not in far.stderr
    sub = run_cli("logs", "tset", "x")
    assert sub.returncode == 64 and "did you mean 'test'?" in sub.stderr


def test_status_says_the_firewall_blocks_jobs_listener_and_problems(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "firewall", "start", check=0)
    run_cli("--sandbox", str(box), "block", "192.0.2.20", "--ttl", "1h", check=0)
    run_cli("--sandbox", str(box), "deny", "198.51.100.0/24", check=0)
    run_cli("--sandbox", str(box), "expire", check=0)
    f = json.loads(run_cli("--sandbox", str(box), "status", "--json", check=0).stdout)
    assert f["firewall"]["on"] is True and f["firewall"]["kernel_entries"]["temp"] == 1
    assert f["blocks"] == {"active": 1, "temporary": 1, "permanent": 0, "by_source": {"cli": 1}}
    assert f["lists"]["deny"] == 1
    jobs = {j["job"]: j for j in f["jobs"]}
    assert jobs["expire"]["exit_code"] == 0 and jobs["expire"]["last_start"].endswith("Z")
    assert jobs["listen"]["running"] is False and jobs["listen"]["details"]["mode"] == "connect"
    assert "none yet" in jobs["integrity"]["details"]["database"]
    problems = " | ".join(f["problems"])
    assert "the listener is not running" in problems and "never ran: login-failures" in problems
    assert "expire" not in problems.split("never ran:")[1].split("(")[0]
    import os

    from nightwarden.lib.lock import LockFile

    lock = LockFile(box / "run" / "expire.lock", "job expire").acquire()  # as a running job does
    try:
        jobs = {
            j["job"]: j for j in json.loads(run_cli("--sandbox", str(box), "status", "--json").stdout)["jobs"]
        }
        assert jobs["expire"]["running"] and jobs["expire"]["pid"] == os.getpid()
        assert lock.holder() == os.getpid()
    finally:
        lock.release()
    assert lock.holder() is None
    run_cli("--sandbox", str(box), "firewall", "stop", check=0)
    text = run_cli("--sandbox", str(box), "status", check=0).stdout
    assert "firewall   " in text and "OFF (stopped at" in text and "the firewall is off" in text


def test_firewall_list_prints_the_kernel_entries(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "firewall", "start", check=0)
    run_cli("--sandbox", str(box), "block", "192.0.2.30", "--ttl", "2h", check=0)
    run_cli("--sandbox", str(box), "block", "192.0.2.31", "--permanent", check=0)
    rows = json.loads(run_cli("--sandbox", str(box), "firewall", "list", "--json", check=0).stdout)
    assert {(r["address"], r["kind"]) for r in rows} == {
        ("192.0.2.30", "temporary"),
        ("192.0.2.31", "permanent"),
    }
    temp = next(r for r in rows if r["kind"] == "temporary")
    assert 7000 < temp["expires_in"] <= 7200
    text = run_cli("--sandbox", str(box), "firewall", "list", check=0).stdout
    assert "192.0.2.30" in text and "in 1h59m" in text


def test_firewall_status_as_a_user_reads_what_it_may_and_says_the_rest(open_tmp):
    """Not root: the kernel's rules cannot be read; that is said, not 'changes need root'."""
    import os

    if os.geteuid() != 0:
        pytest.skip("runs the command as nobody (root needed to switch)")
    from helpers import write_config

    cfg = write_config(open_tmp, 'backend = "nftables"\n')
    (open_tmp / "etc").chmod(0o755)
    cfg.chmod(0o644)
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            NIGHTWARDEN,
            "--config",
            str(cfg),
            "firewall",
            "status",
        ],
        capture_output=True,
        text=True,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "cannot write the log file" not in done.stderr  # a look writes no log
    assert "need root" not in done.stdout + done.stderr.replace(
        "reading the kernel's firewall rules needs root", ""
    )
    assert "kernel: not inspected (reading the kernel's firewall rules needs root)" in done.stdout, (
        done.stdout,
        done.stderr,
    )


def test_the_daily_run_says_one_labelled_line_per_job(tmp_path):
    box = tmp_path / "sb"
    out = run_cli("--sandbox", str(box), "daily").stdout.splitlines()
    from nightwarden.jobs import daily_order

    assert [line.split(":")[0] for line in out] == daily_order(), out
    assert all(", exit " in line for line in out)


def test_json_everywhere_names_its_fields_and_gives_times_in_iso_utc(tmp_path):
    """Every command that prints a table or a record says it in JSON with --json: objects with
    named fields, times as ISO 8601 in UTC, durations in seconds."""
    import re

    box = tmp_path / "sb"
    (box / "tmp").mkdir(parents=True)
    shell = box / "tmp" / "x.php"
    shell.write_text("<?php ?>\n")
    import os

    if os.geteuid() == 0:
        os.chown(shell, 65534, 65534)
    run_cli("--sandbox", str(box), "block", "192.0.2.50", "--ttl", "1h", check=0)
    run_cli("--sandbox", str(box), "quarantine", "--no-mail")
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

    def js(*args):
        return json.loads(run_cli("--sandbox", str(box), *args, check=0).stdout)

    (g,) = js("grep", "192.0.2.50", "--json")["blocks"]
    assert iso.match(g["created"]) and g["kind"] == "temporary"
    (q,) = js("quarantine", "list", "--json")
    assert iso.match(q["time"]) and q["path"].endswith("/tmp/x.php") and q["mode"] == "0644"
    assert js("quarantine", "show", str(q["id"]), "--json")["sha256"] == q["sha256"]
    jobs = {j["job"]: j for j in js("jobs", "--json")}
    assert jobs["login-failures"]["schedule"] == "* * * * *" and "1" in jobs["login-failures"]["exit_codes"]
    runs = js("runs", "--json")
    assert all(iso.match(r["started"]) and isinstance(r["seconds"], float) for r in runs)
    assert all(iso.match(e["next"]) for e in js("schedule", "show", "--json"))
    conf = js("config", "show", "--json")
    assert conf["settings"]["logins"]["follow"] == "listener" and conf["paths"]["state_dir"].endswith(
        "/state"
    )
    fw = js("firewall", "list", "--json")
    assert fw == [{"address": "192.0.2.50", "kind": "temporary", "expires_in": fw[0]["expires_in"]}]


def test_firewall_start_with_many_blocks_shows_progress_on_a_terminal(tmp_path):
    import time as _time

    from nightwarden.lib.state import State

    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "firewall", "start", check=0)
    db = State(box / "state" / "state.db")
    now = _time.time()
    with db:
        for i in range(45_000):
            db.add_block(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 4, False, "cli", "", now, now + 3600)
    db.close()
    piped = run_cli("--sandbox", str(box), "firewall", "start", check=0)
    assert "entries loaded" not in piped.stderr.replace("firewall ready", "")
    run_cli("--sandbox", str(box), "firewall", "stop", check=0)
    command = f"{NIGHTWARDEN} --sandbox {box} firewall start"
    tty = subprocess.run(
        ["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=120
    )
    assert "firewall: 45,000 entries loaded" in tty.stdout, tty.stdout


def test_a_failed_timer_unit_is_mailed_as_cron_would(tmp_path):
    box = tmp_path / "sb"
    run_cli("--sandbox", str(box), "mail", "failed", "nightwarden-integrity.service", check=0)
    (msg,) = list(mailbox.mbox(box / "state" / "mail" / "mbox"))
    assert msg["Subject"].endswith(": integrity failed")
    body = msg.get_payload()[0].get_payload(decode=True).decode()
    assert (
        "journalctl -u nightwarden-integrity.service" in body and "nightwarden runs --job integrity" in body
    )
