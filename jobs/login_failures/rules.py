"""Login-failure detection rules, one small table per daemon, and their compilation into one
regular expression per log format and set of services.

Each rule names the wording a daemon really writes (version in the comment), what kind of
line it is and where the address, user and count are:

  failed   sshd's "Failed <method> for ..." (with "message repeated N times": N)
  pre      sshd lines of a connection that has not (yet) logged Failed: "Invalid user",
           "not allowed because", pam_unix auth failure, "too many authentication failures"
  fail     one line, one failure (n: that many) for the other daemons
  local    a local failure without an address (su, sudo): reported, never blocked
  success  a successful login
  known    understood and harmless (only compiled for the report's "not understood" count)

How sshd's lines are counted (README, "How failures are counted"): per connection (sshd pid
and address), attempts = max(Failed lines, 1 if the connection logged any "pre" line).
So "Invalid user x" then "Failed password for invalid user x" is one attempt, "message
repeated 5 times: [ Failed ...]" is five, pam_unix's line beside the Failed line adds none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .formats import FORMATS, Format

IP = rb"(?P<ip>[0-9A-Fa-f:.]{3,45})"
SSH_METHODS = (
    rb"(?:password|publickey|keyboard-interactive/pam|keyboard-interactive|hostbased|gssapi-with-mic|none)"
)
# "ssh2: RSA SHA256:..." or a certificate: "ssh2: ED25519-CERT SHA256:... ID x (serial 1) CA ..."
SSH_KEYINFO = rb"(?:: [A-Z][A-Z0-9-]* SHA256:[A-Za-z0-9+/=]+(?: ID .{0,200} \(serial \d+\) CA [A-Z][A-Z0-9-]* SHA256:[A-Za-z0-9+/=]+)?)?"
SSHD = rb"sshd-session|sshd-auth|sshd"


@dataclass
class LogRule:
    service: str
    kind: str
    prog: bytes | None  # syslog program regex; None: a native format's own file
    body: bytes  # regex of the message, with named groups ip, user, n, pid
    tag: bytes = b""  # literal the message starts with (fast dispatch)
    tag_rx: bytes = b""  # or a regex for it
    formats: tuple = ()  # native formats this rule is for
    key_group: str = ""  # the group that tells this rule from others with its tag
    # filled in by compile
    index: int = -1
    pos: dict = field(default_factory=dict)
    key: int | None = None  # a group that is set whenever this rule matched

    def has_tag(self, tag: bytes) -> bool:
        """Whether a message starting with `tag` (as the look-ahead captured it) is this rule's."""
        return self.tag == tag or bool(self.tag_rx and re.fullmatch(self.tag_rx, tag))


def _lit(text: str) -> bytes:
    return re.escape(text.encode())


def _known(service: str, prog: bytes, *tags: str) -> list[LogRule]:
    return [LogRule(service, "known", prog, _lit(t) + rb".*", tag=t.encode()) for t in tags]


def _vsftpd(kind: str, word: bytes, native: bool) -> LogRule:
    pid = rb"\[pid \d+\] " if native else b""
    return LogRule(
        "ftpd",
        kind,
        None if native else rb"vsftpd",
        pid
        + rb"\[(?P<user>[^\]\n]*)\] "
        + word
        + rb" LOGIN: Client \"(?:::ffff:)?"
        + IP
        + rb"\"(?:, \".*\")?",
        tag_rx=pid + rb"\[[^\]\n]*\] " + word + rb" LOGIN",
        formats=("vsftpd",) if native else (),
    )


def _dovecot(service: str, protocols: bytes) -> LogRule:
    return LogRule(
        service,
        "fail",
        rb"dovecot",
        protocols + rb"-login: [A-Z][^(\n]*\(auth failed, (?P<n>\d+) attempts? in \d+ secs?\)"
        rb"(?: \([a-z_]+\))?: user=<(?P<user>[^>\n]*)>, (?:method=\S+, )?rip="
        + IP
        + rb", lip=[^,\n]+(?:, .*)?",
        tag_rx=protocols + rb"-login: [A-Z]",
    )


