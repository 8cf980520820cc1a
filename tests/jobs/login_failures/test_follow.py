"""The listener following the auth log (logins.follow = "listener"): blocks within a second,
shares cursors and a per-source lock with the cron job (a line is counted once whoever reads
it), and follows rotation by real logrotate. Real nftables in a private namespace; attackers
are 127.x addresses."""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import time

import pytest

from helpers import ListenerProcess, append, listener_config, need, nft_set, run_cli, stamp, wait_for
from nightwarden.lib.state import State

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.peer]
LIMIT = 5


def failures(address: str, count: int, pid: int = 3000) -> str:
    """`count` failed passwords from `address`, one connection each, stamped now."""
    t = stamp(time.time())
    return "".join(
        f"{t} web1 sshd[{pid + i}]: Failed password for root from {address} port {40000 + i} ssh2\n"
        for i in range(count)
    )


@pytest.fixture
def setup(tmp_path, netns):
    need("nft")
    log = tmp_path / "logs" / "auth.log"
    log.parent.mkdir()
    log.write_text("")
    cfg = listener_config(
        tmp_path,
        f"""[logins]
sources = [{{path = "{log}", format = "rfc3164", services = ["sshd"]}}]
journal = "no"
limits = {{sshd = {LIMIT}}}
block_ttl = 600

[mail]
transport = "mbox"
mbox = "{tmp_path}/mbox"
""",
    )
    made = []

    def start() -> ListenerProcess:
        run = ListenerProcess(cfg, tmp_path).start()
        made.append(run)
        return run

    yield cfg, log, start
    for run in made:
        if run.proc and run.proc.poll() is None:
            run.proc.kill()


def attempts(tmp_path, address: str) -> int:
    db = State(tmp_path / "state" / "state.db")
    try:
        rows = db.db.execute("SELECT SUM(count) FROM login_attempts WHERE address = ?", (address,)).fetchone()
        return rows[0] or 0
    finally:
        db.close()


def saved_offset(tmp_path, log) -> int | None:
    db = State(tmp_path / "state" / "state.db")
    try:
        cursor = db.get_cursor(f"logins:{log}")
    finally:
        db.close()
    return (cursor or {}).get("offset")


def test_the_listener_blocks_within_a_second_of_the_line_that_reached_the_limit(setup, tmp_path):
    cfg, log, start = setup
    run = start()
    append(log, failures("127.3.0.1", LIMIT - 1))
    time.sleep(0.5)
    assert "127.3.0.1" not in nft_set()
    written = time.monotonic()
    append(log, failures("127.3.0.1", 1, pid=4000))
    assert wait_for(lambda: "127.3.0.1" in nft_set(), 2.0)
    assert time.monotonic() - written < 1.0
    # the block row, its source and the alert with lfd's fields
    assert wait_for(
        lambda: bool(run_cli("--config", str(cfg), "grep", "127.3.0.1").stdout.count("login-failures"))
    )
    assert wait_for(lambda: (tmp_path / "mbox").exists() and len(mailbox.mbox(tmp_path / "mbox")) == 1)
    body = mailbox.mbox(tmp_path / "mbox")[0].get_payload()[0].get_payload()
    assert "IP:           127.3.0.1" in body and "Service:      sshd" in body and "Failed password" in body
    # the cron job leaves the source to the listener
    out = run_cli("--config", str(cfg), "login-failures", "--no-mail")
    assert "1 source(s) followed by the listener" in out.stdout
    assert run.stop() < 3.0


