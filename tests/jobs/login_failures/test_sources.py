"""Reading across rotation with real logrotate runs, the last line without a newline, the
journal's trusted fields against a line forged with logger's identity."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from helpers import load_config, need, write_config
from nightwarden.jobs.login_failures import reading, sources


class Writer:
    """An sshd writing one failure per line from a distinct address: the count per address
    over all runs must be exactly one, whatever rotation did in between."""

    def __init__(self, path: Path):
        self.path = path
        self.n = 0

    def write(self, count: int, newline_at_end: bool = True) -> None:
        with open(self.path, "a") as f:
            for _ in range(count):
                self.n += 1
                a, b = divmod(self.n, 250)
                f.write(
                    f"Nov 21 05:{self.n // 60 % 60:02d}:{self.n % 60:02d} web1 sshd[{1000 + self.n}]: "
                    f"Failed password for root from 10.{a // 250}.{a % 250}.{b + 1} port {self.n} ssh2"
                )
                if newline_at_end or _ < count - 1:
                    f.write("\n")

    def finish_line(self) -> None:
        with open(self.path, "a") as f:
            f.write("\n")

    def expected(self) -> set[str]:
        out = set()
        for n in range(1, self.n + 1):
            a, b = divmod(n, 250)
            out.add(f"10.{a // 250}.{a % 250}.{b + 1}")
        return out


class Reader:
    """The job's way of reading: scan_new with the cursor kept between runs."""

    def __init__(self, tmp_path: Path, log: Path):
        cfg_path = write_config(
            tmp_path,
            f"""
[logins]
sources = [{{path = "{log}", format = "rfc3164", services = ["sshd"]}}]
journal = "no"
""",
        )
        self.config = load_config(cfg_path)
        self.source = reading.configured(self.config)[0]
        self.cursor = None
        self.counts: dict[str, int] = {}
        self.lost: list[str] = []

    def run(self) -> None:
        scan = reading.scan_new(self.source, self.cursor, self.config)
        assert not scan.error, scan.error
        if scan.lost:
            self.lost.append(scan.lost)
        for _, addr, _, n in scan.tally.series():
            self.counts[addr] = self.counts.get(addr, 0) + n
        self.cursor = scan.cursor


