"""Detection rules on a corpus of real-format lines, written from what each daemon emits
(daemon and version beside each), and the documented counting rule."""

from __future__ import annotations

import time

import pytest

from nightwarden.jobs.login_failures import counting, rules
from nightwarden.jobs.login_failures.formats import YearGuess

REF = time.mktime((2026, 11, 21, 12, 0, 0, 0, 0, -1))


def scan(
    text: str, fmt: str = "rfc3164", services=None, full: bool = False, reference: float = REF
) -> counting.Tally:
    compiled = rules.compile_rules(fmt, services or list(rules.SERVICES_ALL), known=full, users=full)
    tally = counting.Tally(want_users=full)
    counting.AttemptCounter(compiled, tally, reference).scan(b"\n" + text.encode())
    return tally


def syslog(*messages: str, start: str = "Nov 21 05:20:0") -> str:
    return "".join(f"{start}{i % 10} web1 {m}\n" for i, m in enumerate(messages))


# -- sshd -----------------------------------------------------------------------------------


def test_openssh_9_failed_password_and_invalid_user_with_port_is_one_attempt():
    # OpenSSH 9.2p1 (Debian 12): one connection, an unknown user, one password
    t = scan(
        syslog(
            "sshd[4242]: Invalid user admin from 203.0.113.9 port 52144",
            "sshd[4242]: pam_unix(sshd:auth): check pass; user unknown",
            "sshd[4242]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
            "ruser= rhost=203.0.113.9",
            "sshd[4242]: Failed password for invalid user admin from 203.0.113.9 port 52144 ssh2",
            "sshd[4242]: Connection closed by invalid user admin 203.0.113.9 port 52144 [preauth]",
        )
    )
    assert t.total() == {"203.0.113.9": 1}


def test_openssh_6_invalid_user_without_port():
    # OpenSSH 6.6p1 (Ubuntu 14.04): no port on "Invalid user"
    t = scan(
        syslog(
            "sshd[812]: Invalid user oracle from 198.51.100.23",
            "sshd[812]: input_userauth_request: invalid user oracle [preauth]",
            "sshd[812]: Failed password for invalid user oracle from 198.51.100.23 port 40022 ssh2",
            "sshd[813]: Invalid user test from 198.51.100.23",
        )
    )
    assert t.total() == {"198.51.100.23": 2}


def test_message_repeated_counts_each_repetition():
    # rsyslog 8.2302 folding OpenSSH 9.2p1's identical lines
    t = scan(
        syslog(
            "sshd[5000]: Failed password for root from 192.0.2.77 port 61000 ssh2",
            "sshd[5000]: message repeated 5 times: [ Failed password for root from 192.0.2.77 port 61000 ssh2]",
        )
    )
    assert t.total() == {"192.0.2.77": 6}
    alone = scan(
        syslog(
            "sshd[5001]: message repeated 5 times: [ Failed password for root from "
            "192.0.2.78 port 61001 ssh2]"
        )
    )
    assert alone.total() == {"192.0.2.78": 5}


def test_too_many_authentication_failures_counts_once_per_connection():
    # OpenSSH 9.2p1: public keys only (the third failure onwards is logged), then the limit
    t = scan(
        syslog(
            "sshd[6000]: Failed publickey for root from 192.0.2.50 port 5050 ssh2: RSA "
            "SHA256:Zk3bq0f0nUXbqYFfCkM2VmJ1wqYqYpO4mT1m4H4l9w8",
            "sshd[6000]: error: maximum authentication attempts exceeded for root from 192.0.2.50 port 5050 ssh2 [preauth]",
            "sshd[6000]: Disconnecting authenticating user root 192.0.2.50 port 5050: Too many authentication failures [preauth]",
            # a connection whose only trace is the limit: one attempt
            "sshd[6001]: error: maximum authentication attempts exceeded for invalid user x from 192.0.2.51 port 5051 ssh2 [preauth]",
            "sshd[6001]: Disconnecting invalid user x 192.0.2.51 port 5051: Too many authentication failures [preauth]",
        )
    )
    assert t.total() == {"192.0.2.50": 1, "192.0.2.51": 1}


