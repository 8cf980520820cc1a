"""What a host tells the fleet, read from its state database: one message per address and
kind, trusted only where no one can forge it, nothing of the fleet's own blocks, and the
cursor moved only when the broker took the messages."""

from __future__ import annotations

import json
import time

from helpers import load_config, write_config
from nightwarden.jobs.fleet import evidence
from nightwarden.lib.state import State


def state_with_events(tmp_path, logins=""):
    config = load_config(write_config(tmp_path, "\n[logins]\nsources = []\n" + logins))
    state = State(config.db_path)
    evidence.start_from_now(state)
    now = time.time()
    with state:
        state.add_events(
            [
                (now, "scan", "203.0.113.1", 23, "tcp", "listener", json.dumps({"type": "connect"})),
                (now, "scan", "203.0.113.1", 25, "tcp", "listener", json.dumps({"type": "connect"})),
                (now, "scan", "203.0.113.2", 23, "tcp", "listener", json.dumps({"type": "SYN"})),
                (now, "scan", "203.0.113.3", 161, "udp", "listener", json.dumps({"type": "UDP"})),
                (now, "login_block", "203.0.113.4", None, None, "sshd", json.dumps({"failures": 5})),
                (now, "quarantine", None, None, None, "quarantine", "{}"),
            ]
        )
        state.add_block("198.51.100.9", 4, False, "cli", "by hand", now, now + 60)
        state.add_block("198.51.100.10", 4, False, "fleet", "from the fleet", now, now + 60)
    return config, state


def test_one_message_per_address_and_kind_trusted_only_where_unforgeable(tmp_path):
    config, state = state_with_events(tmp_path, 'journal = "no"\n')
    messages, ev, bl = evidence.pending(state, config, "web1")
    by = {(k, json.loads(m)["address"]): json.loads(m) for k, m, _ in messages}
    assert by[("scan", "203.0.113.1")]["count"] == 2 and by[("scan", "203.0.113.1")]["ports"] == [23, 25]
    assert by[("scan", "203.0.113.1")]["trusted"]  # a completed handshake
    assert not by[("scan", "203.0.113.2")]["trusted"] and not by[("scan", "203.0.113.3")]["trusted"]
    assert not by[("login", "203.0.113.4")]["trusted"]  # a syslog file: anyone can write a line
    assert by[("block", "198.51.100.9")]["source"] == "cli"
    assert ("block", "198.51.100.10") not in by  # the fleet's own blocks do not come back as evidence
    assert len({mid for _, _, mid in messages}) == len(messages)  # the broker drops a message sent twice
    assert evidence.pending(state, config, "web1")[0]  # nothing moves until the broker took them
    evidence.mark(state, ev, bl)
    assert evidence.pending(state, config, "web1")[0] == []


def test_login_blocks_are_trusted_when_every_source_is_the_journal(tmp_path):
    config, state = state_with_events(tmp_path, 'journal = "yes"\n')
    messages, _, _ = evidence.pending(state, config, "web1")
    login = [json.loads(m) for k, m, _ in messages if k == "login"]
    assert login and login[0]["trusted"]


def test_a_host_joining_tells_what_it_sees_from_then_on(tmp_path):
    config, state = state_with_events(tmp_path)
    evidence.mark(state, *evidence.pending(state, config, "web1")[1:])
    fresh = State(config.db_path)
    evidence.start_from_now(fresh)  # again: the cursor is kept
    assert evidence.pending(fresh, config, "web1")[0] == []


def test_the_summary_names_failed_jobs_and_unexplained_integrity_changes(tmp_path):
    config, state = state_with_events(tmp_path)
    with state:
        run = state.start_run("integrity", False)
        state.end_run(run, 70, "internal error")
        state.add_event(
            "integrity",
            source="integrity",
            changed=2,
            explained=1,
            added=0,
            removed=0,
            paths=[{"path": "/usr/bin/cat"}],
        )
    s = evidence.summary(state, "web1")
    assert s["failed_jobs"][0]["job"] == "integrity" and s["failed_jobs"][0]["exit"] == 70
    assert s["integrity"][0]["unexplained"] == 1 and s["integrity"][0]["paths"] == ["/usr/bin/cat"]
    assert s["blocks"] == 1  # the host's own, not the fleet's
    assert evidence.summary_due(state, time.time())
