"""The processes job against real processes run as nobody: a deleted executable, one run from a
world-writable directory, names that pretend; reported once, again after a restart; csf.pignore
lines of every form; the alert with lfd's fields."""

from __future__ import annotations

import json
import mailbox
import os
import shutil
import subprocess
import time

import pytest

from helpers import run_cli, write_config

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def need_root():
    if os.geteuid() != 0:
        pytest.skip("runs processes as nobody (root needed)")


def as_nobody(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv])


def findings(cfg, *args: str) -> list[dict]:
    return json.loads(run_cli("--config", str(cfg), "processes", "--json", *args).stdout)["suspicious"]


def test_deleted_writable_and_pretending_processes_are_reported_once(tmp_path, open_tmp):
    cfg = write_config(
        tmp_path, f'\n[processes]\nwritable_dirs = ["{open_tmp}"]\n[mail]\nmbox = "{tmp_path}/mbox"\n'
    )
    dropped = open_tmp / "miner"
    shutil.copy("/bin/sleep", dropped)
    dropped.chmod(0o755)
    procs = [as_nobody(str(dropped), "60")]
    time.sleep(0.3)
    dropped.unlink()  # deleted while it runs
    procs.append(as_nobody("bash", "-c", 'exec -a "[kworker/0:1]" /bin/sleep 61'))
    fake = open_tmp / "x"
    shutil.copy("/bin/sleep", fake)
    fake.chmod(0o755)
    procs.append(as_nobody("bash", "-c", f"exec -a /usr/sbin/sshd {fake} 62"))
    calm = as_nobody("/bin/sleep", "63")  # nothing wrong with it
    procs.append(calm)
    try:
        time.sleep(0.5)
        done = run_cli("--config", str(cfg), "processes", "--json")
        assert done.returncode == 1, done.stderr  # new findings
        found = {f["pid"]: f for f in json.loads(done.stdout)["suspicious"]}
        deleted = found[procs[0].pid]
        assert any("was deleted" in r for r in deleted["reasons"]) and any(
            "anyone can write" in r for r in deleted["reasons"]
        )
        assert deleted["user"] == "nobody" and deleted["exe"] == str(dropped)
        assert any("kernel thread's name" in r for r in found[procs[1].pid]["reasons"])
        assert any("argv[0] says /usr/sbin/sshd" in r for r in found[procs[2].pid]["reasons"])
        assert calm.pid not in found
        assert "maps" in deleted and any("libc" in m for m in deleted["maps"])  # lfd's mapped files
        again = run_cli("--config", str(cfg), "processes", "--json")
        assert again.returncode == 0 and json.loads(again.stdout)["suspicious"] == []  # once
        assert {f["pid"] for f in findings(cfg, "--report-only")} >= {p.pid for p in procs[:3]}
        (msg,) = list(mailbox.mbox(tmp_path / "mbox"))
        body = msg.get_payload()[0].get_payload(decode=True).decode()
        assert "Suspicious process (3)" in msg["Subject"]
        assert (
            f"PID:          {procs[0].pid}" in body
            and "Mapped files:" in body
            and "User:         nobody" in body
        )
        # the same program started again is a new process: reported again
        procs[1].kill()
        procs[1].wait()
        procs[1] = as_nobody("bash", "-c", 'exec -a "[kworker/0:1]" /bin/sleep 64')
        time.sleep(0.5)
        assert [f["pid"] for f in findings(cfg)] == [procs[1].pid]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_pignore_lines_of_every_form_and_a_bad_line_said(tmp_path, open_tmp):
    fake = open_tmp / "tool"
    shutil.copy("/bin/sleep", fake)
    fake.chmod(0o755)
    cfg = write_config(tmp_path, f'\n[processes]\nwritable_dirs = ["{open_tmp}"]\nalert = false\n')
    pignore = tmp_path / "etc" / "nightwarden.pignore"
    procs = [as_nobody(str(fake), "70"), as_nobody(str(fake), "71"), as_nobody(str(fake), "72")]
    try:
        time.sleep(0.5)
        assert {p.pid for p in procs} <= {f["pid"] for f in findings(cfg, "--report-only")}
        for lines in (
            [f"exe:{fake}"],
            ["user:nobody"],
            [f"cmd:{fake} 70", f"cmd:{fake} 71", f"cmd:{fake} 72"],
            [f"pexe:{open_tmp}/t.*"],
            [r"pcmd:.*tool 7[0-9]"],
        ):
            pignore.write_text("\n".join(["# ours", *lines]) + "\n")
            assert not {p.pid for p in procs} & {f["pid"] for f in findings(cfg, "--report-only")}, lines
        pignore.write_text("exe:\nbogus:thing\npcmd:(\n")
        done = run_cli("--config", str(cfg), "processes", "--report-only")
        assert (
            f"{pignore}:1" in done.stderr and f"{pignore}:2" in done.stderr and f"{pignore}:3" in done.stderr
        )
        assert "Traceback" not in done.stderr
    finally:
        for p in procs:
            p.kill()
            p.wait()


