"""Writes tests/samples/logs/corpus-*.log: every wording the rules cover, as each daemon writes
it (its source's format strings, the versions in the rule files), in each line framing a
real server produces (RFC 3164 with padded and unpadded days, RFC 3339, RFC 5424, no host,
CRLF, a trailing blank), with IPv4, IPv6 and IPv4-mapped addresses, and with user names
that carry another address. Each line gets its annotation ("# expect: ...", see auth.log)
from the template, never from the rules. Run it again after adding a wording.
"""

from __future__ import annotations

import itertools
from pathlib import Path

OUT = Path(__file__).parent / "logs"

# (program, message with {ip} {user} {port} {n}, kind, counts-as-attempts or None)
SYSLOG = {
    "sshd": [
        ("sshd", "Failed password for {user} from {ip} port {port} ssh2", "failure", 1),
        ("sshd", "Failed password for invalid user {user} from {ip} port {port} ssh2", "failure", 1),
        ("sshd", "Failed password for illegal user {user} from {ip} port {port} ssh2", "failure", 1),
        (
            "sshd",
            "Failed keyboard-interactive/pam for invalid user {user} from {ip} port {port} ssh2",
            "failure",
            1,
        ),
        ("sshd", "Failed password for {user} from {ip} port {port}", "failure", 1),
        ("sshd", "Failed password for {user} from {ip} port {port} ssh1", "failure", 1),
        (
            "sshd",
            "Failed publickey for {user} from {ip} port {port} ssh2: RSA SHA256:Zk3bq0f0nU/XbqY+FfCkM2",
            "failure",
            1,
        ),
        (
            "sshd",
            "Failed publickey for {user} from {ip} port {port} ssh2: RSA 8c:e3:aa:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d",
            "failure",
            1,
        ),
        ("sshd", "Failed none for invalid user {user} from {ip} port {port} ssh2", "failure", 1),
        ("sshd", "Failed unknown for invalid user {user} from {ip} port {port} ssh2", "failure", 1),
        (
            "sshd",
            "message repeated {n} times: [ Failed password for {user} from {ip} port {port} ssh2]",
            "failure",
            "n",
        ),
        ("sshd", "Invalid user {user} from {ip} port {port}", "failure", 1),
        ("sshd", "Invalid user {user} from {ip}", "failure", 1),
        ("sshd", "User {user} from {ip} not allowed because not listed in AllowUsers", "failure", 1),
        (
            "sshd",
            "User {user} from {ip} not allowed because none of user's groups are listed in AllowGroups",
            "failure",
            1,
        ),
        (
            "sshd",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}",
            "failure",
            1,
        ),
        (
            "sshd",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip} ",
            "failure",
            1,
        ),
        ("sshd", "error: PAM: Authentication failure for {user} from {ip}", "failure", 1),
        (
            "sshd",
            "error: PAM: User not known to the underlying authentication module for illegal user {user} from {ip}",
            "failure",
            1,
        ),
        (
            "sshd",
            "error: maximum authentication attempts exceeded for {user} from {ip} port {port} ssh2 [preauth]",
            "failure",
            1,
        ),
        (
            "sshd",
            "Disconnecting authenticating user {user} {ip} port {port}: Too many authentication failures [preauth]",
            "failure",
            1,
        ),
        (
            "sshd",
            "Received disconnect from {ip}: 3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
            "failure",
            1,
        ),
        ("sshd", "ROOT LOGIN REFUSED FROM {ip}", "failure", 1),
        ("sshd", "Accepted password for {user} from {ip} port {port} ssh2", "success", None),
        (
            "sshd",
            "Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:abcdefghijkl",
            "success",
            None,
        ),
        ("sshd", "Connection closed by {ip} port {port} [preauth]", "harmless", None),
        ("sshd", "Received disconnect from {ip} port {port}:11: Bye Bye [preauth]", "harmless", None),
        ("sshd", "Disconnected from invalid user {user} {ip} port {port} [preauth]", "harmless", None),
        ("sshd-session", "Failed password for {user} from {ip} port {port} ssh2", "failure", 1),
        ("dropbear", "Bad password attempt for '{user}' from {ip}:{port}", "failure", 1),
        ("dropbear", "Login attempt for nonexistent user '{user}' from {ip}:{port}", "failure", 1),
    ],
    "pam": [
        (
            "vsftpd",
            "pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser={user} rhost={ip}",
            "failure",
            1,
        ),
        (
            "proftpd",
            "pam_unix(proftpd:auth): authentication failure; logname= uid=0 euid=0 tty=/dev/ftpd{port} ruser={user} rhost={ip}  user={user}",
            "failure",
            1,
        ),
        (
            "pure-ftpd",
            "(pam_unix) authentication failure; logname= uid=0 euid=0 tty=pure-ftpd ruser={user} rhost={ip}",
            "failure",
            1,
        ),
        (
            "dovecot",
            "pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser={user} rhost={ip}",
            "failure",
            1,
        ),
    ],
    "dovecot": [
        (
            "dovecot",
            "imap-login: Disconnected (auth failed, {n} attempts in 12 secs): user=<{user}>, method=PLAIN, rip={ip}, lip=198.51.100.1, TLS, session=<Zk3bq0f0>",
            "failure",
            "n",
        ),
        (
            "dovecot",
            "imap-login: Aborted login (auth failed, {n} attempts in 4 secs): user=<{user}>, method=PLAIN, rip={ip}, lip=198.51.100.1, session=<Zk3bq0f0>",
            "failure",
            "n",
        ),
        (
            "dovecot",
            "pop3-login: Aborted login (auth failed, {n} attempts): user=<{user}>, method=PLAIN, rip={ip}, lip=198.51.100.1",
            "failure",
            "n",
        ),
        (
            "dovecot",
            "pop3-login: Disconnected: Inactivity (auth failed, {n} attempts in 178 secs): user=<{user}>, method=PLAIN, rip={ip}, lip=198.51.100.1",
            "failure",
            "n",
        ),
        (
            "dovecot",
            "auth-worker({port}): pam({user},{ip}): pam_authenticate() failed: Authentication failure (password mismatch?)",
            "failure",
            1,
        ),
        ("dovecot", "auth: passwd-file({user},{ip}): unknown user", "failure", 1),
        ("dovecot", "auth-worker({port}): sql({user},{ip},<Yx7+W8+Io>): Password mismatch", "failure", 1),
        (
            "dovecot",
            "imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=198.51.100.1, mpid={port}, TLS",
            "success",
            None,
        ),
    ],
    "postfix": [
        (
            "postfix/smtpd",
            "warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
            "failure",
            1,
        ),
        (
            "postfix/smtpd",
            "warning: host.example.net[{ip}]: SASL PLAIN authentication failed: authentication failure",
            "failure",
            1,
        ),
        (
            "postfix/submission/smtpd",
            "warning: unknown[{ip}]:{port}: SASL login authentication failed: ",
            "failure",
            1,
        ),
        (
            "postfix-out/smtpd",
            "warning: unknown[{ip}]: SASL CRAM-MD5 authentication failed: authentication failure",
            "failure",
            1,
        ),
        (
            "postfix/smtpd",
            "warning: unknown[{ip}]: SASL LOGIN authentication failed: Connection lost to authentication server",
            "harmless",
            None,
        ),
        (
            "postfix/smtpd",
            "warning: unknown[{ip}]: SASL LOGIN authentication failed: Invalid authentication mechanism",
            "harmless",
            None,
        ),
        ("postfix/smtpd", "connect from unknown[{ip}]", "harmless", None),
    ],
    "exim": [
        (
            "exim",
            "2026-11-21 05:20:01 dovecot_login authenticator failed for (User) [{ip}]:{port} I=[198.51.100.1]:25: 535 Incorrect authentication data (set_id={user})",
            "failure",
            1,
        ),
        (
            "exim4",
            "login authenticator failed for h.example.net [{ip}]: 535 Incorrect authentication data: 1 Time(s)",
            "failure",
            1,
        ),
        (
            "exim",
            "plain authenticator failed for ([{ip}]) [{ip}]:{port}: 535 Incorrect authentication data",
            "failure",
            1,
        ),
    ],
    "courier": [
        ("imapd", "LOGIN FAILED, user={user}, ip=[::ffff:{ip4}]", "failure", 1),
        ("imapd-ssl", "LOGIN FAILED, method=PLAIN, user={user}, ip=[{ip}]", "failure", 1),
        ("courierpop3login", "LOGIN FAILED, user={user}, ip=[{ip}]", "failure", 1),
        ("pop3d", "LOGIN FAILED, method=PLAIN, ip=[{ip}], port=[{port}]", "failure", 1),
    ],
    "ftp": [
        ("vsftpd", '[{user}] FAIL LOGIN: Client "{ip}"', "failure", 1),
        ("pure-ftpd", "(?@{ip}) [WARNING] Authentication failed for user [{user}]", "failure", 1),
        (
            "proftpd",
            "ftp.example.com (client.example.net[{ip}]): USER {user} (Login failed): Incorrect password",
            "failure",
            1,
        ),
        (
            "proftpd",
            "ftp.example.com ({ip}[{ip}]): USER {user}: no such user found from {ip} [{ip}] to 198.51.100.1:21",
            "failure",
            1,
        ),
        ("proftpd", "ftp.example.com ({ip}[{ip}]) - SECURITY VIOLATION: root login attempted", "failure", 1),
    ],
}
USERS = ["admin", "bob@example.com", "Test User", "x from 10.9.8.7 port 1 ssh2", "o'neil"]
ADDRESSES = ["192.0.2.{k}", "2001:db8::{k:x}", "198.51.100.{k}"]
FRAMES = [
    lambda prog, pid, msg: f"Nov 21 05:20:{pid % 60:02d} web1 {prog}[{pid}]: {msg}",
    lambda prog, pid, msg: f"Feb 7 16:01:{pid % 60:02d} web1 {prog}[{pid}]: {msg}",
    lambda prog, pid, msg: f"2026-11-21T05:20:{pid % 60:02d}.488019+00:00 web1 {prog}[{pid}]: {msg}",
    lambda prog, pid, msg: (
        f"<38>1 2026-11-21T05:20:{pid % 60:02d}.954167+00:00 web1.example.com {prog} {pid} - - {msg}"
    ),
    lambda prog, pid, msg: f"Nov 21 05:20:{pid % 60:02d} web1 {prog}[{pid}]: {msg}\r",
]


