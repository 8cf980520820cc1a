"""Account tracking: a distributed attack on one account blocks every address it came from
(LF_DISTATTACK), one account logging in from many addresses is mailed (LF_DISTFTP,
LF_DISTSMTP), too many mail logins from one address in an hour block it for the rest of the
hour (LT_IMAPD, LT_POP3D); the allow list wins; said once."""

from __future__ import annotations

import json
import mailbox
import time

import pytest

from helpers import (
    ListenerProcess,
    append,
    following_config,
    log_config,
    need,
    nft_set,
    run_cli,
    stamp,
    wait_for,
)


def config(tmp_path, log, extra: str):
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "allow").write_text("192.0.2.99 # the office\n")
    return log_config(tmp_path, log, "ssh_alert = false\n" + extra)


def started(tmp_path, log, extra: str):
    """The config, after a first run over the (empty) log: what comes later is new."""
    log.write_text("")
    cfg = config(tmp_path, log, extra)
    run_cli("--config", str(cfg), "login-failures")
    return cfg


def blocks(cfg) -> dict[str, dict]:
    return {b["address"]: b for b in json.loads(run_cli("--config", str(cfg), "blocks", "--json").stdout)}


def subjects(tmp_path) -> list[str]:
    box = tmp_path / "mbox"
    return [m["Subject"].split(": ", 1)[1] for m in mailbox.mbox(box)] if box.exists() else []


def test_a_distributed_attack_on_one_account_blocks_every_address(tmp_path):
    log = tmp_path / "auth.log"
    cfg = started(tmp_path, log, "dist_attack = 4\n")
    s = stamp(time.time())
    sources = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "192.0.2.99"]  # the last is allowed
    append(
        log,
        "".join(
            f"{s} web1 sshd[{900 + i}]: Failed password for admin from {a} port {4000 + i} ssh2\n"
            for i, a in enumerate(sources)
        )
        + f"{s} web1 sshd[990]: Failed password for bob from 192.0.2.50 port 4990 ssh2\n",
    )
    out = run_cli("--config", str(cfg), "login-failures")
    assert "dist attack: sshd: distributed attack on account 'admin' from 4 addresses" in out.stdout
    got = blocks(cfg)
    assert {"203.0.113.1", "203.0.113.2", "203.0.113.3"} <= set(got)  # one failure each, under LF_SSHD
    assert "192.0.2.99" not in got and "192.0.2.50" not in got  # allowed; another account
    assert got["203.0.113.1"]["source"] == "login-dist-attack"
    assert subjects(tmp_path) == ["distributed attack on admin (4 addresses)"]
    body = mailbox.mbox(tmp_path / "mbox")[0].get_payload()[0].get_payload(decode=True).decode()
    assert "192.0.2.99  (not blocked)" in body and "3 address(es), temporary" in body
    run_cli("--config", str(cfg), "login-failures")
    assert len(subjects(tmp_path)) == 1  # once


def test_one_account_logging_in_from_many_addresses_is_mailed_once(tmp_path):
    log = tmp_path / "ftp.log"
    cfg = started(tmp_path, log, "dist_login = {ftpd = 4}\ndist_login_block = false\n")
    s = stamp(time.time())
    append(
        log,
        "".join(
            f"{s} web1 pure-ftpd: (?@198.51.100.{i}) [INFO] carol is now logged in\n" for i in range(1, 5)
        ),
    )
    out = run_cli("--config", str(cfg), "login-failures")
    assert "account 'carol' logged in from 4 addresses" in out.stdout
    assert blocks(cfg) == {}
    assert subjects(tmp_path) == ["carol logged in from 4 addresses (ftpd)"]
    with open(log, "a") as f:
        f.write(f"{s} web1 pure-ftpd: (?@198.51.100.9) [INFO] carol is now logged in\n")
    run_cli("--config", str(cfg), "login-failures")
    assert len(subjects(tmp_path)) == 1  # mailed once within dist_interval


def test_login_tracking_blocks_for_the_rest_of_the_hour_per_protocol(tmp_path):
    log = tmp_path / "mail.log"
    cfg = started(tmp_path, log, "tracking = {imapd = 2, pop3d = 5}\n")
    s = stamp(time.time())
    imap = "imap-login: Login: user=<dave>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, mpid=7, TLS"
    pop3 = "pop3-login: Login: user=<erin>, method=PLAIN, rip=203.0.113.6, lip=192.0.2.1, mpid=8, TLS"
    append(log, "".join(f"{s} mx dovecot: {imap}\n" for _ in range(3)))
    append(log, "".join(f"{s} mx dovecot: {pop3}\n" for _ in range(3)))
    run_cli("--config", str(cfg), "login-failures")
    got = blocks(cfg)
    assert set(got) == {"203.0.113.5"}  # 3 imap logins over 2; 3 pop3 logins under 5
    from datetime import datetime

    now = time.time()
    expires = datetime.fromisoformat(got["203.0.113.5"]["expires"]).timestamp()
    assert now < expires <= now - now % 3600 + 3600 + 60, expires  # the rest of the hour
    assert subjects(tmp_path) == ["login tracking: dave (imapd)"]


def test_the_first_read_of_an_old_log_is_history_not_an_attack(tmp_path):
    log = tmp_path / "auth.log"
    s = stamp(time.time())
    log.write_text(
        "".join(
            f"{s} web1 sshd[{900 + i}]: Failed password for admin from 203.0.113.{i} port 4000 ssh2\n"
            for i in range(1, 6)
        )
    )
    cfg = config(tmp_path, log, "dist_attack = 3\n")
    out = run_cli("--config", str(cfg), "login-failures")
    assert "distributed attack" not in out.stdout and blocks(cfg) == {}


def test_dry_run_tracks_nothing_and_blocks_nothing(tmp_path):
    log = tmp_path / "auth.log"
    cfg = started(tmp_path, log, "dist_attack = 3\n")
    s = stamp(time.time())
    append(
        log,
        "".join(
            f"{s} web1 sshd[{900 + i}]: Failed password for admin from 203.0.113.{i} port 4000 ssh2\n"
            for i in range(1, 4)
        ),
    )
    out = run_cli("--config", str(cfg), "login-failures", "--dry-run")
    assert "distributed attack on account 'admin'" in out.stdout and "dry run" in out.stdout
    assert blocks(cfg) == {} and subjects(tmp_path) == []


@pytest.mark.root
def test_the_listener_blocks_a_distributed_attack_as_it_follows(tmp_path, netns):
    need("nft")
    cfg, log = following_config(tmp_path, "dist_attack = 3\nssh_alert = false\n")
    run = ListenerProcess(cfg, tmp_path).start()
    try:
        s = stamp(time.time())
        with open(log, "a") as f:
            for i in range(1, 4):
                f.write(f"{s} web1 sshd[{700 + i}]: Failed password for admin from 127.8.0.{i} port 1 ssh2\n")
        assert wait_for(lambda: {"127.8.0.1", "127.8.0.2", "127.8.0.3"} <= nft_set(), 5.0)
        box = tmp_path / "mbox"
        assert wait_for(lambda: box.exists() and len(mailbox.mbox(box)) == 1, 5.0)
    finally:
        run.stop()