def test_a_burst_between_two_events_is_counted_whole(setup, tmp_path):
    cfg, log, start = setup
    run = start()
    os.kill(run.proc.pid, signal.SIGSTOP)  # the events pile up: one read finds them all
    burst = "".join(
        failures(f"127.4.{i // 250}.{i % 250 + 1}", LIMIT, pid=10000 + i * 10) for i in range(300)
    )
    append(log, burst)
    for i in range(200):  # and many small writes, each an event of its own
        append(log, failures(f"127.4.9.{i + 1}", 1, pid=20000 + i))
    os.kill(run.proc.pid, signal.SIGCONT)
    expected = {f"127.4.{i // 250}.{i % 250 + 1}" for i in range(300)}
    assert wait_for(lambda: expected <= nft_set(), 10.0)
    # blocks made together share a mail: a handful of mails for 300 blocks, each naming its own
    mbox = tmp_path / "mbox"

    def text() -> str:
        if not mbox.exists():
            return ""
        parts = [m.get_payload()[0] for m in mailbox.mbox(mbox)]
        return "".join(p.get_payload(decode=True).decode() for p in parts)

    assert wait_for(lambda: all(f"{a} " in text() for a in expected), 5.0)
    mails = mailbox.mbox(mbox)
    assert 1 <= len(mails) <= 10
    subjects = [m["Subject"] for m in mails]
    assert any("addresses (login failures)" in s for s in subjects), subjects


def test_killed_mid_stream_the_job_takes_over_then_the_listener_again_nothing_twice(setup, tmp_path):
    cfg, log, start = setup
    run = start()
    append(log, failures("127.5.0.1", 3) + failures("127.5.0.2", 4, pid=5000))
    size = log.stat().st_size
    assert wait_for(lambda: saved_offset(tmp_path, log) == size, 5.0)
    run.kill()  # -9: no goodbye, the lock goes with the process
    append(log, failures("127.5.0.1", 2, pid=6000))
    out = run_cli("--config", str(cfg), "login-failures", "--no-mail")
    assert out.returncode == 1, out.stdout + out.stderr  # it blocked
    blocked = nft_set()
    assert "127.5.0.1" in blocked  # 3 read by the listener + 2 by the job
    assert "127.5.0.2" not in blocked  # 4, not 8: the lines the listener read were not read again
    assert attempts(tmp_path, "127.5.0.2") == 4
    start()  # back: it reads on from the job's cursor
    append(log, failures("127.5.0.2", 1, pid=7000))
    assert wait_for(lambda: "127.5.0.2" in nft_set(), 3.0)


ROTATIONS = {
    "create": "create 0640 root root",
    "copytruncate": "copytruncate",
    "compress": "create 0640 root root\n    compress",
}


@pytest.mark.parametrize("how", ["create", "copytruncate", "compress", "twice"])
def test_rotation_while_following_loses_and_repeats_nothing(setup, tmp_path, how):
    need("logrotate")
    cfg, log, start = setup
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n    rotate 5\n    {ROTATIONS.get(how, ROTATIONS['create'])}\n}}\n")
    state = tmp_path / "logrotate.state"
    run = start()
    rotate = ["logrotate", "-f", "-s", str(state), str(conf)]
    # each address's lines straddle the rotation(s), all written while the listener is
    # stopped: it finds them only once everything has moved
    os.kill(run.proc.pid, signal.SIGSTOP)
    append(log, failures("127.6.0.1", 2) + failures("127.6.0.2", 2, pid=5000))
    subprocess.run(rotate, check=True)
    append(log, failures("127.6.0.1", 2, pid=6000) + failures("127.6.0.2", 2, pid=6500))
    if how == "twice":
        subprocess.run(rotate, check=True)
    append(log, failures("127.6.0.1", 1, pid=7000))
    os.kill(run.proc.pid, signal.SIGCONT)
    assert wait_for(lambda: "127.6.0.1" in nft_set(), 5.0)  # 2 + 2 + 1
    time.sleep(1.5)  # the attempts are written within a second
    assert "127.6.0.2" not in nft_set()
    assert attempts(tmp_path, "127.6.0.2") == 4  # exactly: nothing lost, nothing read twice


def test_dry_run_follows_but_blocks_and_writes_nothing(setup, tmp_path):
    cfg, log, start = setup
    run = ListenerProcess(cfg, tmp_path).start("--dry-run", "--no-mail")
    try:
        append(log, failures("127.7.0.1", LIMIT + 2))
        assert wait_for(lambda: "dry run: would block 127.7.0.1" in run.log(), 3.0)
        assert "127.7.0.1" not in nft_set()
        assert saved_offset(tmp_path, log) is None
        # a dry run keeps no lock: the job still reads the source
        out = run_cli("--config", str(cfg), "login-failures", "--no-mail", "--dry-run")
        assert "followed by the listener" not in out.stdout
    finally:
        run.stop()


