"""The fleet for real: nats-server with JetStream and the users `fleet init` made, the
authority, and three hosts in network namespaces of their own with their own state and
nftables. Attackers are 127.x sources inside a host's namespace."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time

import pytest
from fleetlab import FleetLab, addresses, wait_until

from helpers import need

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.peer, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the fleet's hosts are network namespaces: root only")
    need("nats-server", "nft", "ip")
    pytest.importorskip("nats")
    lab = FleetLab(
        tmp_path_factory.mktemp("fleet"),
        authority="host_cap = 400\nwindow = 600\nsnapshot_every = 2\nsnapshot_changes = 100\n",
        host_extra="snapshot_changes = 100\n",
    )
    try:
        yield lab.start()
    finally:
        lab.stop()


def test_a_scan_on_one_host_is_blocked_on_every_host_within_a_second(lab):
    start = time.monotonic()
    lab.scan("web1", "127.0.0.77")
    everywhere = wait_until(lambda: all("127.0.0.77" in lab.kernel(h) for h in lab.hosts), 5, 0.02)
    took = time.monotonic() - start
    assert everywhere, {h: lab.kernel(h) for h in lab.hosts}
    assert took < 1.5, took  # scan → local block → evidence → decision → every host's kernel
    d = {x["target"]: x for x in lab.decisions()}["127.0.0.77"]
    assert d["by"] == "authority:a1" and d["evidence"][0]["host"] == "web1"
    assert "trusted evidence from web1" in d["reason"]
    blocks = lab.cli("web2", "blocks", "--json").stdout
    assert any(b["address"] == "127.0.0.77" and b["source"] == "fleet" for b in json.loads(blocks))
    status = json.loads(lab.cli("operator", "fleet", "status", "--json").stdout)
    assert sorted(h["host"] for h in status["hosts"]) == lab.hosts


def test_a_host_offline_converges_from_the_bucket_when_it_is_back(lab):
    lab.scan("web1", "127.0.0.90")
    assert wait_until(lambda: "127.0.0.90" in lab.kernel("web3"), 5)
    lab.listeners["web3"].stop()
    lab.cli("operator", "fleet", "block", "127.0.0.91", "--ttl", "1h", "--reason", "while web3 was away")
    lab.cli("operator", "fleet", "block", "203.0.113.0/24", "--ttl", "1h")
    lab.cli("operator", "fleet", "unblock", "127.0.0.90")
    lab.cli("operator", "fleet", "block", "127.0.0.92", "--ttl", "1h", "--scope", "group:front")
    assert wait_until(
        lambda: "127.0.0.92" in lab.kernel("web1") and "127.0.0.90" not in lab.kernel("web1"), 5
    )
    assert "127.0.0.90" in lab.kernel("web3")  # it was away
    lab.start_host("web3")
    held = wait_until(
        lambda: (
            {"127.0.0.91", "203.0.113.0/24"} <= lab.kernel("web3") and "127.0.0.90" not in lab.kernel("web3")
        ),
        5,
    )
    assert held, lab.kernel("web3")
    assert "127.0.0.92" not in lab.kernel("web3")  # a group it is not in
    assert "127.0.0.92" in lab.kernel("web2")


def test_with_the_broker_down_evidence_waits_and_nothing_is_lost(lab):
    lab.stop_broker()
    lab.scan("web2", "127.0.0.130")  # blocked on web2 at once; its evidence waits
    lab.scan("web1", "127.0.0.131")
    assert wait_until(lambda: "127.0.0.130" in lab.kernel("web2"), 3)
    time.sleep(1.5)
    assert "127.0.0.130" not in lab.kernel("web1")
    lab.start_broker()
    assert wait_until(lambda: all({"127.0.0.130", "127.0.0.131"} <= lab.kernel(h) for h in lab.hosts), 20), {
        h: lab.kernel(h) for h in lab.hosts
    }


ATTACK = r"""
import asyncio, json, sys, tomllib
import nats

