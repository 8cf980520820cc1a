"""The detection rules as data: the annotated sample corpus (tests/samples/logs), every shipped
rule's own example, drop-in rule files, and `nightwarden logs test`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from helpers import TESTS, run_cli
from nightwarden.jobs.login_failures import explain, rules
from nightwarden.lib.errors import ConfigError

SAMPLES = TESTS / "samples" / "logs"
REF = time.mktime((2026, 11, 21, 12, 0, 0, 0, 0, -1))


def annotated(path: Path):
    """(line number, line, expectation) for every annotated line of a sample file."""
    want = None
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        text = raw.decode()
        m = re.match(r"# expect: (\w+)(.*)", text)
        if m:
            fields = m.group(2).split()
            want = {"kind": None if m.group(1) == "none" else m.group(1)}
            for f in fields:
                key, _, value = f.partition("=")
                if not value:
                    want["address"] = key
                else:
                    want[key] = int(value) if key == "attempts" else value
            continue
        if want is not None and not text.startswith("#"):
            yield number, raw, want
            want = None


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.log")))
def test_every_annotated_sample_line_is_read_as_annotated(sample):
    ex = explain.Explainer(rules.shipped(), rules.SERVICES_ALL, None, REF)
    checked = 0
    for number, raw, want in annotated(SAMPLES / sample):
        v = ex.explain(number, raw)
        got = {"kind": v.kind}
        if "address" in want:
            got["address"] = v.address
        if "user" in want:
            got["user"] = v.user
        if "attempts" in want:
            got["attempts"] = v.attempts
        assert got == want, f"{sample}:{number}: {raw.decode()}  [{v.rule}]"
        checked += 1
    assert checked >= 6


def test_every_shipped_rule_example_matches_its_own_rule():
    """A rule's example, after a syslog or native prefix, is matched by that rule and no other."""
    prefixes = {
        "apache": "[Sat Nov 21 05:20:01.000001 2026] ",
        "nginx": "2026/11/21 05:20:01 ",
        "exim": "2026-11-21 05:20:01 ",
        "vsftpd": "Sat Nov 21 05:20:01 2026 ",
    }
    import tomllib

    checked = 0
    for path in sorted((Path(rules.__file__).parent / "ruleset").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        for spec in data.get("rules", []):
            if "example" not in spec:
                continue
            fmts = spec.get("formats", data.get("formats", []))
            progs = spec.get("programs", data.get("programs", []))
            if progs:
                name = progs[0].split("(")[0]
                prog = {"postfix": "postfix/smtpd"}.get(name, name)
                line = f"Nov 21 05:20:01 web1 {prog}[4242]: {spec['example']}"
            else:
                line = prefixes[fmts[0]] + spec["example"]
            ex = explain.Explainer(rules.shipped(), rules.SERVICES_ALL, None, REF)
            v = ex.explain(1, line.encode())
            assert v.rule == spec["id"], f"{path.name}: {line}"
            checked += 1
    assert checked >= 25


@pytest.mark.parametrize(
    "line, address",
    [
        # sshd: the user name holds a complete "from A port N ssh2"
        (
            "sshd[1]: Failed password for invalid user x from 10.0.0.1 port 1 ssh2 from 192.0.2.9 port 2 ssh2",
            "192.0.2.9",
        ),
        ("sshd[1]: Invalid user a from 10.0.0.1 port 1 from 192.0.2.9 port 2", "192.0.2.9"),
        (
            "sshd[1]: User a from 10.0.0.1 not allowed because listed in DenyUsers from 192.0.2.9 not allowed "
            "because listed in DenyUsers",
            "192.0.2.9",
        ),
        ("sshd[1]: error: PAM: Authentication failure for a from 10.0.0.1 for b from 192.0.2.9", "192.0.2.9"),
        ("dropbear[1]: Bad password attempt for 'x' from 10.0.0.1:22' from 192.0.2.9:4000", "192.0.2.9"),
        (
            "dovecot: pop3-login: Aborted login (auth failed, 1 attempts): user=<x>, rip=10.0.0.1, lip=1.1.1.1>, "
            "method=PLAIN, rip=192.0.2.9, lip=198.51.100.1",
            "192.0.2.9",
        ),
        ("dovecot: auth: passwd-file(a,10.0.0.1,192.0.2.9): unknown user", "192.0.2.9"),
        ("imapd: LOGIN FAILED, user=x, ip=[10.0.0.1], ip=[192.0.2.9]", "192.0.2.9"),
        ('vsftpd[1]: [x] FAIL LOGIN: Client "10.0.0.1"] FAIL LOGIN: Client "192.0.2.9"', "192.0.2.9"),
        ("pure-ftpd: (?@192.0.2.9) [WARNING] Authentication failed for user [(?@10.0.0.1)]", "192.0.2.9"),
        ("proftpd[1]: ftp (h[192.0.2.9]): USER a (h[10.0.0.1]): Incorrect password", "192.0.2.9"),
        (
            "exim[1]: login authenticator failed for (x) [192.0.2.9]: 535 Incorrect authentication data "
            "(set_id=[10.0.0.1])",
            "192.0.2.9",
        ),
    ],
)
def test_a_user_name_that_carries_another_address_does_not_move_it(line, address):
    ex = explain.Explainer(rules.shipped(), rules.SERVICES_ALL, "rfc3164", REF)
    v = ex.explain(1, f"Nov 21 05:20:01 web1 {line}".encode())
    assert v.kind == "failure", v.rule
    assert v.address == address


def test_a_request_or_referrer_that_carries_another_client_does_not_move_it():
    ex = explain.Explainer(rules.shipped(), ["htaccess"], "nginx", REF)
    line = (
        '2026/11/21 05:20:01 [error] 1#1: *1 user "bob": password mismatch, client: 192.0.2.9, server: s, '
        'request: "GET /a HTTP/1.1", host: "h", referrer: "x\\": password mismatch, client: 10.0.0.1, '
        'server: s, request: \\"GET / HTTP/1.1\\""'
    )
    v = ex.explain(1, line.encode())
    assert v.address in (None, "192.0.2.9")  # never the address in the referrer
    apache = explain.Explainer(rules.shipped(), ["htaccess"], "apache", REF)
    v = apache.explain(
        1,
        b"[Sat Nov 21 05:20:01 2026] [error] [client 192.0.2.9] user a: authentication failure for "
        b'"/[client 10.0.0.1] user b: authentication failure for "/": Password Mismatch": Password Mismatch',
    )
    assert v.address == "192.0.2.9"


def test_a_drop_in_file_adds_overrides_and_disables_rules(tmp_path):
    (tmp_path / "10-local.toml").write_text(
        """
daemon = "site"
service = "sshd"
programs = ['myssh']

[[rules]]
id = "site.myssh"
match = 'bad login from <ADDR>'

[[rules]]
id = "sshd.root-refused"
disabled = true

[[rules]]
id = "sshd.illegal-user"
programs = ['sshd']
match = 'Illegal user <USER> from <ADDR> \\(override\\)'
"""
    )
    rs = rules.load(tmp_path)
    ex = explain.Explainer(rs, ["sshd"], "rfc3164", REF)
    assert ex.explain(1, b"Nov 21 05:20:01 h myssh[1]: bad login from 192.0.2.5").address == "192.0.2.5"
    assert ex.explain(2, b"Nov 21 05:20:01 h sshd[2]: ROOT LOGIN REFUSED FROM 192.0.2.6").kind is None
    assert ex.explain(3, b"Nov 21 05:20:01 h sshd[3]: Illegal user x from 192.0.2.7 (override)").address == (
        "192.0.2.7"
    )
    assert ex.explain(4, b"Nov 21 05:20:01 h sshd[4]: Illegal user x from 192.0.2.8").kind is None
    assert rules.shipped() is not rs and any(r.id == "sshd.root-refused" for r in rules.shipped().rules)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[[rules]]\nid = 'x'\nservice = 'sshd'\nprograms = ['a']\nmatch = 'x from <ADDR'\n",
            "x.toml:2: rule 'x'",
        ),
        (
            "[[rules]]\nid = 'x'\nservice = 'sshd'\nprograms = ['a']\nmatch = '(<ADDR>'\n",
            "bad regular expression",
        ),
        ("[[rules]]\nid = 'x'\nservice = 'nosuch'\nprograms = ['a']\nmatch = '<ADDR>'\n", "unknown service"),
        ("\n\n[[rules]]\nid = 'y'\nservice = 'sshd'\nprograms = ['a']\nmatch = '<WHO>'\n", "x.toml:4:"),
        ("[[rules]]\nid = 'x'\nkind = 'maybe'\n", "x.toml"),
        ("[[rules]\n", "x.toml: "),
        ("[[rules]]\nid = 'x'\nservice = 'sshd'\nprograms = ['a']\nmatch = 'no address'\n", "needs <ADDR>"),
    ],
)
def test_a_bad_rule_file_is_one_error_naming_the_file_and_line(tmp_path, text, message):
    (tmp_path / "x.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        rules.load(tmp_path)
    assert message in str(e.value)
    assert str(tmp_path / "x.toml") in str(e.value)


def test_logs_test_needs_no_configuration_and_says_what_each_line_matched(tmp_path):
    log = tmp_path / "auth.log"
    log.write_bytes(
        b"Nov 21 05:20:01 web1 sshd[4242]: Invalid user admin from 192.0.2.10 port 52144\r\n"
        b"Nov 21 05:20:02 web1 sshd[4242]: Failed password for invalid user admin from 192.0.2.10 port 52144 ssh2\n"
        b"something else entirely\n"
    )
    env = {"NIGHTWARDEN_CONFIG": str(tmp_path / "missing.toml")}
    out = run_cli("logs", "test", str(log), "--json", "--show", "all", env=env)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    first = records[0]
    assert first["service"] == "sshd" and first["kind"] == "failure" and first["address"] == "192.0.2.10"
    assert first["user"] == "admin" and first["attempts"] == 1 and first["rule"] == "sshd.invalid-user"
    assert first["time"].startswith(time.strftime("%Y-", time.gmtime(log.stat().st_mtime))[:2])
    assert records[1]["attempts"] == 0  # the same connection: one attempt in all
    assert records[2]["kind"] is None and records[2]["address"] is None
    text = run_cli("logs", "test", str(log), "--show", "missed", env=env)
    assert "not understood: something else entirely" in text.stdout
    assert "sshd" in text.stdout and "failure" in text.stdout  # the summary table
    none = run_cli("logs", "test", str(log), "--service", "ftpd", env=env)
    assert none.returncode == 1


def test_logs_test_refuses_a_fifo_and_a_missing_file(tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = run_cli("logs", "test", str(fifo))
    assert out.returncode == 65 and "not a regular file" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("logs", "test", str(tmp_path / "nope"))
    assert out.returncode == 66 and "no such file" in out.stderr


def test_logs_test_reads_journal_entries_with_the_journal_trust_rules(tmp_path):
    entry = {
        "__REALTIME_TIMESTAMP": "1795238401000000",
        "SYSLOG_IDENTIFIER": "sshd",
        "_COMM": "sshd",
        "_PID": "77",
        "_UID": "0",
        "_SYSTEMD_UNIT": "ssh.service",
        "_EXE": "/usr/sbin/sshd",
        "MESSAGE": "Failed password for root from 192.0.2.90 port 22 ssh2",
    }
    forged = dict(entry, _COMM="sshd", _UID="1000", _SYSTEMD_UNIT="user@1000.service", _EXE="/home/u/sshd")
    log = tmp_path / "journal.json"
    log.write_text(json.dumps(entry) + "\n" + json.dumps(forged) + "\n")
    out = run_cli("logs", "test", str(log), "--json", "--show", "all")
    trusted, fake = [json.loads(line) for line in out.stdout.splitlines()]
    assert trusted["address"] == "192.0.2.90" and trusted["kind"] == "failure"
    assert fake["kind"] is None and "forged" in fake["note"]


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.log")))
def test_the_job_counts_each_sample_as_its_annotations_add_up(sample, tmp_path):
    """The job's own reading (reading.scan_new, whole files, counting windows): the lines of
    each format go to a file of their own, and the attempts per address equal the sum of the
    annotations."""
    from nightwarden.jobs.login_failures import reading

    ex = explain.Explainer(rules.shipped(), rules.SERVICES_ALL, None, REF)
    by_format: dict[str, list[bytes]] = {}
    want: dict[str, dict[str, int]] = {}
    for number, raw, w in annotated(SAMPLES / sample):
        v = ex.explain(number, raw)
        if v.format is None or v.format == "bare":
            continue
        by_format.setdefault(v.format, []).append(raw)
        if w["kind"] == "failure" and w.get("address") and w.get("attempts"):
            per = want.setdefault(v.format, {})
            per[w["address"]] = per.get(w["address"], 0) + w["attempts"]

    class Config:
        class logins:
            resolution = 60
            interval = 3600
            dist_attack = 0

    import os

    for fmt, lines in by_format.items():
        path = tmp_path / f"{fmt}.log"
        path.write_bytes(b"\n".join(lines) + b"\n")
        os.utime(path, (REF, REF))
        source = reading.Source(str(path), path, fmt, list(rules.SERVICES_ALL), False)
        scan = reading.scan_new(source, None, Config())
        assert not scan.error
        assert scan.tally.total() == want.get(fmt, {}), f"{sample} ({fmt})"


def test_the_job_stops_on_a_bad_drop_in_with_one_line_and_uses_a_good_one(tmp_path):
    box = tmp_path / "box"
    (box / "etc" / "rules.d").mkdir(parents=True)
    (box / "var" / "log").mkdir(parents=True)
    now = time.localtime()
    stamp = time.strftime("%b ", now) + f"{now.tm_mday:2d} " + time.strftime("%H:%M:%S", now)
    (box / "var" / "log" / "auth.log").write_text(
        "".join(f"{stamp} web1 myssh[{i}]: bad login from 192.0.2.77\n" for i in range(6))
    )
    bad = box / "etc" / "rules.d" / "50-site.toml"
    bad.write_text("[[rules]]\nid = 'site'\nservice = 'sshd'\nprograms = ['myssh']\nmatch = '(<ADDR>'\n")
    done = run_cli("--sandbox", str(box), "login-failures", "--no-mail")
    assert done.returncode == 78
    assert done.stderr.count("\n") == 1 and f"{bad}:2: rule 'site'" in done.stderr
    bad.write_text(
        "[[rules]]\nid = 'site'\nservice = 'sshd'\nprograms = ['myssh']\nmatch = 'bad login from <ADDR>'\n"
    )
    done = run_cli("--sandbox", str(box), "login-failures", "--no-mail")
    assert done.returncode == 1, done.stderr  # blocked: six failures of the site's own wording
    assert "192.0.2.77" in done.stderr + done.stdout


def test_every_shipped_rule_file_passes_the_checks_a_drop_in_gets():
    """The shipped files are loaded without compiling each wording (start-up time); here they
    get every check an administrator's file gets."""
    import importlib.resources

    base = importlib.resources.files("nightwarden.jobs.login_failures") / "ruleset"
    files = sorted(p for p in base.iterdir() if p.name.endswith(".toml"))
    assert len(files) >= 10
    for path in files:
        assert rules.parse_file(path.read_text(), path.name, check_patterns=True)
