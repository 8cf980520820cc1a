"""What a host tells the fleet, read from its own state database: the event log and the
blocks table are the outbox (a cursor of the last id published moves only once the broker
has stored the message, so nothing is lost while the broker is away).

Evidence is one message per address and kind for each pass: scans (trusted when the scanner
completed a TCP handshake; raw SYN, FIN, NULL, XMAS and UDP probes can come from forged
sources), login-failure blocks (trusted when every log source is the journal: a syslog file
takes lines from any local user), connection-limit blocks (handshakes: trusted) and this
host's own blocks (an admin's, or from one of the above)."""

from __future__ import annotations

import json
import time

from nightwarden.lib import __version__

from .store import EXPORTED_BLOCK, EXPORTED_EVENT, SUMMARY_AT

KINDS = {"scan": "scan", "login_block": "login", "connections": "conn"}
BATCH = 5000  # rows read a pass


def logins_trusted(config) -> bool:
    logins = config.logins
    return logins.journal == "yes" and not logins.sources


def pending(state, config, host: str) -> tuple[list[tuple[str, bytes, str]], int, int]:
    """([(kind, message, message id)], last event id, last block id) not yet published."""
    ev0 = int(state.get_meta(EXPORTED_EVENT, "0"))
    bl0 = int(state.get_meta(EXPORTED_BLOCK, "0"))
    marks = ",".join("?" * len(KINDS))
    # the last id first: an event another thread adds meanwhile is read next time, not skipped
    last_event = state.db.execute("SELECT MAX(id) FROM events").fetchone()[0] or 0
    events = state.db.execute(
        f"SELECT id, time, kind, address, port, proto, source, detail FROM events"
        f" WHERE id > ? AND id <= ? AND kind IN ({marks}) AND address IS NOT NULL ORDER BY id LIMIT ?",
        (ev0, last_event, *KINDS, BATCH),
    ).fetchall()
    ev1 = events[-1]["id"] if len(events) == BATCH else max(ev0, last_event)
    blocks = state.db.execute(
        "SELECT id, address, source, reason, permanent, created, expires FROM blocks"
        " WHERE id > ? AND source != 'fleet' ORDER BY id LIMIT ?",
        (bl0, BATCH),
    ).fetchall()
    bl1 = blocks[-1]["id"] if blocks else bl0
    login_trust = logins_trusted(config)
    agg: dict[tuple[str, str], dict] = {}
    for e in events:
        kind = KINDS[e["kind"]]
        a = agg.setdefault(
            (kind, e["address"]),
            {
                "kind": kind,
                "address": e["address"],
                "count": 0,
                "first": e["time"],
                "ports": [],
                "trusted": False,
            },
        )
        a["count"] += 1
        a["last"] = e["time"]
        if kind == "scan":
            try:
                scan_type = json.loads(e["detail"] or "{}").get("type", "")
            except ValueError:
                scan_type = ""
            a["trusted"] |= scan_type == "connect"
            if e["port"] and len(a["ports"]) < 10 and e["port"] not in a["ports"]:
                a["ports"].append(e["port"])
        elif kind == "login":
            a["service"] = e["source"]
            a["trusted"] = login_trust
        else:
            a["trusted"] = True
        a["id"] = e["id"]
    for b in blocks:
        agg[("block", b["address"])] = {
            "kind": "block",
            "address": b["address"],
            "count": 1,
            "first": b["created"],
            "last": b["created"],
            "source": b["source"],
            "reason": (b["reason"] or "")[:200],
            "permanent": bool(b["permanent"]),
            "trusted": b["source"] in ("cli", "connections")
            or (b["source"] == "login-failures" and login_trust),
            "id": f"b{b['id']}",
        }
    messages = []
    for (kind, _addr), a in agg.items():
        msg_id = f"{host}-{a.pop('id')}-{kind}"
        messages.append((kind, json.dumps(a, separators=(",", ":")).encode(), msg_id))
    return messages, ev1, bl1


def mark(state, ev: int, bl: int) -> None:
    with state:
        state.set_meta(EXPORTED_EVENT, str(ev))
        state.set_meta(EXPORTED_BLOCK, str(bl))


def start_from_now(state) -> None:
    """A host joining the fleet tells it what it sees from now on, not its whole past."""
    if state.get_meta(EXPORTED_EVENT) is None:
        with state:
            last_event = state.db.execute("SELECT MAX(id) FROM events").fetchone()[0] or 0
            last_block = state.db.execute("SELECT MAX(id) FROM blocks").fetchone()[0] or 0
            state.set_meta(EXPORTED_EVENT, str(last_event))
            state.set_meta(EXPORTED_BLOCK, str(last_block))


def summary_due(state, now: float, period: float = 86400) -> bool:
    at = float(state.get_meta(SUMMARY_AT, "0"))
    last_report = state.db.execute(
        "SELECT MAX(ended) FROM runs WHERE job = 'report' AND dry_run = 0"
    ).fetchone()[0]
    return now - at >= period or (last_report is not None and last_report > at)


def summary(state, host: str, now: float | None = None, hours: int = 24) -> dict:
    """The host's day in figures, for the fleet report."""
    now = time.time() if now is None else now
    since = now - hours * 3600
    counts = dict(
        state.db.execute(
            "SELECT kind, COUNT(*) FROM events WHERE time >= ? GROUP BY kind", (since,)
        ).fetchall()
    )
    failed = [
        {"job": r["job"], "exit": r["exit_code"], "summary": (r["summary"] or "")[:200], "time": r["started"]}
        for r in state.db.execute(
            "SELECT job, exit_code, summary, started FROM runs WHERE started >= ? AND exit_code >= 64"
            " AND dry_run = 0 ORDER BY started DESC LIMIT 20",
            (since,),
        )
    ]
    integrity = []
    for r in state.db.execute(
        "SELECT time, detail FROM events WHERE kind = 'integrity' AND time >= ? ORDER BY time", (since,)
    ):
        d = json.loads(r["detail"] or "{}")
        unexplained = d.get("changed", 0) - d.get("explained", 0) + d.get("added", 0) + d.get("removed", 0)
        if unexplained > 0:
            paths = [p.get("path", "") for p in d.get("paths", [])][:10]
            integrity.append({"time": r["time"], "unexplained": unexplained, "paths": paths})
    quarantined = [
        json.loads(r["detail"] or "{}").get("path", "")
        for r in state.db.execute(
            "SELECT detail FROM events WHERE kind = 'quarantine' AND time >= ? LIMIT 50", (since,)
        )
    ]
    blocks = state.db.execute(
        "SELECT COUNT(*) FROM blocks WHERE created >= ? AND source != 'fleet'", (since,)
    ).fetchone()[0]
    return {
        "host": host,
        "version": __version__,
        "time": now,
        "hours": hours,
        "events": counts,
        "blocks": blocks,
        "failed_jobs": failed,
        "integrity": integrity[-5:],
        "quarantined": quarantined,
    }