async def main():
    creds = tomllib.loads(open(sys.argv[1]).read())
    user, errors, out = creds["user"], [], {}
    async def err(e):
        errors.append(str(e))
    nc = await nats.connect("nats://10.77.0.1:4222", user=user, password=creds["password"],
                            inbox_prefix=f"_INBOX_{user}", error_cb=err)
    js = nc.jetstream()
    async def attempt(name, coro):
        try:
            await coro
            out[name] = "done"
        except Exception as e:
            out[name] = type(e).__name__
    other = "web1" if user != "web1" else "web2"
    body = json.dumps({"address": "127.0.0.201", "trusted": True, "count": 1}).encode()
    await attempt("publish as another host", js.publish(f"nw.evt.{other}.e.scan", body, timeout=2))
    await attempt("write the bucket", js.publish("$KV.nw-decisions.f.127.0.0.202", b"NW1", timeout=2))
    await attempt("operator allow", nc.request("nw.cmd.allow", b"{}", timeout=2))
    await attempt("purge the bucket", js.purge_stream("KV_nw-decisions"))
    await attempt("delete the evidence", js.delete_stream("NW_EVIDENCE"))
    await attempt("read other inboxes", nc.subscribe("_INBOX_web1.>"))
    await nc.flush()
    await asyncio.sleep(0.5)
    flood = [js.publish(f"nw.evt.{user}.e.scan",
                        json.dumps({"address": f"127.3.{i // 250}.{i % 250 + 1}", "trusted": True}).encode())
             for i in range(int(sys.argv[2]))]
    await asyncio.gather(*flood)
    await nc.close()
    print(json.dumps({"out": out, "errors": errors}))

asyncio.run(main())
"""


def test_a_compromised_host_can_only_lie_about_what_it_saw(lab):
    done = lab.python_in("web3", ATTACK, str(lab.configs["web3"].parent / "fleet" / "web3.creds"), "600")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert all(v != "done" for k, v in result["out"].items() if k != "read other inboxes"), result
    refused = " ".join(e.lower() for e in result["errors"])
    for subject in (
        "nw.evt.web1.e.scan",
        "$kv.nw-decisions",
        "nw.cmd.allow",
        "$js.api.stream.purge",
        "$js.api.stream.delete",
    ):
        assert f'permissions violation for publish to "{subject}' in refused, (subject, refused)
    assert 'permissions violation for subscription to "_inbox_web1.>"' in refused
    time.sleep(2)
    made = lab.decisions()
    targets = {d.get("target") for d in made}
    assert "127.0.0.201" not in targets and "127.0.0.202" not in targets
    flood = [d for d in made if d.get("target", "").startswith("127.3.")]
    assert len(flood) == 400, len(flood)  # host_cap: 400 decisions an hour from one host's evidence
    assert all(d["evidence"][0]["host"] == "web3" for d in flood)
    for h in lab.hosts:
        assert "127.0.0.201" not in lab.kernel(h) and "127.0.0.202" not in lab.kernel(h)


FORGE = r"""
import asyncio, json, sys, time, tomllib
import nats
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
from nightwarden.jobs.fleet import signing
from nightwarden.jobs.fleet.decisions import Decision

async def main():
    creds = tomllib.loads(open(sys.argv[1]).read())
    fleet_key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
    nc = await nats.connect("nats://10.77.0.1:4222", user=creds["user"], password=creds["password"])
    js = nc.jetstream()
    kv = await js.key_value("nw-decisions")
    now = time.time()
    def put(key, env):
        return js.publish(f"$KV.nw-decisions.{key}", env)
    forged = Decision("block", "127.0.0.210", issued=now, expires=now + 3600, seq=time.time_ns(), by="x")
    # another key's signature
    await put("f.127.0.0.210", signing.sign_batch(Ed25519PrivateKey.generate(), [forged.payload()])[0])
    # the fleet key (stolen) without the operator: an allow and an unblock of a blocked address
    allow = Decision("allow", "127.0.0.211", issued=now, seq=time.time_ns(), by="x")
    await put("f.127.0.0.211", signing.sign_batch(fleet_key, [allow.payload()])[0])
    unblock = Decision("unblock", sys.argv[3], issued=now, expires=now + 60, seq=time.time_ns(), by="x")
    await put(unblock.key, signing.sign_batch(fleet_key, [unblock.payload()])[0])
    # a good block's value moved under another key
    entry = await kv.get("f." + sys.argv[3])
    await put("f.127.0.0.212", entry.value)
    # an old value played back after a newer one
    await put("f." + sys.argv[4], bytes.fromhex(sys.argv[5]))
    # a deletion of a block in force
    await kv.delete("f." + sys.argv[3])
    await nc.close()