def lines(group: str, templates):
    """(annotation, line) pairs: each template in several framings, addresses and users."""
    k = 0
    out = []
    for (prog, msg, kind, counts), frame in itertools.product(templates, range(5)):
        k += 1
        pid = 4000 + len(out)
        ip = ADDRESSES[k % 3].format(k=k % 250 + 1)
        user = USERS[k % len(USERS)]
        if "'{user}'" in msg or "[{user}]" in msg or "<{user}>" in msg or "{user}:" in msg:
            user = USERS[k % 3]  # quoted or bracketed: any of the plain names
        if "[{ip}]" in msg and ":" in ip and "ip=[" not in msg:
            ip = f"192.0.2.{k % 250 + 1}"  # exim, postfix, proftpd: keep the bracket forms simple
        if '"{ip}"' in msg or "{ip}:{port}" in msg or "rhost={ip}" in msg:
            ip = f"192.0.2.{k % 250 + 1}"
        if any(
            w in msg
            for w in (
                "Failed none",
                "pam_unix",
                "rhost",
                "LOGIN FAILED",
                "auth-worker",
                "auth:",
                "USER {user}",
            )
        ):
            user = USERS[k % 2]  # a name without blanks: PAM's ruser=, dovecot's auth processes
        n = 1 + k % 4
        text = msg.format(ip=ip, ip4=f"192.0.2.{k % 250 + 1}", user=user, port=40000 + k, n=n)
        framing = FRAMES[(k + frame) % len(FRAMES)]
        line = framing(prog, pid, text)
        address = ip if "ip4" not in msg else f"192.0.2.{k % 250 + 1}"
        if kind == "failure":
            attempts = n if counts == "n" else counts
            note = f"# expect: failure {address}" + (f" attempts={attempts}")
        elif kind == "success":
            note = f"# expect: success {address}"
        else:
            note = f"# expect: {kind}"
        out.append((note, line))
    return out