def _courier(service: str, prog: bytes) -> LogRule:
    return LogRule(
        service,
        "fail",
        prog,
        rb"LOGIN FAILED, (?:method=\S+, )?user=(?P<user>[^,\n]*), ip=\[(?:::ffff:)?" + IP + rb"\].*",
        tag=b"LOGIN FAILED, ",
    )


RULES: list[LogRule] = [
    # OpenSSH 9.2p1 (Debian 12), 8.4p1, 6.6p1 (no port on "Invalid user"); 9.8+ logs as sshd-session
    LogRule(
        "sshd",
        "failed",
        SSHD,
        rb"Failed "
        + SSH_METHODS
        + rb" for (?:invalid user )?(?P<user>.*?) from "
        + IP
        + rb" port \d+ ssh2"
        + SSH_KEYINFO,
        tag=b"Failed ",
    ),
    LogRule(
        "sshd",
        "failed",
        SSHD,
        rb"message repeated (?P<n>\d+) times: \[ Failed "
        + SSH_METHODS
        + rb" for (?:invalid user )?(?P<user>.*?) from "
        + IP
        + rb" port \d+ ssh2"
        + SSH_KEYINFO
        + rb"\]",
        tag=b"message repeated ",
    ),
    LogRule(
        "sshd",
        "pre",
        SSHD,
        rb"Invalid user (?P<user>.*?) from " + IP + rb"(?: port \d+)?",
        tag=b"Invalid user ",
    ),
    LogRule(
        "sshd",
        "pre",
        SSHD,
        rb"User (?P<user>.*?) from " + IP + rb" not allowed because (?:not listed in|listed in|"
        rb"none of user's groups are listed in|a group is listed in) (?:AllowUsers|DenyUsers|"
        rb"AllowGroups|DenyGroups)",
        tag=b"User ",
    ),
    LogRule(
        "sshd",
        "pre",
        SSHD,
        rb"pam_unix\(sshd:auth\): authentication failure; logname=\S* uid=\d+ euid=\d+ tty=\S* "
        rb"ruser=\S* rhost=" + IP + rb"(?:  user=(?P<user>\S*))?",
        tag=b"pam_unix(sshd:auth): authentication failure;",
    ),
    LogRule(
        "sshd",
        "pre",
        SSHD,
        rb"error: maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*?) from "
        + IP
        + rb" port \d+ ssh2 \[preauth\]",
        tag=b"error: maximum authentication attempts",
    ),
    LogRule(
        "sshd",
        "pre",
        SSHD,
        rb"Disconnecting (?:authenticating|invalid) user (?P<user>.*?) "
        + IP
        + rb" port \d+: Too many authentication failures \[preauth\]",
        tag=b"Disconnecting ",
    ),
    # OpenSSH 7.x and older: no address; the connection's pid names it
    LogRule(
        "sshd",
        "pre",
        SSHD,
        rb"Disconnecting: Too many authentication failures(?: for (?:invalid user )?(?P<user>.*?))?"
        rb"(?: \[preauth\])?",
        tag=b"Disconnecting: Too many",
    ),
    LogRule(
        "sshd",
        "success",
        SSHD,
        rb"Accepted \S+ for (?P<user>.*?) from " + IP + rb" port \d+ ssh2" + SSH_KEYINFO,
        tag=b"Accepted ",
    ),
    *_known(
        "sshd",
        SSHD,
        "Received disconnect from ",
        "Disconnected from ",
        "Connection closed by ",
        "Connection reset by ",
        "pam_unix(sshd:session): ",
        "pam_unix(sshd:auth): check pass;",
        "Did not receive identification string",
        "banner exchange: ",
        "Unable to negotiate ",
        "Server listening on ",
        "Received signal ",
        "input_userauth_request: ",
        "PAM ",
        "error: kex_exchange_identification: ",
        "fatal: Timeout before authentication",
        "Timeout before authentication",
        "Postponed ",
        "Starting session: ",
        "Close session: ",
        "pam_systemd(sshd:session): ",
        "error: Received disconnect from ",
        "Connection from ",
        "Accepted key ",
        "userauth_pubkey: ",
        "drop connection #",
        "error: PAM: ",
        "error: beginning MaxStartups",
        "exited MaxStartups",
    ),
    # util-linux 2.38 su
    LogRule(
        "su",
        "local",
        rb"su",
        rb"FAILED SU \(to (?P<target>\S+)\) (?P<user>\S+) on \S+",
        tag=b"FAILED SU (to ",
    ),
    LogRule("su", "success", rb"su", rb"\(to (?P<target>\S+)\) (?P<user>\S+) on \S+", tag=b"(to "),
    *_known(
        "su",
        rb"su",
        "pam_unix(su:session): ",
        "pam_unix(su-l:session): ",
        "pam_unix(su:auth): ",
        "pam_unix(su-l:auth): ",
        "pam_systemd(su",
    ),
    # sudo 1.9.13 (the user name is padded to 8 columns); told apart by their key group
    LogRule(
        "sudo",
        "local",
        rb"sudo",
        rb" *(?P<user>\S+) : (?P<n>\d+) incorrect password attempts? ; TTY=.*",
        tag_rx=rb" *\S+ : ",
        key_group="n",
    ),
    LogRule(
        "sudo",
        "success",
        rb"sudo",
        rb" *(?P<user>\S+) : TTY=\S+ ; PWD=.*? ; USER=(?P<target>\S+) ; COMMAND=.*",
        tag_rx=rb" *\S+ : ",
        key_group="target",
    ),
    LogRule(
        "sudo",
        "local",
        rb"sudo",
        rb" *(?P<user>\S+) : user NOT in sudoers ; .*",
        tag_rx=rb" *\S+ : ",
        key_group="user",
    ),
    *_known(
        "sudo", rb"sudo", "pam_unix(sudo:session): ", "pam_unix(sudo:auth): ", "pam_unix(sudo-i:session): "
    ),
    # cron, logind, systemd: harmless and frequent
    *_known("cron", rb"CRON|cron", "pam_unix(cron:session): ", "(root) CMD ", "(CRON) "),
    *_known(
        "logind",
        rb"systemd-logind",
        "New session ",
        "Session ",
        "Removed session ",
        "Watching system buttons",
        "New seat ",
        "Power key pressed",
    ),
    *_known("systemd", rb"systemd", "pam_unix(systemd-user:session): "),
    # pure-ftpd 1.0.50 (syslog)
    LogRule(
        "ftpd",
        "fail",
        rb"pure-ftpd",
        rb"\((?:\?|[^@)\n]*)@" + IP + rb"\) \[WARNING\] Authentication failed for user \[(?P<user>.*)\]",
        tag_rx=rb"\([^)\n]*\) \[WARNING\] Authentication failed",
    ),
    LogRule(
        "ftpd",
        "success",
        rb"pure-ftpd",
        rb"\((?:\?|[^@)\n]*)@" + IP + rb"\) \[INFO\] (?P<user>\S+) is now logged in",
        tag_rx=rb"\([^)\n]*\) \[INFO\] \S+ is now logged in",
    ),
    # vsftpd 3.0.3: with syslog_enable=YES, or its own vsftpd.log
    _vsftpd("fail", b"FAIL", native=False),
    _vsftpd("success", b"OK", native=False),
    _vsftpd("fail", b"FAIL", native=True),
    _vsftpd("success", b"OK", native=True),
    # dovecot 2.3.19: "N attempts" is N failures
    _dovecot("imapd", rb"(?:imap|managesieve|submission)"),
    _dovecot("pop3d", rb"pop3"),
    # courier-imap 5.x
    _courier("imapd", rb"imapd(?:-ssl)?|courier-imapd"),
    _courier("pop3d", rb"pop3d(?:-ssl)?|courier-pop3d"),
    # postfix 3.7
    LogRule(
        "smtpauth",
        "fail",
        rb"postfix/(?:[\w-]+/)*smtpd",
        rb"warning: [^\[\n]*\[" + IP + rb"\]: SASL [A-Z0-9-]+ authentication failed: .*",
        tag=b"warning: ",
    ),
    LogRule(
        "smtpauth",
        "success",
        rb"postfix/(?:[\w-]+/)*smtpd",
        rb"(?:[0-9A-Za-z]+|NOQUEUE): client=[^\[\n]*\["
        + IP
        + rb"\](?::\d+)?, sasl_method=\S+, sasl_username=(?P<user>\S+)",
        tag_rx=rb"[0-9A-Za-z]+: client=",
    ),
    # exim 4.96 mainlog
    LogRule(
        "smtpauth",
        "fail",
        None,
        rb"\S+ authenticator failed for (?:\S+ )?(?:\([^)\n]*\) )?\["
        + IP
        + rb"\](?::\d+)?: 535 Incorrect authentication data(?: \(set_id=(?P<user>[^)\n]*)\))?",
        tag_rx=rb"\S+ authenticator failed for ",
        formats=("exim",),
    ),
    # apache 2.4 error log: basic auth and mod_security
    LogRule(
        "htaccess",
        "fail",
        None,
        rb"\[auth_basic:error\] \[pid \d+(?::tid \d+)?\] \[client " + IP + rb":\d+\] "
        rb"AH0161[78]: user (?P<user>.*?)(?:: authentication failure for \"[^\"\n]*\": "
        rb"Password Mismatch| not found: \S*)",
        tag=b"[auth_basic:error] ",
        formats=("apache",),
    ),
    LogRule(
        "modsec",
        "fail",
        None,
        rb"\[(?:security2)?:error\] \[pid \d+(?::tid \d+)?\] \[client "
        rb"(?P<ip>[0-9A-Fa-f:.]{3,45}?)(?::\d+)?\] "
        rb"(?:\[client \S+\] )?ModSecurity: Access denied .*",
        tag_rx=rb"\[(?:security2)?:error\] ",
        formats=("apache",),
    ),
    # nginx 1.22 error log: basic auth and ModSecurity-nginx
    LogRule(
        "htaccess",
        "fail",
        None,
        rb"\[error\] \d+#\d+: \*\d+ user \"(?P<user>[^\"\n]*)\"(?:: password mismatch| was not found "
        rb"in \"[^\"\n]*\"), client: " + IP + rb", server: .*",
        tag=b"[error] ",
        formats=("nginx",),
    ),
    LogRule(
        "modsec",
        "fail",
        None,
        rb"\[error\] \d+#\d+: \*\d+ \[client " + IP + rb"\] ModSecurity: Access denied .*",
        tag=b"[error] ",
        formats=("nginx",),
    ),
]

