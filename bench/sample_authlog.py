"""Writes a realistic day of a Debian server's auth.log (fixed seed) and its ground truth.

OpenSSH 9.2 (Debian 12) wordings with PAM, an old OpenSSH 6.x that logs no port, rsyslog's
"message repeated" folding, cron and sudo/su noise, successful logins. The ground truth counts
attempts the way nightwarden documents it (README: "How failures are counted").

Usage: sample_authlog.py OUT [--lines N] [--truth FILE.json] [--format rfc3164|rfc3339]
                         [--end EPOCH] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

USERS = [
    "admin",
    "test",
    "user",
    "oracle",
    "postgres",
    "ubuntu",
    "guest",
    "git",
    "ftpuser",
    "pi",
    "support",
    "www",
    "mysql",
    "deploy1",
    "jenkins",
    "hadoop",
    "nagios",
    "minecraft",
]
HOST = "web1"


def attacker_pool(rnd: random.Random, n: int) -> list[str]:
    pool = set()
    while len(pool) < n:
        pool.add(
            f"{rnd.choice([45, 61, 80, 92, 103, 116, 141, 159, 170, 185, 193, 218, 222])}."
            f"{rnd.randrange(1, 255)}.{rnd.randrange(0, 255)}.{rnd.randrange(1, 255)}"
        )
    return sorted(pool)


def session(rnd: random.Random, ip: str, pid: int) -> tuple[list[str], int]:
    """One sshd connection from an attacker: (messages without the syslog prefix, attempts)."""
    port = rnd.randrange(1024, 65535)
    u = rnd.choice(USERS)
    sshd = f"sshd[{pid}]: "
    kind = rnd.random()
    if kind < 0.40:  # invalid user, one password
        return [
            sshd + f"Invalid user {u} from {ip} port {port}",
            sshd + "pam_unix(sshd:auth): check pass; user unknown",
            sshd + f"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
            f"ruser= rhost={ip}",
            sshd + f"Failed password for invalid user {u} from {ip} port {port} ssh2",
            sshd + f"Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
            sshd + f"Disconnected from invalid user {u} {ip} port {port} [preauth]",
        ], 1
    if kind < 0.60:  # root, several passwords, folded by rsyslog, then too many
        k = rnd.randrange(1, 6)
        lines = [
            sshd + f"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
            f"tty=ssh ruser= rhost={ip}  user=root",
            sshd + f"Failed password for root from {ip} port {port} ssh2",
        ]
        if k > 1:
            lines.append(
                sshd + f"message repeated {k - 1} times: [ Failed password for root "
                f"from {ip} port {port} ssh2]"
            )
        if k == 5:
            lines += [
                sshd + f"error: maximum authentication attempts exceeded for root from {ip} "
                f"port {port} ssh2 [preauth]",
                sshd + f"Disconnecting authenticating user root {ip} port {port}: "
                f"Too many authentication failures [preauth]",
                sshd + f"PAM 4 more authentication failures; logname= uid=0 euid=0 tty=ssh "
                f"ruser= rhost={ip}  user=root",
            ]
        else:
            lines.append(sshd + f"Connection closed by authenticating user root {ip} port {port} [preauth]")
        return lines, k
    if kind < 0.72:  # invalid user, gives up before a password
        return [
            sshd + f"Invalid user {u} from {ip} port {port}",
            sshd + f"Connection closed by invalid user {u} {ip} port {port} [preauth]",
        ], 1
    if kind < 0.77:  # old OpenSSH: no port on "Invalid user"
        return [
            sshd + f"Invalid user {u} from {ip}",
            sshd + f"input_userauth_request: invalid user {u} [preauth]",
            sshd + f"Failed password for invalid user {u} from {ip} port {port} ssh2",
            sshd + f"Received disconnect from {ip}: 11: Bye Bye [preauth]",
        ], 1
    if kind < 0.82:  # public keys only, until too many
        return [
            sshd + f"error: maximum authentication attempts exceeded for invalid user {u} "
            f"from {ip} port {port} ssh2 [preauth]",
            sshd + f"Disconnecting invalid user {u} {ip} port {port}: Too many authentication "
            f"failures [preauth]",
        ], 1
    if kind < 0.90:  # a scanner: no attempt
        return [sshd + f"Connection closed by {ip} port {port} [preauth]"], 0
    if kind < 0.95:
        return [sshd + f"banner exchange: Connection from {ip} port {port}: invalid format"], 0
    return [sshd + f"Did not receive identification string from {ip} port {port}"], 0


def legit(rnd: random.Random, pid: int) -> list[str]:
    port = rnd.randrange(1024, 65535)
    kind = rnd.random()
    if kind < 0.5:
        return [
            f"CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
            f"CRON[{pid}]: pam_unix(cron:session): session closed for user root",
        ]
    if kind < 0.8:
        return [
            f"sshd[{pid}]: Accepted publickey for admin from 192.0.2.10 port {port} ssh2: "
            f"ED25519 SHA256:Zk3bq0f0nUXbqYFfCkM2VmJ1wqYqYpO4mT1m4H4l9w8",
            f"sshd[{pid}]: pam_unix(sshd:session): session opened for user admin(uid=1000) by (uid=0)",
            f"systemd-logind[612]: New session {pid % 997} of user admin.",
            f"sshd[{pid}]: Received disconnect from 192.0.2.10 port {port}:11: disconnected by user",
            f"sshd[{pid}]: pam_unix(sshd:session): session closed for user admin",
        ]
    if kind < 0.95:
        return [
            "sudo:    admin : TTY=pts/0 ; PWD=/home/admin ; USER=root ; COMMAND=/usr/bin/apt update",
            f"sudo[{pid}]: pam_unix(sudo:session): session opened for user root(uid=0) by admin(uid=1000)",
            f"sudo[{pid}]: pam_unix(sudo:session): session closed for user root",
        ]
    return [
        f"su[{pid}]: (to root) admin on pts/0",
        f"su[{pid}]: pam_unix(su-l:session): session opened for user root(uid=0) by admin(uid=1000)",
    ]


def stamp(t: float, fmt: str) -> str:
    if fmt == "rfc3339":
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}+00:00"
    lt = time.localtime(t)
    return time.strftime("%b ", lt) + f"{lt.tm_mday:2d} " + time.strftime("%H:%M:%S", lt)


def generate(lines: int, seed: int, end: float, fmt: str) -> tuple[list[str], Counter]:
    rnd = random.Random(seed)
    pool = attacker_pool(rnd, 2000)
    cum, acc = [], 0.0
    for i in range(len(pool)):  # a few loud sources, a long tail
        acc += 1 / (i + 1) ** 0.9
        cum.append(acc)
    start = end - 86400
    events: list[tuple[float, str]] = []
    truth: Counter = Counter()
    pid = 1000
    written = 0
    while written < lines:
        pid = pid + rnd.randrange(1, 7)
        if pid > 4_000_000:
            pid = 1000
        t = start + rnd.random() * 86400
        if rnd.random() < 0.85:
            ip = rnd.choices(pool, cum_weights=cum)[0]
            msgs, attempts = session(rnd, ip, pid)
            if attempts:
                truth[ip] += attempts
        else:
            msgs = legit(rnd, pid)
        events += [(min(t + i * 0.3, end), m) for i, m in enumerate(msgs)]
        written += len(msgs)
    events.sort(key=lambda e: e[0])
    return [f"{stamp(t, fmt)} {HOST} {m}" for t, m in events], truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--truth")
    ap.add_argument("--format", choices=["rfc3164", "rfc3339"], default="rfc3164")
    ap.add_argument("--end", type=float, default=None, help="end of the day (default: now)")
    ap.add_argument("--seed", type=int, default=6)
    a = ap.parse_args()
    end = a.end if a.end is not None else time.time()
    out, truth = generate(a.lines, a.seed, end, a.format)
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    if a.truth:
        with open(a.truth, "w") as f:
            json.dump(
                {"lines": len(out), "failures": dict(truth.most_common()), "total": sum(truth.values())},
                f,
                indent=0,
            )
    print(f"{a.out}: {len(out)} lines, {len(truth)} attacking addresses, {sum(truth.values())} attempts")


if __name__ == "__main__":
    main()