# native formats: (line with {ip} {user} {port} {n}, kind, attempts or None)
NATIVE = {
    "web": [
        (
            '[Sat Nov 21 05:20:01.{port} 2026] [auth_basic:error] [pid 4242:tid 140] [client {ip}:{port}] AH01617: user {user}: authentication failure for "/private": Password Mismatch',
            "failure",
            1,
        ),
        (
            "[Sat Nov 21 05:20:01 2026] [auth_basic:error] [pid 4242] [client {ip}:{port}] AH01618: user {user} not found: /private",
            "failure",
            1,
        ),
        (
            '[Sat Nov 21 05:20:01 2026] [error] [client {ip}] user {user}: authentication failure for "/": Password Mismatch',
            "failure",
            1,
        ),
        ("[Sat Nov 21 05:20:01 2026] [error] [client {ip}] user {user} not found: /admin", "failure", 1),
        (
            "[Sat Nov 21 05:20:01 2026] [auth_digest:error] [pid 4242] [client {ip}:{port}] AH01790: user `{user}' in realm `private' not found: /private",
            "failure",
            1,
        ),
        (
            '[Sat Nov 21 05:20:01 2026] [auth_basic:error] [pid 4242] [remote {ip}:{port}] AH01617: user {user}: authentication failure for "/": Password Mismatch',
            "failure",
            1,
        ),
        (
            '[Sat Nov 21 05:20:01 2026] [security2:error] [pid 4242] [client {ip}:{port}] [client {ip}] ModSecurity: Access denied with code 403 (phase 2). Pattern match "union select" at ARGS:id. [id "942100"] [uri "/q"]',
            "failure",
            1,
        ),
        (
            '[Sat Nov 21 05:20:01 2026] [error] [client {ip}] ModSecurity: Access denied with code 406 (phase 1). [file "x.conf"] [line "1"] [id "1"]',
            "failure",
            1,
        ),
        (
            "[Sat Nov 21 05:20:01 2026] [core:info] [pid 4242] [client {ip}:{port}] AH00128: File does not exist: /srv/www/x",
            "harmless",
            None,
        ),
        (
            '2026/11/21 05:20:01 [error] 4242#4242: *{port} user "{user}": password mismatch, client: {ip}, server: example.org, request: "GET /private/ HTTP/1.1", host: "example.org"',
            "failure",
            1,
        ),
        (
            '2026/11/21 05:20:01 [error] 4242#4242: *{port} user "{user}" was not found in "/etc/nginx/.htpasswd", client: {ip}, server: example.org, request: "GET / HTTP/1.1", host: "example.org"',
            "failure",
            1,
        ),
        (
            "2026/11/21 05:20:01 [error] 4242#4242: *{port} PAM: user '{user}' - not authenticated: Authentication failure, client: {ip}, server: example.org, request: \"GET / HTTP/1.1\"",
            "failure",
            1,
        ),
        (
            '2026/11/21 05:20:01 [error] 4242#4242: *{port} [client {ip}] ModSecurity: Access denied with code 403 (phase 2). Matched "Operator" [file "x"] [uri "/"]',
            "failure",
            1,
        ),
        (
            '2026/11/21 05:20:01 [error] 4242#4242: *{port} open() "/srv/www/favicon.ico" failed (2: No such file or directory), client: {ip}, server: example.org',
            "harmless",
            None,
        ),
        (
            "2026-11-21 05:20:01 login authenticator failed for (User) [{ip}]:{port}: 535 Incorrect authentication data (set_id={user})",
            "failure",
            1,
        ),
        (
            "2026-11-21 05:20:01.123 +0000 [4242] dovecot_plain authenticator failed for h.example.net (x) [{ip}]:{port} I=[198.51.100.1]:587: 535 Incorrect authentication data (set_id={user})",
            "failure",
            1,
        ),
        ('Sat Nov 21 05:20:01 2026 [pid 4242] [{user}] FAIL LOGIN: Client "{ip}"', "failure", 1),
        ('Sat Nov 21 05:20:01 2026 [pid 4242] [{user}] OK LOGIN: Client "{ip}"', "success", None),
    ],
}


