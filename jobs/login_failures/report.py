"""The daily report's log part: the configured sources read for the period (not through the
job's cursors), auth failures by address, user and service, successful logins, local
failures, the lines no detector understood, and which sources were trusted."""

from __future__ import annotations

from collections import Counter, defaultdict

from . import counting, reading


def _top(counter: Counter, n: int = 3) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counter.most_common(n))


def sections(config, since: float, until: float, when, top: int = 20) -> list[dict]:
    """Tables as dicts (title, headers, rows, note); `when` writes a time as the report does."""
    scans = [reading.scan_period(src, since, until, config) for src in reading.configured(config)]
    out = [_sources(scans)]
    by_addr: dict = defaultdict(
        lambda: {"n": 0, "svc": Counter(), "users": Counter(), "first": None, "last": None}
    )
    by_user: dict = defaultdict(lambda: {"n": 0, "addrs": set()})
    by_svc: dict = defaultdict(lambda: {"n": 0, "addrs": set()})
    successes, local = [], []
    for scan in scans:
        tally = scan.tally
        for service, addr, t, n in tally.series():
            a = by_addr[addr]
            a["n"] += n
            a["svc"][service] += n
            a["first"] = t if a["first"] is None else min(a["first"], t)
            a["last"] = t if a["last"] is None else max(a["last"], t)
            by_svc[service]["n"] += n
            by_svc[service]["addrs"].add(addr)
        for (service, raw, user), n in tally.users.items():
            addr = counting.address(raw) if raw else None
            name = user.decode("utf-8", "backslashreplace")
            if addr:
                by_addr[addr]["users"][name] += n
            u = by_user[(service, name)]
            u["n"] += n
            if addr:
                u["addrs"].add(addr)
        successes += tally.successes
        local += tally.local
    out.append(
        {
            "title": "Auth failures by address",
            "headers": ["address", "failures", "services", "users tried", "first", "last"],
            "rows": [
                [addr, a["n"], _top(a["svc"]), _top(a["users"]), when(a["first"]), when(a["last"])]
                for addr, a in sorted(by_addr.items(), key=lambda kv: -kv[1]["n"])[:top]
            ],
            "note": (f"{len(by_addr)} addresses in all" if len(by_addr) > top else ""),
        }
    )
    out.append(
        {
            "title": "Auth failures by user",
            "headers": ["user", "service", "failed lines", "addresses"],
            "rows": [
                [user, svc, u["n"], len(u["addrs"])]
                for (svc, user), u in sorted(by_user.items(), key=lambda kv: -kv[1]["n"])[:top]
            ],
            "note": "",
        }
    )
    out.append(
        {
            "title": "Auth failures by service",
            "headers": ["service", "failures", "addresses"],
            "rows": [
                [svc, s["n"], len(s["addrs"])]
                for svc, s in sorted(by_svc.items(), key=lambda kv: -kv[1]["n"])
            ],
            "note": "",
        }
    )
    logins_seen = Counter((svc, user, addr) for _, svc, user, addr, _ in successes)
    last_seen = {}
    for t, svc, user, addr, _ in successes:
        last_seen[(svc, user, addr)] = max(t, last_seen.get((svc, user, addr), 0))
    out.append(
        {
            "title": "Successful logins",
            "headers": ["service", "user", "from", "logins", "last"],
            "rows": [
                [svc, user, addr or "(local)", n, when(last_seen[(svc, user, addr)])]
                for (svc, user, addr), n in logins_seen.most_common(top * 2)
            ],
            "note": "",
        }
    )
    local_sum = Counter()
    for _, svc, user, n in local:
        local_sum[(svc, user)] += n
    out.append(
        {
            "title": "Local authentication failures (su, sudo)",
            "headers": ["service", "user", "failures"],
            "rows": [[svc, user, n] for (svc, user), n in local_sum.most_common(top)],
            "note": "",
        }
    )
    return out


def _sources(scans) -> dict:
    rows, notes = [], []
    for s in scans:
        t = s.tally
        trust = (
            "trusted (journal fields)"
            if s.source.trusted
            else "spoofable (syslog file: any local user can write such lines)"
        )
        rows.append(
            [
                s.source.name,
                s.fmt or "-",
                trust,
                t.lines,
                t.understood,
                t.lines - t.understood,
                s.error
                or "; ".join(
                    filter(
                        None,
                        [
                            f"{len(s.forged)} forged entries" if s.forged else "",
                            f"{s.overlong} overlong lines skipped" if s.overlong else "",
                        ],
                    )
                ),
            ]
        )
        for line in s.forged[:5]:
            notes.append(f"forged: {line}")
    if not scans:
        notes.append("no log source present (see logins.sources)")
    return {
        "title": "Log sources",
        "headers": ["source", "format", "trust", "lines", "understood", "not understood", "problem"],
        "rows": rows,
        "note": "\n".join(notes),
    }