asyncio.run(main())
"""

GET = r"""
import asyncio, sys, tomllib
import nats

async def main():
    creds = tomllib.loads(open(sys.argv[1]).read())
    nc = await nats.connect("nats://10.77.0.1:4222", user=creds["user"], password=creds["password"])
    kv = await nc.jetstream().key_value("nw-decisions")
    print((await kv.get(sys.argv[2])).value.hex())
    await nc.close()

asyncio.run(main())
"""


def test_forged_moved_replayed_or_deleted_decisions_change_nothing_on_any_host(lab):
    """The broker itself compromised (the authority's credentials), even the fleet key stolen:
    without the operator's key nothing is allowed or lifted; old values are not taken back."""
    creds = str(lab.configs["authority"].parent / "fleet" / "authority.creds")
    key = str(lab.fleet / "fleet.key")
    lab.cli("operator", "fleet", "block", "127.0.0.220", "--ttl", "1h")  # stays blocked throughout
    lab.cli("operator", "fleet", "block", "127.0.0.221", "--ttl", "1h")
    assert wait_until(lambda: all({"127.0.0.220", "127.0.0.221"} <= lab.kernel(h) for h in lab.hosts), 5)
    old = lab.python_in("authority", GET, creds, "f.127.0.0.221").stdout.strip()
    lab.cli("operator", "fleet", "unblock", "127.0.0.221")
    assert wait_until(lambda: not any("127.0.0.221" in lab.kernel(h) for h in lab.hosts), 5)
    done = lab.python_in("authority", FORGE, creds, key, "127.0.0.220", "127.0.0.221", old)
    assert done.returncode == 0, done.stderr
    time.sleep(1.5)
    for h in lab.hosts:
        k = lab.kernel(h)
        assert "127.0.0.220" in k, (h, "a deletion or a forged unblock lifted it")
        assert not {"127.0.0.210", "127.0.0.212", "127.0.0.221"} & k, (h, k)
        assert (
            "127.0.0.211" not in (lab.base / h / "state" / "fleet.allow").read_text(errors="replace")
            if (lab.base / h / "state" / "fleet.allow").exists()
            else True
        )
        log = (lab.base / h / "log" / "nightwarden.log").read_text()
        for why in ("not the fleet key", "needs an operator", "signed for key", "a replay"):
            assert why in log, (h, why)


def test_two_authorities_and_one_killed_mid_stream_decide_each_address_once(lab):
    lab.start_authority("a2")
    for h in ("web1", "web2"):  # untrusted evidence: two hosts are needed
        lab.publish(h, "127.4.0", 7, kind="login", trusted=False)
    lab.authorities["a1"].kill()  # mid-stream: the rest of the evidence comes while it is gone
    for h in ("web1", "web2"):
        lab.publish(h, "127.4.0", 8, kind="login", trusted=False, first=8)
    lab.start_authority("a1")
    wanted = {f"127.4.0.{i}" for i in range(1, 16)}
    assert wait_until(lambda: all(wanted <= lab.kernel(h) for h in lab.hosts), 10)
    made = [d for d in lab.decisions() if d.get("target") in wanted]
    assert sorted(d["target"] for d in made) == sorted(wanted)
    assert all(len(d["evidence"]) == 2 for d in made)
    history = lab.python_in(
        "authority",
        "import asyncio,sys,tomllib,nats\n"
        "async def m():\n"
        " c=tomllib.loads(open(sys.argv[1]).read())\n"
        " nc=await nats.connect('nats://10.77.0.1:4222',user=c['user'],password=c['password'])\n"
        " kv=await nc.jetstream().key_value('nw-decisions')\n"
        " n=[len(await kv.history(f'f.127.4.0.{i}')) for i in range(1,16)]\n"
        " print(max(n), n)\n"
        " await nc.close()\n"
        "asyncio.run(m())",
        str(lab.configs["authority"].parent / "fleet" / "authority.creds"),
    )
    assert history.stdout.split()[:1] == ["1"], (history.stdout, history.stderr)  # each written once
    lab.authorities.pop("a2").stop()


def test_an_expired_decision_is_removed_everywhere(lab):
    lab.cli("operator", "fleet", "block", "127.0.0.140", "--ttl", "3")
    assert wait_until(lambda: all("127.0.0.140" in lab.kernel(h) for h in lab.hosts), 5)
    assert wait_until(lambda: not any("127.0.0.140" in lab.kernel(h) for h in lab.hosts), 8)
    assert wait_until(lambda: "127.0.0.140" not in {d.get("target") for d in lab.decisions()}, 5)


def test_a_host_far_behind_takes_a_signed_snapshot_then_follows_the_bucket(lab):
    authority_log = lab.base / "authority" / "log" / "nightwarden.log"
    lab.listeners["web3"].stop()
    lab.publish("web2", "127.5", 300)
    wanted = set(addresses("127.5", 300))
    assert wait_until(lambda: wanted <= lab.kernel("web1"), 10)
    with sqlite3.connect(lab.base / "web1" / "state" / "state.db") as db:  # the bucket as web1 took it
        taken = int(db.execute("SELECT value FROM meta WHERE key = 'fleet.kv_seq'").fetchone()[0])
    snapshots = lambda: [int(n) for n in re.findall(r"decisions as of (\d+)", authority_log.read_text())]  # noqa: E731
    assert wait_until(lambda: max(snapshots(), default=0) >= taken, 15)  # a snapshot with all 300 in it
    lab.start_host("web3")
    assert wait_until(lambda: wanted <= lab.kernel("web3"), 10)
    web3 = (lab.base / "web3" / "log" / "nightwarden.log").read_text()
    assert "snapshot of" in web3.split("fleet: connected")[-1]
    lab.cli("operator", "fleet", "block", "127.0.0.150", "--ttl", "1h")  # and it follows on from there
    assert wait_until(lambda: "127.0.0.150" in lab.kernel("web3"), 5)


def test_a_dry_run_listener_applies_nothing_and_tells_the_fleet_nothing(lab):
    lab.listeners["web3"].stop()
    before = lab.kernel("web3")
    lab.start_host("web3", "--dry-run")
    lab.scan("web3", "127.0.0.170")
    lab.cli("operator", "fleet", "block", "127.0.0.171", "--ttl", "1h")
    assert wait_until(lambda: "127.0.0.171" in lab.kernel("web1"), 5)
    log = lab.base / "web3" / "log" / "nightwarden.log"
    assert wait_until(lambda: "dry run: would block 127.0.0.171" in log.read_text(), 5)
    time.sleep(1)
    assert lab.kernel("web3") == before
    assert "127.0.0.170" not in {d.get("target") for d in lab.decisions()}
    lab.listeners["web3"].stop()
    lab.start_host("web3")
    assert wait_until(lambda: "127.0.0.171" in lab.kernel("web3"), 5)  # taken for real once back


def test_the_fleet_report_names_hosts_shared_sources_and_decisions(lab):
    lab.cli("operator", "fleet", "report", "--no-mail")
    report = sorted((lab.base / "operator" / "reports").glob("fleet-report-*.json"))[-1]
    by = {s["title"]: s for s in json.loads(report.read_text())["sections"]}
    assert sorted(r[0] for r in by["Hosts"]["rows"]) == lab.hosts
    shared = {r[0]: r for r in by["Sources seen on several hosts"]["rows"]}
    assert shared["127.4.0.1"][1] == "web1, web2"
    made = by["Decisions made and lifted"]["rows"]
    assert any(r[1] == "unblock" and r[2] == "127.0.0.90" and r[4] == "operator" for r in made)
    assert any(r[1] == "block" and r[2] == "127.0.0.77" and r[4] == "authority:a1" for r in made)
    assert any(r[1] == "removed (expired)" and r[2] == "f.127.0.0.140" for r in made)
    assert report.with_suffix(".txt").read_text().startswith("Needs attention")
    assert "<table" in report.with_suffix(".html").read_text()
    status = lab.cli("web2", "status").stdout
    assert "broker: nats://10.77.0.1:4222" in status and "evidence waiting: 0" in status