HOG = "import time; x = bytearray(80 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(60)"


def test_resource_use_process_counts_and_load_are_alerted_once_while_they_last(tmp_path):
    import sys

    load = tmp_path / "loadavg"
    load.write_text("0.10 0.20 0.30 1/100 1234\n")
    cfg = write_config(
        tmp_path,
        f"\n[processes]\nuser_rss = 40\nuser_mem = 0\nuser_proc = 3\nload_level = 2.0\nload_avg = 5\n"
        f'load_source = "{load}"\n[mail]\nmbox = "{tmp_path}/mbox"\n',
    )
    procs = [as_nobody(sys.executable, "-c", HOG)] + [as_nobody("/bin/sleep", "60") for _ in range(3)]
    try:
        time.sleep(1.5)  # the hog has touched its memory
        out = run_cli("--config", str(cfg), "processes").stdout
        assert f"nobody pid {procs[0].pid}" in out and "resident memory (MB)" in out
        assert "nobody: 4 processes, over 3" in out
        assert "load average" not in out
        subjects = [m["Subject"] for m in mailbox.mbox(tmp_path / "mbox")]
        assert any("Excessive resource usage (1)" in s for s in subjects)
        assert any("Excessive processes (1 users)" in s for s in subjects)
        load.write_text("3.10 2.50 1.00 1/100 1234\n")
        out = run_cli("--config", str(cfg), "processes").stdout
        assert "load average (5 min) 2.50 over 2" in out
        assert "resident memory" not in out and "over 3" not in out  # said once while it lasts
        body = [m for m in mailbox.mbox(tmp_path / "mbox") if "High load average" in m["Subject"]][0]
        text = body.get_payload()[0].get_payload(decode=True).decode()
        assert "3.10 2.50 1.00" in text and "by CPU:" in text and "by memory:" in text
        again = run_cli("--config", str(cfg), "processes").stdout
        assert "load average" not in again  # quiet for load_skip
        for p in procs[1:]:
            p.kill()
            p.wait()
        run_cli("--config", str(cfg), "processes")  # back under the limit: forgotten
        procs[1:] = [as_nobody("/bin/sleep", "60") for _ in range(3)]
        time.sleep(0.3)
        assert "nobody: 4 processes, over 3" in run_cli("--config", str(cfg), "processes").stdout
    finally:
        for p in procs:
            p.kill()
            p.wait()


LISTEN = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
    "s.listen(); time.sleep(60)"
)
CALL = (
    "import socket, sys, time; s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); time.sleep(60)"
)


def test_a_port_nobody_expected_is_reported_and_learning_makes_it_expected(tmp_path, netns):
    import sys

    cfg = write_config(tmp_path, '\n[processes]\nlisten_allowed = ["4243/tcp"]\nalert = false\n')
    first = run_cli("--config", str(cfg), "processes")
    assert "listening port(s) taken as expected" in first.stdout  # the baseline: nothing listened
    procs = [as_nobody(sys.executable, "-c", LISTEN, "4242"), as_nobody(sys.executable, "-c", LISTEN, "4243")]
    try:
        time.sleep(0.8)
        found = {f["pid"]: f for f in findings(cfg)}
        assert any("listens on tcp port 4242 on 127.0.0.1" in r for r in found[procs[0].pid]["reasons"])
        assert procs[1].pid not in found  # listen_allowed
        assert findings(cfg) == []  # once
        learnt = run_cli("--config", str(cfg), "processes", "--learn-listeners")
        assert "2 listening port(s) taken as expected" in learnt.stdout
        assert not {f["pid"] for f in findings(cfg, "--report-only")} & {p.pid for p in procs}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_an_interpreter_talking_to_a_watched_port_is_reported_and_other_ports_are_not(tmp_path, netns):
    import socket
    import sys

    cfg = write_config(tmp_path, "\n[processes]\nalert = false\n")
    servers = []
    for port in (6667, 8080):  # IRC (watched), a web port (not)
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.listen()
        servers.append(s)
    run_cli("--config", str(cfg), "processes")  # the baseline takes both listeners
    procs = [
        as_nobody(sys.executable, "-c", CALL, "6667"),
        as_nobody(sys.executable, "-c", CALL, "8080"),
        as_nobody("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/6667; exec sleep 60"),
    ]
    try:
        time.sleep(0.8)
        found = {f["pid"]: f for f in findings(cfg)}
        assert any(
            "an interpreter, is connected to 127.0.0.1 port 6667" in r for r in found[procs[0].pid]["reasons"]
        )
        assert procs[1].pid not in found
        # `exec sleep`: sleep inherited bash's socket, and sleep is no interpreter
        assert procs[2].pid not in found
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for s in servers:
            s.close()