def test_old_openssh_too_many_without_address_takes_it_from_the_connection():
    # OpenSSH 7.4p1 (CentOS 7): "Disconnecting: Too many authentication failures for root"
    t = scan(
        syslog(
            "sshd[700]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
            "ruser= rhost=198.51.100.4  user=root",
            "sshd[700]: Disconnecting: Too many authentication failures for root [preauth]",
        )
    )
    assert t.total() == {"198.51.100.4": 1}


def test_pam_failure_alone_counts_when_sshd_logs_no_failed_line():
    # sshd with LogLevel ERROR: only PAM's line tells of the attempt
    t = scan(
        syslog(
            "sshd[900]: pam_unix(sshd:auth): authentication failure; logname= uid=0 "
            "euid=0 tty=ssh ruser= rhost=203.0.113.44  user=root"
        )
    )
    assert t.total() == {"203.0.113.44": 1}


def test_not_allowed_user_then_failed_is_one_attempt():
    t = scan(
        syslog(
            "sshd[901]: User root from 203.0.113.45 not allowed because not listed in AllowUsers",
            "sshd[901]: Failed password for invalid user root from 203.0.113.45 port 4000 ssh2",
        )
    )
    assert t.total() == {"203.0.113.45": 1}


def test_a_user_name_cannot_smuggle_another_address():
    # the attacker picks the user name; the address is the one sshd writes last
    t = scan(
        syslog(
            "sshd[902]: Invalid user x from 10.9.9.9 port 1 from 203.0.113.46 port 4001",
            "sshd[902]: Failed password for invalid user x from 10.9.9.9 port 1 ssh2 from 203.0.113.46 port 4001 ssh2",
        )
    )
    assert t.total() == {"203.0.113.46": 1}


def test_successful_logins_and_the_sshd_session_program_name():
    # OpenSSH 9.8p1 logs from sshd-session
    t = scan(
        syslog(
            "sshd-session[1200]: Accepted publickey for admin from 192.0.2.10 port 50022 ssh2: ED25519 "
            "SHA256:Zk3bq0f0nUXbqYFfCkM2VmJ1wqYqYpO4mT1m4H4l9w8",
            "sshd-session[1201]: Failed password for root from 203.0.113.60 port 4100 ssh2",
            "sshd[1202]: Accepted password for deploy from 2001:db8::5 port 50023 ssh2",
        )
    )
    assert [(s, u, a) for _, s, u, a, _ in t.successes] == [
        ("sshd", "admin", "192.0.2.10"),
        ("sshd", "deploy", "2001:db8::5"),
    ]
    assert t.total() == {"203.0.113.60": 1}


def test_a_line_from_another_program_is_not_sshd():
    t = scan(syslog("cron[77]: sshd[1]: Failed password for root from 203.0.113.61 port 1 ssh2"))
    assert t.total() == {}


def test_invalid_addresses_are_dropped():
    t = scan(
        syslog(
            "sshd[1]: Failed password for root from 999.1.1.1 port 1 ssh2",
            "sshd[2]: Failed password for root from 203.0.113.62 port 1 ssh2",
        )
    )
    assert t.total() == {"203.0.113.62": 1}
    assert t.bad_addresses == 1


