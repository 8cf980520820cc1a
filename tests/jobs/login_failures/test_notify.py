"""Login notifications (LF_SSH_EMAIL_ALERT, LF_SU_EMAIL_ALERT, LF_CONSOLE_EMAIL_ALERT): a mail
per ssh login with the method and the key, per su to root, per root login on a console; said
once (the cursor), trusted or spoofable as their source is, batched when asked; and the same
from the listener's following within a second."""

from __future__ import annotations

import mailbox
import time

import pytest

from helpers import (
    ListenerProcess,
    following_config,
    journal_stub,
    log_config,
    need,
    run_cli,
    stamp,
    wait_for,
    write_config,
)


def logins(t: float) -> str:
    s = stamp(t)
    return (
        f"{s} web1 sshd[811]: Accepted publickey for alice from 192.0.2.10 port 51234 ssh2: "
        "ED25519 SHA256:Zm9vYmFyYmF6cXV4\n"
        f"{s} web1 sshd[812]: Accepted password for bob from 2001:db8::7 port 40222 ssh2\n"
        f"{s} web1 su: (to root) alice on pts/0\n"
        f"{s} web1 su: (to postgres) alice on pts/0\n"  # not to root: no notice
        f"{s} web1 login[901]: ROOT LOGIN ON tty1\n"
        f"{s} web1 sshd[813]: Failed password for carol from 192.0.2.11 port 40223 ssh2\n"
    )


def bodies(mbox) -> dict[str, str]:
    out = {}
    for m in mailbox.mbox(mbox):
        out[m["Subject"]] = m.get_payload()[0].get_payload(decode=True).decode()
    return out


def config(tmp_path, log, extra: str = ""):
    return log_config(tmp_path, log, extra)


def test_a_mail_per_ssh_login_su_to_root_and_root_console_login_once(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(logins(time.time()))
    cfg = config(tmp_path, log)
    out = run_cli("--config", str(cfg), "login-failures")
    assert "login ssh: alice 192.0.2.10" in out.stdout and "login su: alice" in out.stdout
    mails = bodies(tmp_path / "mbox")
    subjects = sorted(s.split(": ", 1)[1] for s in mails)
    assert subjects == [
        "SSH login alice from 192.0.2.10",
        "SSH login bob from 2001:db8::7",
        "root login on tty1",
        "su to root by alice",
    ]
    ssh = next(b for s, b in mails.items() if "alice from" in s)
    assert "Method:       publickey" in ssh and "Key:          ED25519 SHA256:Zm9vYmFyYmF6cXV4" in ssh
    assert "spoofable" in ssh and "Accepted publickey for alice" in ssh
    su = next(b for s, b in mails.items() if "su to root" in s)
    assert "alice became root on pts/0" in su
    # recorded: grep finds the login by its address
    found = run_cli("--config", str(cfg), "grep", "192.0.2.10", "--json").stdout
    assert "login_ssh" in found
    # read once: nothing more the next minute
    run_cli("--config", str(cfg), "login-failures")
    assert len(mailbox.mbox(tmp_path / "mbox")) == 4


def test_an_old_login_is_recorded_not_mailed(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(logins(time.time() - 3 * 3600))  # the first read of an old log
    cfg = config(tmp_path, log)
    out = run_cli("--config", str(cfg), "login-failures")
    assert "login ssh: alice 192.0.2.10" in out.stdout
    assert not (tmp_path / "mbox").exists()
    assert "login_ssh" in run_cli("--config", str(cfg), "grep", "192.0.2.10").stdout


def test_batch_mode_and_the_switches(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(logins(time.time()))
    cfg = config(tmp_path, log, 'notify = "batch"\nsu_alert = false\n')
    run_cli("--config", str(cfg), "login-failures")
    (mail,) = list(mailbox.mbox(tmp_path / "mbox"))
    assert "3 logins" in mail["Subject"]
    body = mail.get_payload()[0].get_payload(decode=True).decode()
    assert "alice" in body and "ROOT LOGIN ON tty1" in body and "(to root)" not in body


def test_a_journal_login_is_trusted_and_a_forged_one_is_no_login(tmp_path):
    now = time.time()
    entries = [
        {
            "__CURSOR": "c1",
            "__REALTIME_TIMESTAMP": str(int(now * 1e6)),
            "_HOSTNAME": "web1",
            "SYSLOG_IDENTIFIER": "sshd",
            "_COMM": "sshd",
            "_EXE": "/usr/sbin/sshd",
            "_UID": "0",
            "_SYSTEMD_UNIT": "ssh.service",
            "_PID": "700",
            "MESSAGE": "Accepted publickey for alice from 192.0.2.20 port 1 ssh2: RSA SHA256:abc",
        },
        {
            "__CURSOR": "c2",
            "__REALTIME_TIMESTAMP": str(int(now * 1e6)),
            "_HOSTNAME": "web1",
            "SYSLOG_IDENTIFIER": "sshd",
            "_COMM": "logger",
            "_UID": "1000",
            "_PID": "701",
            "MESSAGE": "Accepted password for root from 192.0.2.21 port 1 ssh2",
        },
    ]
    script = journal_stub(tmp_path, entries)
    cfg = write_config(
        tmp_path,
        f"""backend = "dryrun"
[logins]
sources = []
journal = "yes"
journal_command = ["{script}"]
[mail]
transport = "mbox"
mbox = "{tmp_path}/mbox"
""",
    )
    run_cli("--config", str(cfg), "login-failures")
    mails = bodies(tmp_path / "mbox")
    assert [s.split(": ", 1)[1] for s in mails] == ["SSH login alice from 192.0.2.20"]
    assert "trusted (a journal entry" in next(iter(mails.values()))


@pytest.mark.root
def test_the_listener_mails_a_login_within_a_second(tmp_path, netns):
    need("nft")
    cfg, log = following_config(tmp_path)
    run = ListenerProcess(cfg, tmp_path).start()
    try:
        with open(log, "a") as f:
            f.write(logins(time.time()).splitlines(keepends=True)[0])
        written = time.monotonic()
        mbox = tmp_path / "mbox"
        assert wait_for(lambda: mbox.exists() and len(mailbox.mbox(mbox)) == 1, 5.0)
        assert time.monotonic() - written < 2.0
        assert "SSH login alice from 192.0.2.10" in mailbox.mbox(mbox)[0]["Subject"]
        # the cron job does not say it again
        out = run_cli("--config", str(cfg), "login-failures")
        assert "login ssh" not in out.stdout
    finally:
        run.stop()
