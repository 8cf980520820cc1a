"""`nightwarden login-failures` end to end: sample logs in, real nftables blocks out (in a
private network namespace), the allow list winning, the alert mail's fields."""

from __future__ import annotations

import json
import mailbox
import subprocess
import time

import pytest

from helpers import Server, connects, journal_stub, need, run_cli, stamp, write_config


def brute_force(path, address: str, attempts: int, start: float, pid: int = 2000) -> None:
    with open(path, "a") as f:
        for i in range(attempts):
            t = stamp(start + i * 20)
            f.write(f"{t} web1 sshd[{pid + i}]: Invalid user admin{i} from {address} port {40000 + i}\n")
            f.write(
                f"{t} web1 sshd[{pid + i}]: Failed password for invalid user admin{i} from "
                f"{address} port {40000 + i} ssh2\n"
            )


@pytest.fixture
def job_config(tmp_path, netns):
    need("nft")
    log = tmp_path / "auth.log"
    log.write_text("")
    cfg = write_config(
        tmp_path,
        f"""backend = "nftables"

[logins]
sources = [{{path = "{log}", format = "rfc3164", services = ["sshd", "su", "sudo"]}}]
journal = "no"
block_ttl = 600

[mail]
transport = "mbox"
mbox = "{tmp_path}/mbox"
""",
    )
    return cfg, log


def nft_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def test_brute_force_is_blocked_in_the_kernel_and_alerted(job_config, tmp_path):
    cfg, log = job_config
    now = time.time()
    brute_force(log, "127.0.0.9", 4, now - 300)  # under the limit of 5
    brute_force(log, "127.0.0.12", 2, now - 7200, 3000)  # outside the interval
    server = Server()
    try:
        done = run_cli("--config", str(cfg), "login-failures", check=0)
        assert "0 blocked" in done.stdout
        brute_force(log, "127.0.0.9", 1, now - 60, 5000)  # the fifth attempt
        brute_force(log, "127.0.0.12", 1, now - 30, 6000)  # one more, but 2 are too old
        done = run_cli("--config", str(cfg), "login-failures", check=1)
        assert "1 blocked" in done.stdout
        assert "127.0.0.9" in nft_ruleset() and "127.0.0.12" not in nft_ruleset()
        assert not connects(server, "127.0.0.9") and connects(server, "127.0.0.12")
    finally:
        server.close()
    rows = json.loads(run_cli("--config", str(cfg), "blocks", "--json", check=0).stdout)
    assert [(r["address"], r["source"], r["reason"].split(" in ")[0]) for r in rows] == [
        ("127.0.0.9", "login-failures", "sshd: 5 login failures")
    ]
    (msg,) = list(mailbox.mbox(str(tmp_path / "mbox")))
    assert msg["Subject"].endswith("blocked 127.0.0.9 (sshd)")
    body = (
        msg.get_payload(0).get_payload(decode=True).decode()
        if msg.is_multipart()
        else msg.get_payload(decode=True).decode()
    )
    assert "Failures:     5" in body and "Interval:     3600 seconds" in body
    assert "Failed password for invalid user admin0 from 127.0.0.9" in body
    # nothing counted twice: a third run finds nothing new
    done = run_cli("--config", str(cfg), "login-failures", check=0)
    assert done.stdout.startswith("0 lines")


def test_the_allow_list_wins(job_config, tmp_path):
    cfg, log = job_config
    run_cli("--config", str(cfg), "allow", "127.0.0.20", "--comment", "office", check=0)
    brute_force(log, "127.0.0.20", 8, time.time() - 300)
    done = run_cli("--config", str(cfg), "login-failures", check=0)
    assert "0 blocked" in done.stdout and "1 allowed/ignored" in done.stdout
    rows = json.loads(run_cli("--config", str(cfg), "blocks", "--json", check=0).stdout)
    assert rows == []
    done = run_cli("--config", str(cfg), "grep", "127.0.0.20", check=0)
    assert "login_ignored" in done.stdout


def test_dry_run_changes_nothing(job_config):
    cfg, log = job_config
    brute_force(log, "127.0.0.30", 6, time.time() - 300)
    done = run_cli("--config", str(cfg), "login-failures", "--dry-run", check=0)
    assert "would block 127.0.0.30" in done.stdout
    assert "127.0.0.30" not in nft_ruleset()
    done = run_cli("--config", str(cfg), "login-failures", check=1)  # the cursor did not move
    assert "127.0.0.30" in nft_ruleset()


def test_an_unreadable_source_is_reported_and_the_others_still_run(tmp_path):
    good = tmp_path / "auth.log"
    brute_force(good, "203.0.113.50", 1, time.time() - 60)
    (tmp_path / "bad.log").symlink_to("/etc/hostname")
    cfg = write_config(
        tmp_path,
        f"""backend = "dryrun"

[logins]
sources = [{{path = "{tmp_path}/bad.log", services = ["sshd"]}},
           {{path = "{good}", services = ["sshd"]}}]
journal = "no"
""",
    )
    done = run_cli("--config", str(cfg), "login-failures", check=0)
    assert "1 source problem(s)" in done.stdout
    assert f"{tmp_path}/bad.log: is a symlink; refusing to follow it" in done.stderr