# -- other daemons --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt,line,service,address,count",
    [
        # pure-ftpd 1.0.50 (syslog)
        (
            "rfc3164",
            "Nov 21 05:20:01 web1 pure-ftpd: (?@203.0.113.9) [WARNING] Authentication failed for user [admin]",
            "ftpd",
            "203.0.113.9",
            1,
        ),
        # vsftpd 3.0.3 with syslog_enable=YES, and its own vsftpd.log
        (
            "rfc3164",
            'Nov 21 05:20:01 web1 vsftpd[3011]: [ftpuser] FAIL LOGIN: Client "::ffff:203.0.113.10"',
            "ftpd",
            "203.0.113.10",
            1,
        ),
        (
            "vsftpd",
            'Sat Nov 21 05:20:01 2026 [pid 3011] [ftpuser] FAIL LOGIN: Client "::ffff:203.0.113.11"',
            "ftpd",
            "203.0.113.11",
            1,
        ),
        # dovecot 2.3.19: "3 attempts" is three failures
        (
            "rfc3164",
            "Nov 21 05:20:01 mail dovecot: imap-login: Disconnected (auth failed, 3 attempts in 12 secs): "
            "user=<admin>, method=PLAIN, rip=203.0.113.12, lip=192.0.2.1, TLS, session=<AbCdEf12>",
            "imapd",
            "203.0.113.12",
            3,
        ),
        (
            "rfc3164",
            "Nov 21 05:20:01 mail dovecot: pop3-login: Aborted login (auth failed, 1 attempts in 2 secs): "
            "user=<info>, method=PLAIN, rip=203.0.113.13, lip=192.0.2.1, session=<Zx9>",
            "pop3d",
            "203.0.113.13",
            1,
        ),
        # courier-imap 5.1
        (
            "rfc3164",
            "Nov 21 05:20:01 mail imapd: LOGIN FAILED, user=admin, ip=[::ffff:203.0.113.14]",
            "imapd",
            "203.0.113.14",
            1,
        ),
        (
            "rfc3164",
            "Nov 21 05:20:01 mail pop3d: LOGIN FAILED, method=PLAIN, user=admin, ip=[::ffff:203.0.113.15]",
            "pop3d",
            "203.0.113.15",
            1,
        ),
        # postfix 3.7.11
        (
            "rfc3164",
            "Nov 21 05:20:01 mail postfix/smtpd[2211]: warning: unknown[203.0.113.16]: SASL LOGIN "
            "authentication failed: UGFzc3dvcmQ6",
            "smtpauth",
            "203.0.113.16",
            1,
        ),
        (
            "rfc3164",
            "Nov 21 05:20:01 mail postfix/submission/smtpd[2212]: warning: host.example[203.0.113.17]: "
            "SASL PLAIN authentication failed: authentication failure",
            "smtpauth",
            "203.0.113.17",
            1,
        ),
        # exim 4.96 mainlog
        (
            "exim",
            "2026-11-21 05:20:01 dovecot_login authenticator failed for (User) [203.0.113.18]:52144: "
            "535 Incorrect authentication data (set_id=admin)",
            "smtpauth",
            "203.0.113.18",
            1,
        ),
        # apache 2.4.62: basic auth, mod_security 2.9.7
        (
            "apache",
            "[Sat Nov 21 05:20:01.123456 2026] [auth_basic:error] [pid 1234:tid 5678] [client "
            '203.0.113.19:52144] AH01617: user admin: authentication failure for "/private": Password Mismatch',
            "htaccess",
            "203.0.113.19",
            1,
        ),
        (
            "apache",
            "[Sat Nov 21 05:20:01.123456 2026] [auth_basic:error] [pid 1234:tid 5678] [client "
            "203.0.113.20:52145] AH01618: user nobody not found: /private",
            "htaccess",
            "203.0.113.20",
            1,
        ),
        (
            "apache",
            "[Sat Nov 21 05:20:01.123456 2026] [security2:error] [pid 1234:tid 5678] [client "
            "203.0.113.21:52146] [client 203.0.113.21] ModSecurity: Access denied with code 403 (phase 2). "
            'Operator GE matched 5 at TX:anomaly_score. [file "/usr/share/modsecurity-crs/rules/'
            'REQUEST-949-BLOCKING-EVALUATION.conf"] [id "949110"] [hostname "example.org"] [uri "/"]',
            "modsec",
            "203.0.113.21",
            1,
        ),
        # nginx 1.22.1
        (
            "nginx",
            '2026/11/21 05:20:01 [error] 1234#1234: *5 user "admin": password mismatch, client: '
            '203.0.113.22, server: example.org, request: "GET /private HTTP/1.1", host: "example.org"',
            "htaccess",
            "203.0.113.22",
            1,
        ),
        (
            "nginx",
            '2026/11/21 05:20:01 [error] 1234#1234: *6 user "root" was not found in '
            '"/etc/nginx/.htpasswd", client: 203.0.113.23, server: example.org, request: "GET / HTTP/1.1"',
            "htaccess",
            "203.0.113.23",
            1,
        ),
    ],
)
def test_daemon_wordings(fmt, line, service, address, count):
    t = scan(line + "\n", fmt)
    assert [(s, a, n) for s, a, _, n in t.series()] == [(service, address, count)]