FAKE_JOURNALCTL = """#!{python}
# journalctl -o json as far as the listener uses it: --after-cursor, --since, --follow
import json, sys, time
args = sys.argv[1:]
after = args[args.index("--after-cursor") + 1] if "--after-cursor" in args else None
seen, done = after is None, 0
while True:
    with open({data!r}) as f:
        lines = f.read().splitlines()
    for line in lines[done:]:
        if not seen:
            seen = json.loads(line)["__CURSOR"] == after
            continue
        print(line, flush=True)
    done = len(lines)
    if "--follow" not in args:
        break
    time.sleep(0.02)
"""


def test_the_journal_is_followed_from_its_cursor_with_its_trust_rules(tmp_path, netns):
    import json
    import sys

    need("nft")
    data = tmp_path / "journal.json"
    data.write_text("")
    script = tmp_path / "journalctl"
    script.write_text(FAKE_JOURNALCTL.format(python=sys.executable, data=str(data)))
    script.chmod(0o755)
    cfg = listener_config(
        tmp_path,
        f"""[logins]
sources = []
journal = "yes"
journal_command = ["{script}"]
limits = {{sshd = {LIMIT}}}
""",
    )
    serial = iter(range(1, 1000))

    def entries(address: str, count: int, forged: bool = False) -> None:
        with open(data, "a") as f:
            for _ in range(count):
                n = next(serial)
                e = {
                    "__CURSOR": f"s={n}",
                    "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)),
                    "SYSLOG_IDENTIFIER": "sshd",
                    "_COMM": "sshd",
                    "_PID": str(1000 + n),
                    "_UID": "1000" if forged else "0",
                    "_SYSTEMD_UNIT": "user@1000.service" if forged else "ssh.service",
                    "MESSAGE": f"Failed password for root from {address} port {n} ssh2",
                }
                f.write(json.dumps(e) + "\n")

    run = ListenerProcess(cfg, tmp_path).start("--no-mail")
    entries("127.8.0.9", 10, forged=True)  # a user's own "sshd": reported, never counted
    entries("127.8.0.1", 4)
    entries("127.8.0.2", 3)
    assert wait_for(lambda: (saved_cursor(tmp_path) or {}).get("cursor") == "s=17", 5.0)
    run.kill()
    entries("127.8.0.1", 1)
    entries("127.8.0.2", 1)
    again = ListenerProcess(cfg, tmp_path).start("--no-mail")
    try:
        assert wait_for(lambda: "127.8.0.1" in nft_set(), 5.0)  # 4 + 1
        time.sleep(1.0)
        blocked = nft_set()
        assert "127.8.0.2" not in blocked  # 3 + 1: the entries before the cursor not read twice
        assert "127.8.0.9" not in blocked
        assert "journal: forged entry" in again.log()
    finally:
        again.stop()


def saved_cursor(tmp_path) -> dict | None:
    db = State(tmp_path / "state" / "state.db")
    try:
        return db.get_cursor("logins:journal")
    finally:
        db.close()


def test_sighup_puts_new_limits_in_force_and_follow_cron_hands_the_sources_back(setup, tmp_path):
    cfg, log, start = setup
    run = start()
    cfg.write_text(cfg.read_text().replace(f"limits = {{sshd = {LIMIT}}}", "limits = {sshd = 2}"))
    run.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: run.log().count("following: logs") == 2, 5.0)
    append(log, failures("127.9.0.1", 2))
    assert wait_for(lambda: "127.9.0.1" in nft_set(), 3.0)
    out = run_cli("--config", str(cfg), "login-failures", "--no-mail")
    assert "followed by the listener" in out.stdout
    cfg.write_text(cfg.read_text().replace("[logins]\n", '[logins]\nfollow = "cron"\n'))
    run.proc.send_signal(signal.SIGHUP)
    assert wait_for(
        lambda: (
            "followed by the listener"
            not in run_cli("--config", str(cfg), "login-failures", "--no-mail").stdout
        ),
        5.0,
    )
    assert run.stop() < 3.0
