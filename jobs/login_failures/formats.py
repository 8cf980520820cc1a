"""Log line formats: how a line starts (its timestamp, host, program and pid) and how its
timestamp becomes epoch seconds.

Syslog formats (rfc3164, rfc3339, rfc5424, and tai64n for daemontools/runit logs) carry a
program name and pid: detection rules for them name the program. Native formats (apache, nginx, exim, vsftpd) are one daemon's own
file: rules for them start right after the timestamp.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

MONTHS = {
    m.encode(): i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


_LOOSE_3164 = re.compile(rb"(?:<\d{1,3}>)?([A-Z][a-z]{2}) {1,2}(\d{1,2}) (?:(\d{4}) )?(\d\d:\d\d:\d\d)")


class YearGuess:
    """Resolves year-less RFC 3164 stamps: the year that puts the stamp no more than a day
    after the reference time (the file's last change), so December lines read in January
    land in the previous year."""

    def __init__(self, reference: float):
        self.reference = reference
        self.ref_year = time.localtime(reference).tm_year
        self.cache: dict[bytes, float] = {}

    def parse(self, stamp: bytes) -> float | None:
        """'Nov 21 05:20:01' (or 'Nov  1 ...', 'Nov 1 ...', 'Nov 21 2026 05:20:01', with a
        leading <PRI>) to epoch seconds, None if malformed."""
        if stamp[3:4] != b" " or stamp[6:7] != b" " or stamp[9:10] != b":":
            m = _LOOSE_3164.match(stamp)
            if m is None:
                return None
            mon, day, year, clock = m.groups()
            if year is not None:
                return _local(b"%s %s %s %s" % (mon, day, year, clock), "%b %d %Y %H:%M:%S")
            stamp = b"%s %2s %s" % (mon, day, clock)
        day_key = stamp[:6]
        base = self.cache.get(day_key)
        if base is None:
            base = self._day_start(day_key)
            if base is None:
                return None
            self.cache[day_key] = base
        try:
            h, m, s = int(stamp[7:9]), int(stamp[10:12]), int(stamp[13:15])
        except ValueError:
            return None
        if stamp[9:10] != b":" or stamp[12:13] != b":" or h > 23 or m > 59 or s > 60:
            return None
        return base + h * 3600 + m * 60 + s

    def _day_start(self, day_key: bytes) -> float | None:
        month = MONTHS.get(day_key[:3])
        try:
            day = int(day_key[4:6])
        except ValueError:
            return None
        if month is None or not 1 <= day <= 31:
            return None
        for year in (self.ref_year + 1, self.ref_year, self.ref_year - 1):
            try:
                start = time.mktime((year, month, day, 0, 0, 0, 0, 0, -1))
            except (OverflowError, ValueError):
                continue
            if start <= self.reference + 86400:
                return start
        return None


def _iso(token: bytes) -> float | None:
    try:
        text = token.decode("ascii")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        return datetime.fromisoformat(text).timestamp()
    except (UnicodeDecodeError, ValueError):
        return None


def _local(text: bytes, fmt: str) -> float | None:
    try:
        return time.mktime(time.strptime(text.decode("ascii"), fmt))
    except (UnicodeDecodeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class Format:
    name: str
    prefix: bytes  # regex from the newline before the line to the program/rule
    syslog: bool  # True: rules name a program; prog/pid follow the prefix
    progpid: bytes  # how "prog[pid]: " looks (syslog formats); {prog} is filled in
    stamp: Callable[[bytes, YearGuess], float | None]  # whole line -> epoch seconds


def _stamp_3164(line: bytes, years: YearGuess) -> float | None:
    return years.parse(line[:30])


def _stamp_tai64n(line: bytes, years: YearGuess) -> float | None:
    # @4000000045f0d2a40a3c8d14: 2**62 + TAI seconds, then nanoseconds (daemontools, runit)
    try:
        return int(line[1:17], 16) - (1 << 62) - 10 + int(line[17:25], 16) / 1e9
    except ValueError:
        return None


def _stamp_3339(line: bytes, years: YearGuess) -> float | None:
    if line.startswith(b"<"):
        line = line[line.find(b">") + 1 :]
    token = line.split(b" ", 1)[0]
    if len(token) == 10:  # "2026-11-21 05:20:01"
        token = line[:19].replace(b" ", b"T")
    return _iso(token)


def _stamp_5424(line: bytes, years: YearGuess) -> float | None:
    parts = line.split(b" ", 2)
    return _iso(parts[1]) if len(parts) > 2 and parts[1] != b"-" else None


def _stamp_apache(line: bytes, years: YearGuess) -> float | None:
    # [Sat Nov 21 05:20:01.123456 2026]
    end = line.find(b"]")
    if not line.startswith(b"[") or end < 0:
        return None
    parts = line[1:end].split()
    if len(parts) != 5:
        return None
    clock = parts[3].split(b".")[0]
    return _local(b" ".join([parts[1], parts[2], clock, parts[4]]), "%b %d %H:%M:%S %Y")


def _stamp_nginx(line: bytes, years: YearGuess) -> float | None:
    return _local(line[:19], "%Y/%m/%d %H:%M:%S")


def _stamp_exim(line: bytes, years: YearGuess) -> float | None:
    return _local(line[:19], "%Y-%m-%d %H:%M:%S")


def _stamp_vsftpd(line: bytes, years: YearGuess) -> float | None:
    return _local(line[4:24], "%b %d %H:%M:%S %Y")


# "prog[pid]: ", "prog: ", proftpd's "prog[pid] ", the old PAM "sshd(pam_unix)[pid]: ", and
# Solaris' "[ID 800047 auth.info] " after it
SYSLOG_PROGPID = rb"\[?(?P<prog>{prog})(?:\(pam_unix\))?\]?(?:\[(?P<pid>\d+)\]:? |:? )(?:\[ID \d+ [\w.]+\] )?"
HOST = rb"(?:[^ \n]+ )?"  # the host; absent in some files (dovecot's own, busybox syslogd)
FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format(
            "rfc3164",
            rb"\n(?:<\d{1,3}>)?[A-Z][a-z]{2} {1,2}\d{1,2} (?:\d{4} )?\d\d:\d\d:\d\d(?:\.\d+)? " + HOST,
            True,
            SYSLOG_PROGPID,
            _stamp_3164,
        ),
        Format(
            "rfc3339",
            rb"\n(?:<\d{1,3}>)?\d{4}-\d\d-\d\d[T ][\d:.,]+(?:Z|[+-]\d\d:?\d\d)? " + HOST,
            True,
            SYSLOG_PROGPID,
            _stamp_3339,
        ),
        # <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG (rsyslog's RSYSLOG_SyslogProtocol23Format)
        Format(
            "rfc5424",
            rb"\n<\d{1,3}>1 \S+ [^ \n]+ ",
            True,
            rb"(?P<prog>{prog}) (?:(?P<pid>\d+)|-) [^ \n]+ (?:-|(?:\[(?:[^\]\"\n]|\"[^\"\n]*\")*\])+) ?"
            rb"(?:\xef\xbb\xbf)?",
            _stamp_5424,
        ),
        # no stamp at all (fail2ban's journal representation, some containers): `logs test` only
        Format("bare", rb"\n" + HOST, True, SYSLOG_PROGPID, lambda line, years: None),
        Format("tai64n", rb"\n@[0-9a-f]{24} " + HOST, True, SYSLOG_PROGPID, _stamp_tai64n),
        Format(
            "apache", rb"\n\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d [\d:.]+ \d{4}\] ", False, b"", _stamp_apache
        ),
        Format("nginx", rb"\n\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", False, b"", _stamp_nginx),
        Format(
            "exim",
            rb"\n\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [+-]\d{4})? (?:\[\d+\] |[^ \n]+ exim4?\[\d+\]: )?",
            False,
            b"",
            _stamp_exim,
        ),
        Format(
            "vsftpd",
            rb"\n[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} ",
            False,
            b"",
            _stamp_vsftpd,
        ),
    ]
}


def detect_format(sample: bytes) -> str:
    """The syslog format of a file from its first lines (rfc3164 when unsure)."""
    for name in ("rfc5424", "rfc3339", "tai64n", "rfc3164"):
        pat = re.compile(FORMATS[name].prefix)
        if pat.match(b"\n" + sample.split(b"\n", 1)[0] + b" "):
            return name
    return "rfc3164"