def logrotate(tmp_path: Path, log: Path, options: str) -> None:
    conf = tmp_path / "rotate.conf"
    conf.write_text(
        textwrap.dedent(f"""\
        {log} {{
            rotate 9
            missingok
            {options}
        }}
        """)
    )
    done = subprocess.run(
        ["logrotate", "-f", "-s", str(tmp_path / "rotate.state"), str(conf)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "options",
    [
        "create",
        "create\ncompress",
        "create\ncompress\ndelaycompress",
        "copytruncate",
        "copytruncate\ncompress\ndelaycompress",
        "create\ncompress\ndateext\ndateformat -%Y%m%d%H%M%S",
    ],
)
@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.parametrize("rotations", [1, 2])
def test_no_line_lost_or_counted_twice_across_logrotate(tmp_path, options, rotations):
    need("logrotate")
    log = tmp_path / "log" / "auth.log"
    log.parent.mkdir()
    writer = Writer(log)
    writer.write(30)
    reader = Reader(tmp_path, log)
    reader.run()
    for _cycle in range(3):
        writer.write(20)
        for _ in range(rotations):
            if "dateext" in options:
                time.sleep(1.1)  # a date suffix to the second: one rotation a second
            logrotate(tmp_path, log, options)
            if not log.exists():  # a daemon re-opening its log after `create`
                log.touch()
            writer.write(15)
        reader.run()
    writer.write(7)
    reader.run()
    assert reader.lost == []
    assert set(reader.counts) == writer.expected()
    assert set(reader.counts.values()) == {1}
    assert len(list(log.parent.glob("auth.log[.-]*.gz"))) > 0 or "compress" not in options
    if "dateext" in options:
        assert len(list(log.parent.glob("auth.log-2*"))) == 3 * rotations


@pytest.mark.peer
def test_a_last_line_without_newline_waits_and_is_read_once_rotated(tmp_path):
    need("logrotate")
    log = tmp_path / "auth.log"
    writer = Writer(log)
    writer.write(3, newline_at_end=False)
    reader = Reader(tmp_path, log)
    reader.run()
    assert len(reader.counts) == 2  # the third is still being written
    writer.finish_line()
    reader.run()
    assert len(reader.counts) == 3
    writer.write(2, newline_at_end=False)  # then the daemon dies mid-line; rotation
    logrotate(tmp_path, log, "create")
    reader.run()
    assert set(reader.counts) == writer.expected() and set(reader.counts.values()) == {1}


def test_a_rotated_away_file_that_vanished_is_said(tmp_path):
    log = tmp_path / "auth.log"
    writer = Writer(log)
    writer.write(3)
    reader = Reader(tmp_path, log)
    reader.run()
    writer.write(2)
    log.unlink()  # rotated and deleted (rotate 0)
    writer.write(4)
    reader.run()
    assert len(reader.lost) == 1 and "not found among" in reader.lost[0]
    assert len(reader.counts) == 7  # the 2 in the deleted file are gone


def test_a_symlink_in_place_of_the_log_is_refused(tmp_path):
    (tmp_path / "real.log").write_text("x\n")
    log = tmp_path / "auth.log"
    log.symlink_to(tmp_path / "real.log")
    reader = Reader(tmp_path, log)
    scan = reading.scan_new(reader.source, None, reader.config)
    assert "symlink" in scan.error and str(log) in scan.error


def test_a_fifo_in_place_of_the_log_is_refused_not_waited_on(tmp_path):
    import os

    log = tmp_path / "auth.log"
    os.mkfifo(log)
    reader = Reader(tmp_path, log)
    started = time.monotonic()
    scan = reading.scan_new(reader.source, None, reader.config)  # would block forever on open
    assert time.monotonic() - started < 5
    assert "not a regular file" in scan.error and str(log) in scan.error


PEAK = """
import sys
from nightwarden.jobs import load_config
from nightwarden.jobs.login_failures import reading
cfg = load_config(sys.argv[1])
scan = reading.scan_new(reading.configured(cfg)[0], None, cfg)
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(scan.overlong, int(peak) // 1024, *sorted(scan.tally.total()))
"""


def test_a_huge_line_without_a_newline_is_skipped_and_said_with_bounded_memory(tmp_path):
    import sys

    log = tmp_path / "auth.log"
    with open(log, "wb") as f:
        f.write(b"Nov 21 05:00:01 web1 sshd[1]: Failed password for root from 10.0.0.1 port 1 ssh2\n")
        f.write(b"Nov 21 05:00:02 web1 sshd[2]: ")
        for _ in range(150):  # a 150 MB line
            f.write(b"A" * (1 << 20))
        f.write(b"\n")
        f.write(b"Nov 21 05:00:03 web1 sshd[3]: Failed password for root from 10.0.0.2 port 1 ssh2\n")
    reader = Reader(tmp_path, log)
    cfg = reader.config.files[0]
    done = subprocess.run([sys.executable, "-c", PEAK, str(cfg)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    overlong, peak_mb, *addresses = done.stdout.split()
    assert overlong == "1"
    assert addresses == ["10.0.0.1", "10.0.0.2"], "lines around the long one are still read"
    assert int(peak_mb) < 120, f"{peak_mb} MB for a 150 MB line"


def test_a_log_truncated_in_place_with_the_same_first_line_loses_nothing(tmp_path):
    log = tmp_path / "auth.log"
    writer = Writer(log)
    writer.write(1)
    first = log.read_bytes()
    writer.write(20)
    reader = Reader(tmp_path, log)
    reader.run()
    writer.write(5)  # written after the run: only in the copy logrotate makes
    (tmp_path / "auth.log.1").write_bytes(log.read_bytes())  # copytruncate: copy, then truncate
    log.write_bytes(first)  # the same first line again (a daemon's banner, say)
    writer.write(40)  # more than before: the file is longer than the old offset
    reader.run()
    assert reader.counts == {a: 1 for a in writer.expected()} | {
        first.split(b" from ")[1].split()[0].decode(): 2
    }


def test_a_copytruncate_between_two_chunks_of_one_read_loses_and_repeats_nothing(tmp_path):
    """logrotate copies and truncates the log while a read is between two chunks, and the
    daemon writes past where the read stood before it goes on: what the read took next would
    be the new file's middle. It stops there; the next read finds the rest in the copy."""
    log = tmp_path / "auth.log"
    old = [f"line {i:04d} of the old file\n" for i in range(400)]
    new = [f"line {i:04d} of the new one\n" for i in range(800)]
    log.write_text("".join(old))
    plan = sources.plan(log, None)
    chunks = sources.read_part(plan.parts[0], chunk=4096)
    got = [next(chunks)[0]]  # the first chunk; the read stands inside the file
    (tmp_path / "auth.log.1").write_bytes(log.read_bytes())
    with open(log, "r+") as f:
        f.truncate(0)
    log.write_text("".join(new))  # longer than the old file: past where the read stood
    got += [text for text, _ in chunks]
    cursor = sources.cursor_after(log, plan)
    plan = sources.plan(log, cursor)
    assert [p.path.name for p in plan.parts] == ["auth.log.1", "auth.log"]
    for part in plan.parts:
        got += [text for text, _ in sources.read_part(part)]
    lines = b"".join(got).decode().splitlines(keepends=True)
    assert lines == old + new


def test_a_rotated_file_caught_half_compressed_is_read_once(tmp_path):
    """logrotate's compress: `.1` and `.1.gz` are both there for a moment, with the same
    lines; a read then finds the old lines once, in either state of the cursor."""
    import gzip
    import os

    log = tmp_path / "auth.log"
    old = "".join(f"line {i} of the old file\n" for i in range(50))
    half = old.rfind("\n", 0, len(old) // 2) + 1
    for cursor_first in (True, False):
        for p in tmp_path.glob("auth.log*"):
            p.unlink()
        log.write_text("" if cursor_first else old[:half])
        plan = sources.plan(log, None)
        for part in plan.parts:
            list(sources.read_part(part))
        cursor = sources.cursor_after(log, plan)
        if cursor_first:
            log.write_text(old)
        else:
            with open(log, "a") as f:
                f.write(old[half:])
        os.rename(log, tmp_path / "auth.log.1")
        log.write_text("line 0 of the new one\n")
        with gzip.open(tmp_path / "auth.log.1.gz", "wb") as z:
            z.write((tmp_path / "auth.log.1").read_bytes())  # the compressed copy, .1 not yet gone
        plan = sources.plan(log, cursor)
        got = b"".join(t for part in plan.parts for t, _ in sources.read_part(part)).decode()
        expected = (old if cursor_first else old[half:]) + "line 0 of the new one\n"
        assert got == expected, (cursor_first, [p.path.name for p in plan.parts])


# -- the journal --------------------------------------------------------------------------------


def journal_entry(
    cursor: str,
    comm: str,
    ident: str,
    message: str,
    unit: str = "",
    pid: int = 4242,
    usec: int = 1795239080488019,
    uid: str = "0",
    exe: str = "",
    user_unit: str = "",
) -> dict:
    e = {
        "__CURSOR": cursor,
        "__REALTIME_TIMESTAMP": str(usec),
        "_HOSTNAME": "web1",
        "SYSLOG_IDENTIFIER": ident,
        "_COMM": comm,
        "_PID": str(pid),
        "MESSAGE": message,
    }
    for name, value in (
        ("_SYSTEMD_UNIT", unit),
        ("_UID", uid),
        ("_EXE", exe),
        ("_SYSTEMD_USER_UNIT", user_unit),
    ):
        if value:
            e[name] = value
    return e


def test_journal_trusts_comm_not_the_claimed_identifier(tmp_path):
    """`logger -t sshd "Failed password ..."` run by a local user lands in the journal with
    SYSLOG_IDENTIFIER=sshd but _COMM=logger: not counted, reported as forged. The same text
    in a syslog file is indistinguishable from sshd's own (the report calls such a source
    spoofable)."""
    entries = [
        journal_entry(
            "c1", "sshd", "sshd", "Failed password for root from 203.0.113.70 port 1 ssh2", unit="ssh.service"
        ),
        journal_entry(
            "c2",
            "logger",
            "sshd",
            "Failed password for root from 192.0.2.99 port 1 ssh2",
            unit="session-4.scope",
            pid=5555,
        ),
        journal_entry(
            "c3",
            "sshd-session",
            "sshd-session",
            "Failed password for root from 203.0.113.70 port 2 ssh2",
            pid=4243,
            exe="/usr/lib/openssh/sshd-session",
        ),
        # a message carrying a newline cannot start a line of its own
        journal_entry(
            "c4",
            "sshd",
            "sshd",
            "x\nNov 21 05:00:00 web1 sshd[1]: Failed password for root from 192.0.2.98 port 1 ssh2",
            unit="ssh.service",
            pid=4244,
        ),
    ]
    raw = "\n".join(json.dumps(e) for e in entries).encode()
    batch = sources.journal_lines(raw, None, "web1")
    assert batch.cursor == "c4" and batch.entries == 4
    assert len(batch.forged) == 1 and "logger" in batch.forged[0] and "192.0.2.99" in batch.forged[0]
    from nightwarden.jobs.login_failures import counting, rules

    tally = counting.Tally()
    counting.AttemptCounter(rules.compile_rules("rfc3339", ["sshd"]), tally, 0).scan(b"\n" + batch.text)
    assert tally.total() == {"203.0.113.70": 2}


@pytest.mark.parametrize(
    "comm, ident, unit, uid, exe, user_unit, counted",
    [
        ("sshd", "sshd", "ssh.service", "0", "/usr/sbin/sshd", "", True),
        ("sshd", "sshd", "", "0", "/usr/sbin/sshd", "", True),  # sshd started by hand
        ("sshd", "sshd", "ssh@3-10.0.0.1:22-203.0.113.1:5555.service", "0", "", "", True),
        # any user can run a copy of a binary called sshd, in their own unit or session
        ("sshd", "sshd", "user@1000.service", "1000", "/home/eve/sshd", "sshd.service", False),
        ("sshd", "sshd", "session-7.scope", "1000", "/home/eve/sshd", "", False),
        ("sshd", "sshd", "ssh.service", "1000", "/usr/sbin/sshd", "", False),  # not root
        ("sshd", "sshd", "session-7.scope", "0", "/tmp/sshd", "", False),  # root, but not sshd
        ("smtpd", "postfix/smtpd", "postfix@-.service", "107", "/usr/lib/postfix/sbin/smtpd", "", True),
        ("logger", "postfix/smtpd", "session-7.scope", "1000", "/usr/bin/logger", "", False),
        ("smtpd", "postfix/smtpd", "user@1000.service", "1000", "/home/eve/smtpd", "x.service", False),
        ("imap-login", "dovecot", "dovecot.service", "111", "/usr/lib/dovecot/imap-login", "", True),
        ("dovecot", "dovecot", "run-u5.service", "1000", "/home/eve/dovecot", "", False),
    ],
)
def test_journal_counts_a_daemon_only_from_its_own_trusted_process(
    comm, ident, unit, uid, exe, user_unit, counted
):
    message = "Failed password for root from 203.0.113.80 port 1 ssh2"
    if ident.startswith("postfix"):
        message = "warning: unknown[203.0.113.80]: SASL LOGIN authentication failed: bad"
    elif ident == "dovecot":
        message = (
            "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, rip=203.0.113.80, "
            "lip=10.0.0.1"
        )
    entry = journal_entry("c1", comm, ident, message, unit=unit, uid=uid, exe=exe, user_unit=user_unit)
    batch = sources.journal_lines(json.dumps(entry).encode(), None, "web1")
    assert bool(batch.forged) is not counted
    from nightwarden.jobs.login_failures import counting, rules

    service = {"sshd": "sshd", "postfix/smtpd": "smtpauth", "dovecot": "imapd"}[ident]
    tally = counting.Tally()
    counting.AttemptCounter(rules.compile_rules("rfc3339", [service]), tally, 0).scan(b"\n" + batch.text)
    assert tally.total() == ({"203.0.113.80": 1} if counted else {})


def test_journal_source_through_its_command_with_a_cursor(tmp_path):
    """The command seam: a script stands in for journalctl (no journal in CI) and ignores
    --after-cursor, so the reader itself skips what it has seen."""
    data = tmp_path / "journal.json"
    script = tmp_path / "journalctl"
    script.write_text(f"#!/bin/sh\nexec cat {data}\n")
    script.chmod(0o755)
    entries = [
        journal_entry(
            f"c{i}",
            "sshd",
            "sshd",
            f"Failed password for root from 203.0.113.80 port {i} ssh2",
            unit="ssh.service",
            pid=100 + i,
        )
        for i in range(1, 4)
    ]
    data.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    cfg = load_config(
        write_config(
            tmp_path,
            f"""
[logins]
sources = []
journal = "yes"
journal_command = ["{script}"]
""",
        )
    )
    (source,) = reading.configured(cfg)
    assert source.trusted and source.name == "journal"
    first = reading.scan_new(source, None, cfg)
    assert first.tally.total() == {"203.0.113.80": 3} and first.cursor["cursor"] == "c3"
    entries.append(
        journal_entry(
            "c4",
            "sshd",
            "sshd",
            "Failed password for root from 203.0.113.80 port 4 ssh2",
            unit="ssh.service",
            pid=104,
        )
    )
    data.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    second = reading.scan_new(source, first.cursor, cfg)
    assert second.tally.total() == {"203.0.113.80": 1} and second.cursor["cursor"] == "c4"


def test_journal_command_failure_is_one_clear_error(tmp_path):
    cfg = load_config(
        write_config(
            tmp_path,
            """
[logins]
sources = []
journal = "yes"
journal_command = ["/bin/false"]
""",
        )
    )
    (source,) = reading.configured(cfg)
    scan = reading.scan_new(source, None, cfg)
    assert scan.error.startswith("journal: /bin/false exited 1")