def test_su_and_sudo_local_failures_and_successes():
    # util-linux 2.38 su, sudo 1.9.13
    t = scan(
        syslog(
            "su[3100]: FAILED SU (to root) alice on pts/1",
            "su[3101]: (to root) admin on pts/0",
            "sudo:    alice : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
            "sudo:    admin : TTY=pts/0 ; PWD=/home/admin ; USER=root ; COMMAND=/usr/bin/apt update",
            "sudo:      bob : user NOT in sudoers ; TTY=pts/2 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/sh",
        ),
        full=True,
    )
    assert [(s, u, n) for _, s, u, n in t.local] == [
        ("su", "alice", 1),
        ("sudo", "alice", 3),
        ("sudo", "bob", 1),
    ]
    assert sorted((s, u) for _, s, u, _, _ in t.successes) == [("su", "admin"), ("sudo", "admin")]
    assert t.total() == {}


def test_the_report_mode_counts_lines_nobody_understood():
    t = scan(
        syslog(
            "sshd[1]: Received disconnect from 192.0.2.1 port 1:11: Bye Bye [preauth]",
            "CRON[2]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
            "sshd[3]: something new in OpenSSH 11",
            "kernel: [  1.0] random line",
        ),
        full=True,
    )
    assert (t.lines, t.understood) == (4, 2)


# -- formats and time -----------------------------------------------------------------------


def test_rfc3339_and_rfc5424_lines():
    t = scan(
        "2026-11-21T05:31:20.488019+00:00 web1 sshd[4242]: Failed password for root from "
        "203.0.113.30 port 1 ssh2\n",
        "rfc3339",
    )
    assert t.total() == {"203.0.113.30": 1}
    from datetime import datetime

    assert t.first == pytest.approx(datetime.fromisoformat("2026-11-21T05:31:20.488019+00:00").timestamp())
    t = scan(
        '<38>1 2026-11-21T05:31:20.488019+00:00 web1 sshd 4242 - [meta sequenceId="1"] '
        "Failed password for root from 203.0.113.31 port 1 ssh2\n",
        "rfc5424",
    )
    assert t.total() == {"203.0.113.31": 1}


def test_year_less_stamps_across_new_year():
    jan1 = time.mktime((2027, 1, 1, 0, 5, 0, 0, 0, -1))
    years = YearGuess(jan1)
    assert time.localtime(years.parse(b"Dec 31 23:59:59")).tm_year == 2026
    assert time.localtime(years.parse(b"Jan  1 00:04:00")).tm_year == 2027
    # and a window spanning midnight counts both sides
    t = scan(
        "Dec 31 23:58:30 web1 sshd[1]: Failed password for root from 203.0.113.40 port 1 ssh2\n"
        "Jan  1 00:01:30 web1 sshd[2]: Failed password for root from 203.0.113.40 port 2 ssh2\n",
        reference=jan1,
    )
    assert [time.localtime(t0).tm_year for _, _, t0, _ in t.series()] == [2026, 2027]


def test_segments_stamp_lines_within_the_resolution():
    lines = "".join(
        f"Nov 21 05:{m:02d}:00 web1 sshd[{m}]: Failed password for root from 203.0.113.41 port {m} ssh2\n"
        for m in range(0, 50, 7)
    )
    t = scan(lines)
    stamps = sorted(t0 for _, _, t0, _ in t.series())
    assert len(stamps) == 8
    assert stamps[-1] - stamps[0] == 49 * 60
