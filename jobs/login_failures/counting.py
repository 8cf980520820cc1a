"""Counting login failures in a chunk of log text, fast.

One findall of the source's combined expression (rules.compile_rules) per time segment (a
run of lines within `resolution` seconds, found by bisecting on the first and last stamps),
then aggregation with dicts, sets and Counters rather than per-line Python work. Every match in a segment is
stamped with the segment's last time: counting windows are exact to `resolution` seconds.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from .formats import YearGuess
from .rules import Compiled

CONN_TTL = 600  # sshd connection state is kept this long (LoginGraceTime is 120 s)


@dataclass
class Tally:
    """What the scans of one run found."""

    # one row per segment and service: (time, service, Counter(raw address -> attempts))
    rows: list = field(default_factory=list)
    # sshd connections (pid, raw address), two generations: Failed lines per connection,
    # and the set of connections that logged a "pre" line
    conns: dict = field(default_factory=dict)
    conns_pre: set = field(default_factory=set)
    conns_old: dict = field(default_factory=dict)
    conns_old_pre: set = field(default_factory=set)
    conns_since: float | None = None
    successes: list = field(default_factory=list)  # (time, service, user, address, line)
    local: list = field(default_factory=list)  # (time, service, user, count)
    users: Counter = field(default_factory=Counter)  # (service, raw address, user) -> attempts
    lines: int = 0
    understood: int = 0
    first: float | None = None
    last: float | None = None
    # raw address -> (part index, start, end) of the last segment it was in
    where: dict = field(default_factory=dict)
    want_users: bool = False
    # sshd pid -> the address its last "pre" line named (AttemptCounter._one_address), in
    # the two generations the connections have
    pre_addr: dict = field(default_factory=dict)
    pre_addr_old: dict = field(default_factory=dict)

    def series(self, since: float = 0.0):
        """(service, address, time, attempts) with valid addresses, from `since` on."""
        for t, service, counter in self.rows:
            if t < since:
                continue
            for raw, n in counter.items():
                addr = address(raw)
                if addr is not None and n > 0:
                    yield service, addr, t, n

    def total(self, service: str | None = None, since: float = 0.0) -> dict[str, int]:
        out: dict[str, int] = {}
        for svc, addr, _, n in self.series(since):
            if service is None or svc == service:
                out[addr] = out.get(addr, 0) + n
        return out

    @property
    def bad_addresses(self) -> int:
        return sum(n for _, _, c in self.rows for raw, n in c.items() if address(raw) is None)

    def age_conns(self, now: float) -> None:
        """Two generations of CONN_TTL / 2: a connection idle that long is forgotten."""
        if self.conns_since is None:
            self.conns_since = now
        elif now - self.conns_since >= CONN_TTL / 2:
            self._next_generation()
            self.conns_since = now

    def _next_generation(self) -> None:
        """The current connections become the old generation; the old one is forgotten."""
        self.conns_old, self.conns = self.conns, {}
        self.conns_old_pre, self.conns_pre = self.conns_pre, set()
        self.pre_addr_old, self.pre_addr = self.pre_addr, {}

    def bound(self, limit: int) -> None:
        """At most about `limit` connections remembered: under a sustained flood of new
        connections the older generation goes before its time (its connections are
        minutes old; their later lines, if any, count as new connections)."""
        if len(self.conns) + len(self.conns_pre) + len(self.conns_old) + len(self.conns_old_pre) > limit:
            self._next_generation()
            if len(self.conns_old) + len(self.conns_old_pre) > limit:
                self._next_generation()

    def state(self, limit: int | None = None) -> dict:
        """sshd connections to carry over to the next run (JSON-able); with `limit`, the most
        recently opened ones only (the listener saves this every second: a flood's tens of
        thousands of connections would make each save hold the interpreter for tens of ms)."""
        out = {}
        for failed, pre in ((self.conns_old, self.conns_old_pre), (self.conns, self.conns_pre)):
            for key in failed.keys() | pre:
                pid, raw = key
                out[f"{pid.decode()} {raw.decode('ascii', 'replace')}"] = [failed.get(key, 0), key in pre]
        if limit is not None and len(out) > limit:
            out = dict(list(out.items())[-limit:])
        return {"since": self.conns_since, "conns": out}

    def restore(self, saved: dict | None) -> None:
        if not saved:
            return
        self.conns_since = saved.get("since")
        for key, (failed, pre) in saved.get("conns", {}).items():
            pid, _, raw = key.partition(" ")
            k = (pid.encode(), raw.encode())
            if failed:
                self.conns[k] = failed
            if pre:
                self.conns_pre.add(k)


_addr_cache: dict[bytes, str | None] = {}


def address(raw: bytes) -> str | None:
    """A validated, normalised address (IPv4-mapped IPv6 as IPv4), None if not one."""
    hit = _addr_cache.get(raw, False)
    if hit is not False:
        return hit
    try:
        ip = ipaddress.ip_address(raw.decode("ascii"))
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        out = str(ip)
    except (ValueError, UnicodeDecodeError):
        out = None
    if len(_addr_cache) > 200_000:
        _addr_cache.clear()
    _addr_cache[raw] = out
    return out


def _line_at(buf: bytes, start: int) -> bytes:
    end = buf.find(b"\n", start)
    return buf[start : end if end >= 0 else len(buf)]


def segments(buf: bytes, start: int, end: int, stamp, resolution: float):
    """Yield (start, end, time) runs of whole lines of buf[start:end] whose stamps lie within
    `resolution` seconds. buf[start-1] is a newline; end follows one."""
    stack = [(start, end)]
    out = []
    while stack:
        a, b = stack.pop()
        if a >= b:
            continue
        t1 = stamp(_line_at(buf, a))
        last_start = buf.rfind(b"\n", a, b - 1) + 1
        if last_start <= a:  # one line
            out.append((a, b, t1))
            continue
        t2 = stamp(_line_at(buf, last_start))
        if t1 is not None and t2 is not None and 0 <= t2 - t1 <= resolution:
            out.append((a, b, t2))
            continue
        mid = buf.find(b"\n", (a + b) // 2, b - 1) + 1
        if mid <= a or mid >= b:
            mid = last_start
        stack.append((mid, b))
        stack.append((a, mid))
    out.sort()
    return out


class AttemptCounter:
    """Scans chunks of one source with its compiled rules into a Tally."""

    def __init__(self, compiled: Compiled, tally: Tally, reference: float, resolution: float = 60.0):
        self.c = compiled
        self.tally = tally
        self.years = YearGuess(reference)
        self.resolution = resolution
        stamp_fn = compiled.fmt.stamp
        years = self.years
        self.stamp = lambda line: stamp_fn(line, years)
        self.since: float | None = None  # lines before this time are skipped
        self.until: float | None = None  # and from this time on
        self.last_time: float | None = None

    def scan(self, buf: bytes, part: int = 0, base: int = 0) -> None:
        """buf starts with a newline and ends with one; base: file offset of buf[1]."""
        for a, b, t in segments(buf, 1, len(buf), self.stamp, self.resolution):
            if t is None:
                t = self.last_time
                if t is None:
                    t = self.years.reference
            self.last_time = t
            if (self.since is not None and t < self.since) or (self.until is not None and t >= self.until):
                continue
            self.tally.lines += buf.count(b"\n", a, b)
            self._segment(buf, a, b, t, (part, base + a - 1, base + b - 1))

    def _segment(self, buf: bytes, a: int, b: int, t: float, ref: tuple) -> None:
        tally, c = self.tally, self.c
        failed_lines: list = []  # one (pid, address) per Failed line
        failed_extra: list = []  # (key, n - 1) for "message repeated n times"
        pre: set = set()
        seen: set = set()
        found = c.regex.findall(buf, a - 1, b)
        matched = len(found)
        if not matched:
            return
        if tally.first is None or t < tally.first:
            tally.first = t
        if tally.last is None or t > tally.last:
            tally.last = t
        tally.understood += matched
        by_tag: dict = defaultdict(list)
        tp = c.tag_pos
        for tup in found:  # the one per-line Python step
            by_tag[tup[tp]].append(tup)
        buckets: dict = {}
        for tag, tuples in by_tag.items():
            # a rule's key group is set only when its own program's wording matched, so the
            # candidates need not be sorted out by program
            cands = c.candidates(tag)
            if len(cands) == 1:
                buckets.setdefault(cands[0].index, []).extend(tuples)
                continue
            rest = tuples
            for rule in cands:  # in order: each takes the tuples its key marks
                if not rest:
                    break
                k = rule.key
                mine = [t for t in rest if t[k]]
                if mine:
                    buckets.setdefault(rule.index, []).extend(mine)
                    rest = [t for t in rest if not t[k]] if len(mine) < len(rest) else []
        for idx, tuples in buckets.items():
            rule = c.rules[idx]
            kind = rule.kind
            if kind == "known":
                continue
            pos = rule.pos
            ip_i, user_i, n_i = pos.get("ip"), pos.get("user"), pos.get("n")
            if kind == "failed" or kind == "pre":
                pid_i = c.pid_pos
                if ip_i is None:  # old sshd: the address comes from the connection
                    keys = self._resolve([tup[pid_i] for tup in tuples])
                else:
                    keys = [(tup[pid_i], tup[ip_i]) for tup in tuples]
                if kind == "pre":
                    pre.update(keys)
                    continue
                failed_lines += keys
                if n_i is not None:
                    failed_extra += [(k, int(tup[n_i]) - 1) for k, tup in zip(keys, tuples, strict=True)]
                if tally.want_users and user_i is not None:
                    for k, tup in zip(keys, tuples, strict=True):
                        tally.users[(rule.service, k[1], tup[user_i])] += (
                            int(tup[n_i]) if n_i is not None else 1
                        )
            elif kind == "fail":
                per: Counter = Counter()
                if n_i is None:
                    per.update([tup[ip_i] for tup in tuples])
                else:
                    for tup in tuples:
                        per[tup[ip_i]] += int(tup[n_i] or 1)
                tally.rows.append((t, rule.service, per))
                seen.update(per)
                if tally.want_users and user_i is not None:
                    for tup in tuples:
                        tally.users[(rule.service, tup[ip_i], tup[user_i])] += (
                            int(tup[n_i] or 1) if n_i is not None else 1
                        )
            elif kind == "success":
                lines = self._lines_of(buf, a, b, tuples)
                for tup in tuples:
                    raw = tup[ip_i] if ip_i is not None else b""
                    tally.successes.append(
                        (
                            t,
                            rule.service,
                            _text(tup[user_i]) if user_i is not None else "",
                            (address(raw) or "") if raw else "",
                            lines[tup].popleft() if lines.get(tup) else "",
                        )
                    )
            elif kind == "local":
                for tup in tuples:
                    tally.local.append(
                        (
                            t,
                            rule.service,
                            _text(tup[user_i]),
                            int(tup[n_i]) if n_i is not None and tup[n_i] else 1,
                        )
                    )
        if pre:
            tally.pre_addr.update(pre)
        if failed_lines and (tally.pre_addr or tally.pre_addr_old):
            failed_lines, failed_extra = self._one_address(failed_lines, failed_extra)
        if failed_lines or pre:
            delta = self._connections(failed_lines, failed_extra, pre, t)
            tally.rows.append((t, "sshd", delta))
            seen.update(delta)
        if seen:
            tally.where.update(dict.fromkeys(seen, ref))

    def _lines_of(self, buf: bytes, a: int, b: int, tuples: list) -> dict:
        """The whole lines of matches (successes are few, and their notices quote the line:
        the method, the key's fingerprint, the terminal): match tuple -> lines, in order."""
        wanted = set(tuples)
        out: dict = defaultdict(deque)
        for m in self.c.regex.finditer(buf, a - 1, b):
            tup = m.groups(default=b"")
            if tup in wanted:
                start = m.start() + 1 if buf[m.start() : m.start() + 1] == b"\n" else m.start()
                out[tup].append(_text(_line_at(buf, buf.rfind(b"\n", 0, start) + 1)))
        return out

    def _one_address(self, failed_lines: list, failed_extra: list) -> tuple[list, list]:
        """A connection has one address. sshd's "Failed" line ends with text the client may
        choose (": " and key details), so a user name such as "x from A port 1 ssh2: y" can
        make it read as coming from A; the same connection's "Invalid user" or PAM line, whose
        address ends the line, says where it really came from. Failed lines of a connection
        whose such line (in the last CONN_TTL: pids are reused) named an address are counted
        for that address."""
        new, old = self.tally.pre_addr.get, self.tally.pre_addr_old.get
        lines = [(pid, new(pid) or old(pid) or raw) for pid, raw in failed_lines]
        extra = [((pid, new(pid) or old(pid) or raw), n) for (pid, raw), n in failed_extra]
        return lines, extra

    def _resolve(self, pids: list) -> list:
        t = self.tally
        by_pid = {
            pid: raw for gen in (t.conns_old, t.conns_old_pre, t.conns, t.conns_pre) for (pid, raw) in gen
        }
        return [(pid, by_pid.get(pid, b"")) for pid in pids]

    def _connections(self, failed_lines: list, failed_extra: list, pre: set, t: float) -> Counter:
        """sshd: per connection, attempts = max(Failed lines, 1 if any pre line); returns
        what this segment added per raw address. Connections first seen here (nearly all)
        are summed with set and Counter operations; those carried over go one by one."""
        tally = self.tally
        tally.age_conns(t)
        failed = Counter(failed_lines)
        for k, extra in failed_extra:
            failed[k] += extra
        touched = failed.keys() | pre
        old = (
            (touched & tally.conns.keys())
            | (touched & tally.conns_pre)
            | (touched & tally.conns_old.keys())
            | (touched & tally.conns_old_pre)
        )
        delta: Counter = Counter()
        totals = {}
        for key in old:
            f0 = tally.conns.get(key) or tally.conns_old.get(key, 0)
            p0 = key in tally.conns_pre or key in tally.conns_old_pre
            f1, p1 = f0 + failed.get(key, 0), p0 or key in pre
            delta[key[1]] += max(f1, 1 if p1 else 0) - max(f0, 1 if p0 else 0)
            totals[key] = f1
            if p1:
                tally.conns_pre.add(key)
        # connections new here: their Failed lines count, and one for those with only pre lines
        delta.update([k[1] for k in failed_lines if k not in old])
        for k, extra in failed_extra:
            if k not in old:
                delta[k[1]] += extra
        delta.update([k[1] for k in pre - failed.keys() - old])
        tally.conns.update(failed)
        if totals:
            tally.conns.update(totals)
        tally.conns_pre |= pre
        delta.pop(b"", None)
        return delta


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")