SERVICES = sorted({r.service for r in RULES if r.kind in ("failed", "pre", "fail")})


@dataclass
class Compiled:
    """One source's combined expression and how to read its tuples."""

    fmt: Format
    regex: re.Pattern
    rules: list[LogRule]
    tag_pos: int
    prog_pos: int | None
    pid_pos: int | None
    by_tag: dict[tuple, list[LogRule]] = field(default_factory=dict)
    single: dict = field(default_factory=dict)

    def candidates(self, tag: bytes, prog: bytes = b"") -> list[LogRule]:
        """Rules whose tag and program fit, sorted out once per (tag, program) text."""
        key = (tag, prog)
        cands = self.by_tag.get(key)
        if cands is None:
            cands = [
                r for r in self.rules if r.has_tag(tag) and (r.prog is None or re.fullmatch(r.prog, prog))
            ]
            if len(self.by_tag) < 100_000:
                self.by_tag[key] = cands
        return cands

    def only_rule(self, tag: bytes) -> LogRule | None:
        """The one rule every line with this tag belongs to, when there is exactly one (the
        tag is a literal no other literal tag starts with, and one rule of one program has
        it); None when lines must be told apart one by one."""
        if tag in self.single:
            return self.single[tag]
        cands = [r for r in self.rules if r.has_tag(tag)]
        ambiguous = any(r.tag_rx for r in cands) or any(
            o.tag != tag and o.tag.startswith(tag) for o in self.rules if o.tag
        )
        rule = cands[0] if len(cands) == 1 and not ambiguous else None
        if len(self.single) < 100_000:
            self.single[tag] = rule
        return rule

    def rule_of(self, t: tuple) -> LogRule | None:
        """The rule a findall tuple came from: the candidates for its tag and program, the
        first whose key group is set (a rule without groups is known by its tag alone)."""
        prog = t[self.prog_pos] if self.prog_pos is not None else b""
        for r in self.candidates(t[self.tag_pos], prog):
            if r.key is None or t[r.key]:
                return r
        return None