def test_a_bad_source_in_the_config_names_file_and_key(tmp_path):
    cfg = write_config(
        tmp_path,
        """
[logins]
sources = [{path = "/var/log/auth.log", format = "syslogish"}]
""",
    )
    done = run_cli("--config", str(cfg), "login-failures", check=78)
    assert f"{cfg}: key 'logins.sources[1].format' must be one of" in done.stderr


def test_daily_report_tables_from_the_logs_and_the_journal(tmp_path):
    now = time.time()
    log = tmp_path / "auth.log"
    brute_force(log, "203.0.113.60", 3, now - 3000)
    brute_force(log, "203.0.113.61", 1, now - 2000, 4000)
    with open(log, "a") as f:
        t = stamp(now - 1000)
        f.write(
            f"{t} web1 sshd[7001]: Accepted publickey for admin from 192.0.2.10 port 50022 ssh2: "
            "ED25519 SHA256:Zk3bq0f0nUXbqYFfCkM2VmJ1wqYqYpO4mT1m4H4l9w8\n"
        )
        f.write(f"{t} web1 su[7002]: FAILED SU (to root) alice on pts/1\n")
        f.write(f"{t} web1 sudo:    admin : TTY=pts/0 ; PWD=/home/admin ; USER=root ; COMMAND=/usr/bin/id\n")
        f.write(f"{t} web1 sshd[7003]: a wording no detector knows\n")
    entries = [
        {
            "__CURSOR": "c1",
            "__REALTIME_TIMESTAMP": str(int((now - 500) * 1e6)),
            "_HOSTNAME": "web1",
            "SYSLOG_IDENTIFIER": "sshd",
            "_COMM": "logger",
            "_PID": "99",
            "MESSAGE": "Failed password for root from 192.0.2.99 port 1 ssh2",
        }
    ]
    script = journal_stub(tmp_path, entries)
    cfg = write_config(
        tmp_path,
        f"""backend = "dryrun"

[logins]
sources = [{{path = "{log}", services = ["sshd", "su", "sudo"]}}]
journal = "yes"
journal_command = ["{script}"]
""",
    )
    run_cli("--config", str(cfg), "report", "--no-mail", check=0)
    data = json.loads(next((tmp_path / "reports").glob("report-*.json")).read_text())
    sec = {s["title"]: s for s in data["sections"]}
    assert [r[:3] for r in sec["Auth failures by address"]["rows"]] == [
        ["203.0.113.60", 3, "sshd (3)"],
        ["203.0.113.61", 1, "sshd (1)"],
    ]
    assert sec["Auth failures by service"]["rows"] == [["sshd", 4, 2]]
    assert ["admin0", "sshd", 2, 2] in sec["Auth failures by user"]["rows"]
    logins_rows = {(r[0], r[1], r[2]) for r in sec["Successful logins"]["rows"]}
    assert logins_rows == {("sshd", "admin", "192.0.2.10"), ("sudo", "admin", "(local)")}
    assert sec["Local authentication failures (su, sudo)"]["rows"] == [["su", "alice", 1]]
    sources = {r[0]: r for r in sec["Log sources"]["rows"]}
    assert sources[str(log)][2].startswith("spoofable") and sources[str(log)][5] == 1
    assert sources["journal"][2].startswith("trusted") and sources["journal"][6] == "1 forged entries"
    assert "192.0.2.99" in sec["Log sources"]["note"]
    text = next((tmp_path / "reports").glob("report-*.txt")).read_text()
    assert "Auth failures by address" in text and "203.0.113.60" in text


@pytest.mark.parametrize("intervals,blocked", [("", 1), ("intervals = {sshd = 600}", 0)])
def test_a_service_can_have_a_window_of_its_own(tmp_path, intervals, blocked):
    log = tmp_path / "auth.log"
    brute_force(log, "203.0.113.70", 6, time.time() - 1500)  # 25 minutes ago
    cfg = write_config(
        tmp_path,
        f"""backend = "dryrun"

[logins]
sources = [{{path = "{log}", services = ["sshd"]}}]
journal = "no"
{intervals}
""",
    )
    done = run_cli("--config", str(cfg), "login-failures", "--no-mail", check=blocked)
    assert f"{blocked} blocked" in done.stdout


def test_the_per_minute_job_loads_no_heavy_module(tmp_path):
    """It runs every minute: no pandas, matplotlib, pyarrow, python-iptables or APScheduler."""
    import sys

    log = tmp_path / "auth.log"
    brute_force(log, "203.0.113.80", 2, time.time() - 60)
    cfg = write_config(
        tmp_path,
        f"""backend = "dryrun"

[logins]
sources = [{{path = "{log}", services = ["sshd"]}}]
journal = "no"
""",
    )
    code = (
        "import sys; from nightwarden.lib.cli import main\n"
        f"rc = main(['--config', {str(cfg)!r}, '-q', 'login-failures'])\n"
        "heavy = [m for m in ('pandas', 'matplotlib', 'pyarrow', 'iptc', 'apscheduler')"
        " if m in sys.modules]\n"
        "print(rc, heavy, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "0 []", done.stderr