def test_user_kill_kills_a_users_hog_never_roots_and_dry_run_kills_nothing(tmp_path):
    import sys

    cfg = write_config(
        tmp_path,
        "\n[processes]\nuser_rss = 40\nuser_mem = 0\nuser_time = 0\nuser_kill = true\nall_users = true\n"
        f'[mail]\nmbox = "{tmp_path}/mbox"\n',
    )
    hog = as_nobody(sys.executable, "-c", HOG)
    roots = subprocess.Popen([sys.executable, "-c", HOG])  # root's: never killed
    try:
        time.sleep(1.5)
        dry = run_cli("--config", str(cfg), "processes", "--dry-run")
        assert f"would kill nobody pid {hog.pid}" in dry.stdout
        assert hog.poll() is None  # --dry-run kills nothing
        done = run_cli("--config", str(cfg), "processes")
        assert f"killed nobody pid {hog.pid}" in done.stdout
        assert hog.wait(timeout=5) == -9
        assert roots.poll() is None and f"pid {roots.pid}" in done.stdout  # alerted, not killed
        subjects = [m["Subject"] for m in mailbox.mbox(tmp_path / "mbox")]
        assert any("Process killed for excessive resource usage (1)" in s for s in subjects), subjects
    finally:
        for p in (hog, roots):
            p.kill()
            p.wait()


def test_the_daily_report_puts_a_suspicious_process_first(tmp_path, open_tmp):
    cfg = write_config(
        tmp_path,
        f'\n[processes]\nwritable_dirs = ["{open_tmp}"]\nalert = false\n'
        '[logins]\nsources = []\njournal = "no"\n',
    )
    dropped = open_tmp / "kswapd"
    shutil.copy("/bin/sleep", dropped)
    dropped.chmod(0o755)
    proc = as_nobody(str(dropped), "60")
    try:
        time.sleep(0.3)
        run_cli("--config", str(cfg), "processes", check=1)
        run_cli("--config", str(cfg), "report", "--no-mail", check=0)
        text = sorted((tmp_path / "reports").glob("report-*.txt"))[-1].read_text()
        first = text.split("\n\n")[0]
        assert "suspicious process" in first and f"nobody pid {proc.pid}" in first and "kswapd" in first
        data = json.loads(sorted((tmp_path / "reports").glob("report-*.json"))[-1].read_text())
        section = next(s for s in data["sections"] if s["title"] == "Processes")
        assert any(r["pid"] == str(proc.pid) and r["kind"] == "suspicious" for r in section["records"])
    finally:
        proc.kill()
        proc.wait()


def test_a_newline_in_an_executables_name_cannot_forge_lines_of_the_alert(tmp_path, open_tmp):
    cfg = write_config(
        tmp_path, f'\n[processes]\nwritable_dirs = ["{open_tmp}"]\n[mail]\nmbox = "{tmp_path}/mbox"\n'
    )
    evil = open_tmp / "x\nUser:         root\nPID:          1"
    shutil.copy("/bin/sleep", evil)
    evil.chmod(0o755)
    proc = as_nobody(str(evil), "60")
    try:
        time.sleep(0.3)
        found = {f["pid"]: f for f in findings(cfg)}
        assert "\\nUser:         root" in found[proc.pid]["exe"]  # escaped, not a line break
        (msg,) = list(mailbox.mbox(tmp_path / "mbox"))
        lines = msg.get_payload()[0].get_payload(decode=True).decode().splitlines()
        assert "User:         root" not in lines and "PID:          1" not in lines
        assert "User:         nobody" in lines
    finally:
        proc.kill()
        proc.wait()
