"""Mail watching: the queue's length against LF_QUEUE_ALERT with the top senders and
recipients, and the mails per script against LF_SCRIPT_LIMIT from exim's cwd= lines,
postfix's pickup lines and PHP's mail.log, said once an hour; the opt-in disabling refuses
what a web user could point it at.

postqueue and exim are stubs here, printing what the real commands print (postqueue(1)'s
JSON lines, exim's -bp listing): both need a configured, running mail server with its queue,
which the test machine does not have."""

from __future__ import annotations

import json
import mailbox
import os
import time

import pytest

from helpers import append, run_cli, write_config


def stub(tmp_path, name: str, output: str):
    data = tmp_path / f"{name}.out"
    data.write_text(output)
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\nexec cat {data}\n")
    script.chmod(0o755)
    return script


def config(tmp_path, extra: str):
    return write_config(
        tmp_path,
        f"""
[mailwatch]
{extra}
[mail]
transport = "mbox"
mbox = "{tmp_path}/mbox"
""",
    )


def mails(tmp_path) -> list:
    box = tmp_path / "mbox"
    return list(mailbox.mbox(box)) if box.exists() else []


def body(m) -> str:
    return m.get_payload()[0].get_payload(decode=True).decode()


def test_a_postfix_queue_over_the_limit_is_said_once_with_its_top_senders(tmp_path):
    lines = [
        {
            "queue_name": "deferred",
            "queue_id": f"4F{i:04X}",
            "arrival_time": 1765000000 + i,
            "message_size": 2048,
            "forced_expire": False,
            "sender": "spam@victim.example" if i % 4 else "www-data@web1.example",
            "recipients": [{"address": f"user{i % 3}@far.example", "delay_reason": "connect timed out"}],
        }
        for i in range(12)
    ]
    postqueue = stub(tmp_path, "postqueue", "\n".join(json.dumps(x) for x in lines) + "\n")
    cfg = config(
        tmp_path,
        f'queue_alert = 10\nmta = "postfix"\npostqueue = ["{postqueue}", "-j"]\nscript_alert = false\n',
    )
    done = run_cli("--config", str(cfg), "mailwatch")
    assert done.returncode == 1 and "12 message(s), limit 10" in done.stdout
    (m,) = mails(tmp_path)
    assert "Mail queue holds 12 messages" in m["Subject"]
    assert "      9  spam@victim.example" in body(m) and "      4  user0@far.example" in body(m)
    assert run_cli("--config", str(cfg), "mailwatch").returncode == 0 and len(mails(tmp_path)) == 1


EXIM_BP = """25m  2.9K 1i7Wvp-000Z4K-2F <bounce@list.example>
          alice@far.example
        D bob@far.example

 4h  1.1K 1i7Wvq-000Z4K-3G <>
          carol@far.example

"""


def test_an_exim_queue_listing(tmp_path):
    exim = stub(tmp_path, "exim", EXIM_BP)
    cfg = config(tmp_path, f'queue_alert = 1\nmta = "exim"\nexim = ["{exim}", "-bp"]\nscript_alert = false\n')
    done = run_cli("--config", str(cfg), "mailwatch")
    assert "2 message(s), limit 1" in done.stdout
    text = body(mails(tmp_path)[0])
    assert "bounce@list.example" in text and "alice@far.example" in text and "bob@far.example" not in text


def test_scripts_over_the_limit_from_exim_postfix_and_php_logs(tmp_path):
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    exim, maillog, php = tmp_path / "mainlog", tmp_path / "mail.log", tmp_path / "php-mail.log"
    for log in (exim, maillog, php):  # what a log held before the first look is history
        log.write_text(f"{now} cwd=/home/old/site 3 args: /usr/sbin/sendmail -t\n" * 50)
    cfg = config(
        tmp_path,
        f'queue_alert = 0\nscript_limit = 5\nscript_logs = ["{exim}", "{maillog}"]\nphp_mail_log = "{php}"\n',
    )
    first = run_cli("--config", str(cfg), "mailwatch")
    assert first.returncode == 0 and "/home/old" not in first.stdout
    append(
        exim,
        "".join(
            f"{now} cwd=/home/alice/public_html/wp 4 args: /usr/sbin/sendmail -t -i -f a@x\n"
            for _ in range(6)
        )
        + "".join(f"{now} cwd=/var/spool/exim4 3 args: /usr/sbin/exim4 -Mc 1abc\n" for _ in range(9)),
    )
    append(
        maillog,
        "".join(
            f"Dec  6 10:00:0{i} web1 postfix/pickup[811]: 3F1C2A{i}: uid=33 from=<www-data>\n"
            for i in range(7)
        ),
    )
    append(
        php,
        "[06-Dec-2026 10:00:00 UTC] mail() on [/var/www/html/contact.php:12]: To: v@x -- Headers: From: a@b\n"
        * 3,
    )
    header = "postfix/cleanup[812]: 4B2C: warning: header X-PHP-Originating-Script: 1001:send.php from local"
    append(maillog, "".join(f"Dec  6 10:00:1{i} web1 {header}\n" for i in range(6)))
    done = run_cli("--config", str(cfg), "mailwatch")
    assert done.returncode == 1
    assert "send.php (uid 1001): 6 mails" in done.stdout
    assert "/home/alice/public_html/wp: 6 mails in the last hour" in done.stdout
    assert "uid 33 (www-data): 7 mails" in done.stdout
    assert "contact.php" not in done.stdout and "spool" not in done.stdout  # 3 under 5; exim's own
    subjects = sorted(m["Subject"] for m in mails(tmp_path))
    assert len(subjects) == 3 and all("mails in an hour" in s for s in subjects)
    assert "cwd=/home/alice/public_html/wp" in "".join(body(m) for m in mails(tmp_path))
    # more lines of the same script within the hour: not said again; the lines are read once
    with open(php, "a") as f:
        f.write("[06-Dec-2026 10:01:00 UTC] mail() on [/var/www/html/contact.php:12]: To: v@x\n" * 3)
    again = run_cli("--config", str(cfg), "mailwatch")
    assert "contact.php: 6 mails" in again.stdout and "alice" not in again.stdout


@pytest.mark.root
def test_disabling_refuses_links_roots_files_and_paths_outside_the_script_dirs(tmp_path):
    from nightwarden.jobs.mailwatch.scripts import disable

    home = tmp_path / "home"
    site = home / "bob" / "site"
    site.mkdir(parents=True)
    script = site / "mailer.php"
    script.write_text("<?php mail(...); ?>\n")
    os.chown(script, 65534, 65534)
    dirs = [str(home)]
    assert disable("/etc/passwd", dirs).startswith("not disabled: /etc/passwd is not under")
    (site / "link.php").symlink_to("/etc/shadow")
    assert "symbolic link" in disable(str(site / "link.php"), dirs)
    hard = site / "hard.php"
    os.link(script, hard)
    assert "2 links" in disable(str(hard), dirs)
    os.unlink(hard)
    rootfile = site / "root.php"
    rootfile.write_text("x")
    assert "root's" in disable(str(rootfile), dirs)
    assert disable(str(script), dirs).startswith(f"disabled: chmod 000 {script}")
    assert os.stat(script).st_mode & 0o777 == 0
