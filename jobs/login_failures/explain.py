"""`nightwarden logs test`: what the detection rules make of each line of a file (fail2ban-regex's
and `cscli explain`'s job). It needs no configuration, no sandbox and no state.

Each line goes through the job's own path: the combined expression of its format (given, or
the first syslog or native format whose rules understand the line) and the job's counter, line
by line with one tally, so `attempts` is what that line adds under the documented counting
(per sshd connection: "Invalid user" then "Failed password" is one attempt). A line that is a
`journalctl -o json` entry goes through the journal's trust rules first.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nightwarden.lib.errors import NoInputError, UsageError

from . import counting, formats, rules

SYSLOG = ("rfc5424", "rfc3339", "tai64n", "rfc3164", "bare")
NATIVE = ("apache", "nginx", "exim", "vsftpd")
MAX_LINE = 64 * 1024


@dataclass
class Verdict:
    line: int
    text: str
    service: str | None = None
    kind: str | None = None  # failure, success, harmless; None: no rule understood it
    address: str | None = None
    host: str | None = None  # a host name where the daemon wrote one instead of an address
    user: str | None = None
    attempts: int = 0
    time: str | None = None
    rule: str | None = None
    format: str | None = None
    note: str | None = None

    def record(self) -> dict:
        out = {k: getattr(self, k) for k in ("line", "text", "service", "kind", "address", "user")}
        out.update(attempts=self.attempts, time=self.time, rule=self.rule)
        for k in ("host", "format", "note"):
            if getattr(self, k):
                out[k] = getattr(self, k)
        return out


class Explainer:
    """Tells each line's rule and captures; keeps one tally so counting is the job's."""

    def __init__(self, ruleset, services, fmt: str | None, reference: float):
        self.ruleset = ruleset
        self.services = list(services)
        self.formats = [fmt] if fmt else list(SYSLOG + NATIVE)
        self.reference = reference
        self.tally = counting.Tally(want_users=True)
        self.counters: dict[str, counting.AttemptCounter] = {}
        self.compiled: dict[str, rules.Compiled | None] = {}
        self.years = formats.YearGuess(reference)

    def _compiled(self, name: str):
        if name not in self.compiled:
            try:
                self.compiled[name] = rules.compile_rules(name, self.services, True, True, self.ruleset)
            except ValueError:  # no rules for these services in this format
                self.compiled[name] = None
        return self.compiled[name]

    def explain(self, number: int, raw: bytes) -> Verdict:
        raw = raw.rstrip(b"\r\n")
        text = raw.decode("utf-8", "backslashreplace")
        v = Verdict(number, text)
        if raw.lstrip().startswith(b"{"):
            raw, v.note = _journal_line(raw)
            if raw is None:
                return v
        buf = b"\n" + raw
        for name in self.formats:
            c = self._compiled(name)
            m = c.regex.match(buf) if c is not None else None
            if m is None:
                continue
            groups = tuple(b"" if g is None else g for g in m.groups())
            rule = c.rule_of(groups)
            if rule is None:
                continue
            self._fill(v, c, rule, groups, name, raw)
            return v
        return v

    def _fill(self, v: Verdict, c, rule, groups, name: str, raw: bytes) -> None:
        v.format, v.rule, v.service, v.kind = name, rule.id, rule.service, rule.public_kind
        pos = rule.pos
        if "ip" in pos:
            value = groups[pos["ip"]].decode("ascii", "replace")
            v.address = counting.address(groups[pos["ip"]])
            if v.address is None:
                v.host = value
        if "user" in pos and groups[pos["user"]]:
            v.user = groups[pos["user"]].decode("utf-8", "backslashreplace")
        stamp = c.fmt.stamp(raw, self.years)
        if stamp is not None:
            v.time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
        if v.kind == "failure":
            v.attempts = self._count(name, raw)
            pid = groups[c.pid_pos] if c.pid_pos is not None else b""
            if "ip" not in pos and pid:
                v.address = counting.address(self.counters[name]._resolve([pid])[0][1])
            elif rule.kind == "failed" and self._pre(pid) not in (b"", groups[pos["ip"]]):
                v.address = counting.address(self._pre(pid))
                v.note = "the address its connection's other lines named"

    def _pre(self, pid: bytes) -> bytes:
        t = self.tally
        return t.pre_addr.get(pid) or t.pre_addr_old.get(pid) or b""

    def _count(self, name: str, raw: bytes) -> int:
        """What the job's counter adds for this line, given the lines before it."""
        counter = self.counters.get(name)
        if counter is None:
            counter = counting.AttemptCounter(self._compiled(name), self.tally, self.reference)
            self.counters[name] = counter
        before = len(self.tally.rows), len(self.tally.local)
        counter.scan(b"\n" + raw + b"\n")
        added = sum(n for _, _, c in self.tally.rows[before[0] :] for n in c.values())
        local = sum(n for *_, n in self.tally.local[before[1] :])
        return added + local