def native_lines(templates):
    out = []
    for (line, kind, counts), frame in itertools.product(templates, range(3)):
        k = len(out) + 1
        ip = ["192.0.2.{k}", "198.51.100.{k}", "::ffff:203.0.113.{k}"][frame].format(k=k % 250 + 1)
        if "[client {ip}:{port}]" in line or "[remote {ip}" in line:
            ip = f"192.0.2.{k % 250 + 1}"
        user = (
            ["admin", "bob", "web master"][frame]
            if '"{user}"' not in line
            else ["x", 'y", client: 10.0.0.1', "z"][frame]
        )
        text = line.format(ip=ip, user=user, port=40000 + k)
        address = ip.removeprefix("::ffff:")
        note = {
            "failure": f"# expect: failure {address} attempts={counts}",
            "success": f"# expect: success {address}",
        }
        out.append((note.get(kind, f"# expect: {kind}"), text))
    return out


def main() -> None:
    for group, templates in SYSLOG.items():
        pairs = lines(group, templates)
        text = [
            f"# {group}: written by tests/samples/make_corpus.py from the daemons' wordings (see its docstring)"
        ]
        for note, line in pairs:
            text += [note, line]
        (OUT / f"corpus-{group}.log").write_text("\n".join(text) + "\n")
        print(f"corpus-{group}.log: {len(pairs)} lines")
    for group, templates in NATIVE.items():
        pairs = native_lines(templates)
        text = [f"# {group}: daemons' own log formats (apache, nginx, exim, vsftpd); see make_corpus.py"]
        for note, line in pairs:
            text += [note, line]
        (OUT / f"corpus-{group}.log").write_text("\n".join(text) + "\n")
        print(f"corpus-{group}.log: {len(pairs)} lines")


if __name__ == "__main__":
    main()
