"""The compiled sshd scan against the regular expressions it stands in for: the same
counts, connections, users, successes and understood lines on generated lines full of
near misses (hostile user names, bad addresses, missing fields, truncated lines, key and
certificate info, other programs), in the job's mode and the report's."""

from __future__ import annotations

import random

import pytest

from nightwarden.jobs.login_failures import counting, rules

pytestmark = pytest.mark.skipif(
    counting._sshscan is None, reason="the compiled sshd scan was not built (no compiler)"
)

USERS = [
    "root",
    "admin",
    "",
    "a b",
    "x from 10.0.0.1 port 22 ssh2",
    "invalid user y",
    "z from 1.2.3.4",
    "u]",
    "ü",
    "from",
    " ",
    "q port 1 ssh2: RSA SHA256:abc",
]
IPS = [
    "203.0.113.9",
    "2001:db8::7",
    "::ffff:198.51.100.3",
    "999.1.1.1",
    "1.2",
    "abc",
    "fe80::1:2:3:4:5:6:7:8:9:10:11:12:13",
    "10.0.0.1",
    "",
]
KEYS = [
    "",
    ": RSA SHA256:Zk3bq0f0nUXbqYFfCkM2VmJ1wqYqYpO4mT1m4H4l9w8",
    ": ED25519-CERT SHA256:abc+/= ID user@host (serial 12) CA ED25519 SHA256:def=",
    ": rsa SHA256:lower",
    ": RSA SHA256:",
    ": RSA SHA256:ok extra",
]
METHODS = ["password", "publickey", "keyboard-interactive/pam", "none", "hostbased", "magic"]


def messages(rnd: random.Random) -> str:
    u, ip, port = rnd.choice(USERS), rnd.choice(IPS), rnd.choice(["22", "0", "", "x"])
    inv = rnd.choice(["", "invalid user "])
    key = rnd.choice(KEYS)
    m = rnd.choice(METHODS)
    return rnd.choice(
        [
            f"Failed {m} for {inv}{u} from {ip} port {port} ssh2{key}",
            f"message repeated {rnd.choice(['2', '5', '0', '12'])} times: [ Failed {m} for {inv}{u} "
            f"from {ip} port {port} ssh2{key}]",
            f"Invalid user {u} from {ip}" + rnd.choice(["", f" port {port}", " port", " x"]),
            f"User {u} from {ip} not allowed because "
            + rnd.choice(
                [
                    "not listed in AllowUsers",
                    "listed in DenyUsers",
                    "a group is listed in DenyGroups",
                    "none of user's groups are listed in AllowGroups",
                    "listed in Nowhere",
                    "bored",
                ]
            ),
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
            f"rhost={ip}" + rnd.choice(["", f"  user={u}", "  user=root", " user=root", "  user=a b"]),
            f"error: maximum authentication attempts exceeded for {inv}{u} from {ip} port {port} "
            f"ssh2 [preauth]" + rnd.choice(["", " "]),
            f"Disconnecting {rnd.choice(['authenticating', 'invalid', 'odd'])} user {u} {ip} port "
            f"{port}: Too many authentication failures [preauth]",
            "Disconnecting: Too many authentication failures"
            + rnd.choice(["", " [preauth]", f" for {inv}{u}", f" for {u} [preauth]", "!"]),
            f"Accepted {m} for {u} from {ip} port {port} ssh2{key}",
            f"Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
            f"Connection closed by {ip} port {port} [preauth]",
            "pam_unix(sshd:session): session opened for user root(uid=0) by (uid=0)",
            "pam_unix(sshd:auth): check pass; user unknown",
            "something nobody wrote before",
            f"Failed {m} for {u} from {ip} port {port} ssh2"[: rnd.randrange(5, 40)],  # truncated
        ]
    )


def line(rnd: random.Random, i: int, rfc3339: bool) -> str:
    prog = rnd.choice(
        ["sshd", "sshd", "sshd", "sshd-session", "sshd-auth", "sshd-x", "cron", "su", "sudo", "sshdd"]
    )
    pid = rnd.choice([f"[{1000 + i % 50}]", f"[{1000 + i % 50}]", "", "[x]", "[]"])
    stamp = (
        "2026-11-21T05:31:20.488019+00:00"
        if rfc3339
        else rnd.choice(["Nov 21 05:20:01", "Nov  1 05:20:01", "nov 21 05:20:01", "Nov 21 5:20:01"])
    )
    host = rnd.choice(["web1", "web1", "", "a b"])
    msg = (
        messages(rnd)
        if prog != "sudo"
        else rnd.choice(
            [
                "    admin : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id",
                "    alice : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/id",
            ]
        )
    )
    return f"{stamp} {host} {prog}{pid}: {msg}"


def run(text: bytes, fmt: str, full: bool, fast: bool) -> counting.Tally:
    compiled = rules.compile_rules(fmt, ["sshd", "su", "sudo"], known=full, users=full)
    tally = counting.Tally(want_users=full)
    counting.AttemptCounter(compiled, tally, 1795239080.0, fast=fast).scan(text)
    return tally


@pytest.mark.parametrize("fmt", ["rfc3164", "rfc3339"])
@pytest.mark.parametrize("full", [False, True])
def test_compiled_scan_equals_the_regular_expressions(fmt, full):
    rnd = random.Random(20261121)
    text = ("\n" + "\n".join(line(rnd, i, fmt == "rfc3339") for i in range(20000)) + "\n").encode()
    fast, slow = run(text, fmt, full, True), run(text, fmt, full, False)
    assert sorted(fast.series()) == sorted(slow.series())
    assert fast.total() and fast.understood == slow.understood and fast.lines == slow.lines
    assert sorted(fast.successes) == sorted(slow.successes)
    assert fast.users == slow.users
    assert sorted(fast.local) == sorted(slow.local)
    assert fast.state() == slow.state()


def test_the_compiled_scan_stays_inside_its_range():
    buf = b"\nNov 21 05:20:01 web1 sshd[1]: Failed password for root from 203.0.113.9 port 1 ssh2\n"
    with pytest.raises(ValueError):
        counting._sshscan.sshd(buf, 0, len(buf), 0, False, ())
    with pytest.raises(ValueError):
        counting._sshscan.sshd(buf, 1, len(buf) + 1, 0, False, ())
    # a range that ends inside the line sees only that much of it
    got = counting._sshscan.sshd(buf, 1, len(buf) - 10, 0, False, ())
    assert got[0] == []