def _journal_line(raw: bytes) -> tuple[bytes | None, str | None]:
    """A `journalctl -o json` entry as the job reads it (journald's trusted fields decide the
    program); (None, why) when it is not one or was forged."""
    from .sources import journal_lines

    batch = journal_lines(raw + b"\n", None, "localhost")
    if batch.forged:
        return None, "journal entry forged: " + batch.forged[0]
    if not batch.text:
        return None, "not a journal entry"
    return batch.text.rstrip(b"\n"), "journal"


def _read(path: str):
    if path == "-":
        return sys.stdin.buffer, time.time()
    from nightwarden.lib.fsutil import open_regular

    try:
        fd, st = open_regular(path, "log", follow=True)
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such file") from None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), st.st_mtime


def _lines(stream):
    """Numbered lines, each at most MAX_LINE bytes (the rest of a longer line is skipped)."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            return
        number += 1
        if not line.endswith(b"\n"):
            rest = line
            while rest and not rest.endswith(b"\n"):
                rest = stream.readline(MAX_LINE)
        yield number, line


def run(args) -> int:
    """The handler: 0 when at least one line was understood as a failure, 1 when none was."""
    from nightwarden.lib.cli.output import table

    if args.rules and not os.path.isdir(args.rules):
        raise NoInputError(f"{args.rules}: no such rule directory")
    ruleset = rules.load(Path(args.rules)) if args.rules else rules.shipped()
    services = args.service or list(rules.SERVICES_ALL)
    unknown = [s for s in services if s not in rules.SERVICES_ALL]
    if unknown:
        raise UsageError(f"unknown service {unknown[0]!r} (one of {', '.join(rules.SERVICES_ALL)})")
    stream, mtime = _read(args.file)
    # --year: stamps up to the year's last second land in that year (YearGuess allows a day)
    reference = mtime if args.year is None else time.mktime((args.year, 12, 31, 23, 59, 59, 0, 0, -1)) - 86400
    explainer = Explainer(ruleset, services, args.format, reference)
    summary: dict = {}
    failures = 0
    with stream:
        for number, raw in _lines(stream):
            if not raw.strip() or raw.startswith(b"#"):
                continue
            v = explainer.explain(number, raw)
            key = (v.service or "-", v.kind or "not understood")
            row = summary.setdefault(key, [0, 0, set()])
            row[0] += 1
            row[1] += v.attempts
            if v.address:
                row[2].add(v.address)
            failures += v.kind == "failure"
            show = args.show == "all" or (args.show == "matched") == (v.kind is not None)
            if args.json:
                if show:
                    print(json.dumps(v.record(), ensure_ascii=False))
            elif show:
                print(_text(v))
    if not args.json:
        rows = [
            (svc, kind, n, attempts, len(addrs))
            for (svc, kind), (n, attempts, addrs) in sorted(summary.items())
        ]
        print()
        print(table(rows, ["service", "kind", "lines", "attempts", "addresses"]))
    return 0 if failures else 1


def _text(v: Verdict) -> str:
    if v.kind is None:
        why = f"  ({v.note})" if v.note and v.note != "journal" else ""
        return f"{v.line:>6}  not understood{why}: {v.text}"
    who = v.address or (f"host {v.host}" if v.host else "-")
    parts = [f"{v.line:>6}", f"{v.kind:<8}", f"{v.service:<8}", who]
    if v.user is not None:
        parts.append(f"user={v.user!r}")
    if v.kind == "failure":
        parts.append(f"attempts={v.attempts}")
    parts.append(f"[{v.rule}]")
    return "  ".join(parts)


def arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(parser))
    p = sub.add_parser("test", help="show what the detection rules make of each line of a log")
    p.add_argument("file", metavar="FILE", help="a log file, or - for standard input")
    p.add_argument("--service", action="append", metavar="S", help="only this service's rules (repeatable)")
    p.add_argument(
        "--format",
        choices=SYSLOG + NATIVE,
        help="the file's format (default: each line's own, as understood)",
    )
    p.add_argument("--year", type=int, help="the year of stamps that have none (default: the file's)")
    p.add_argument(
        "--show", choices=("matched", "missed", "all"), default="matched", help="which lines to list"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--rules", metavar="DIR", help="drop-in rule directory to apply over the shipped rules")