def services_without_rules(fmt_name: str, services: list[str]) -> list[str]:
    """The services that have no rule in this format ("auto" stands for the syslog
    formats): a source configured with one of them would never match a line."""
    name = "rfc3164" if fmt_name == "auto" else fmt_name
    return [s for s in services if not select(name, [s], False)]


def select(fmt_name: str, services: list[str], known: bool) -> list[LogRule]:
    fmt = FORMATS[fmt_name]
    out = []
    for r in RULES:
        if r.service not in services and r.kind != "known":
            continue
        if r.kind == "known" and (
            not known or (r.service not in services and r.service not in ("cron", "logind", "systemd"))
        ):
            continue
        if fmt.syslog and r.prog is not None or (not fmt.syslog and fmt_name in r.formats):
            out.append(r)
    return out


_cache: dict[tuple, Compiled] = {}


def compile_rules(fmt_name: str, services: list[str], known: bool = False, users: bool = True) -> Compiled:
    """The combined expression: newline, the format's prefix, [prog[pid]: ], a look-ahead
    that captures the tag, then every rule's body, anchored at the end of the line."""
    key = (fmt_name, tuple(sorted(services)), known, users)
    if key in _cache:
        return _cache[key]
    fmt = FORMATS[fmt_name]
    rules = [
        LogRule(**{k: v for k, v in r.__dict__.items() if k not in ("index", "pos")})
        for r in select(fmt_name, services, known)
    ]
    if not rules:
        raise ValueError(f"no rules for format {fmt_name} and services {', '.join(services)}")
    literal = sorted({re.escape(r.tag) for r in rules if r.tag}, key=len, reverse=True)
    tags = literal + list(dict.fromkeys(r.tag_rx for r in rules if not r.tag))
    bodies: dict[bytes | None, list[bytes]] = {}
    for i, r in enumerate(rules):
        r.index = i
        keep = {"ip", "n", "pid", r.key_group} | ({"user", "target"} if users else set())
        body = re.sub(
            rb"\(\?P<(\w+)>",
            lambda m, i=i, keep=keep, r=r: (
                b"(?P<r%d_%s>" % (i, m.group(1))
                if m.group(1).decode() in keep or r.kind in ("success", "local")
                else b"(?:"
            ),
            r.body,
        )
        bodies.setdefault(r.prog, []).append(body)
    look = rb"(?=(?P<tag>" + b"|".join(tags) + rb"))"
    if fmt.syslog:
        # each program's bodies only after that program's name: (?(pN)...|(?!))
        progs = list(bodies)
        names = b"|".join(b"(?P<p%d>%s)" % (j, p) for j, p in enumerate(progs))
        alts = b"|".join(b"(?(p%d)(?:%s)|(?!))" % (j, b"|".join(bodies[p])) for j, p in enumerate(progs))
        pattern = fmt.prefix + fmt.progpid.replace(b"{prog}", names) + look + b"(?:" + alts + rb")$"
    else:
        pattern = fmt.prefix + look + b"(?:" + b"|".join(bodies[None]) + rb")$"
    regex = re.compile(pattern, re.M)
    names = regex.groupindex
    for r in rules:
        r.pos = {n.split("_", 1)[1]: idx - 1 for n, idx in names.items() if n.startswith(f"r{r.index}_")}
        r.key = (
            r.pos[r.key_group]
            if r.key_group
            else next((r.pos[g] for g in ("ip", "user", "n") if g in r.pos), None)
        )
    compiled = Compiled(
        fmt,
        regex,
        rules,
        names["tag"] - 1,
        names["prog"] - 1 if "prog" in names else None,
        names["pid"] - 1 if "pid" in names else None,
    )
    _cache[key] = compiled
    return compiled
