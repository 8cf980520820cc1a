"""The authority's policy against a real nats-server on loopback (JetStream, no users): two
hosts or one trusted host decide, a host's cap counts what every authority made, two
authorities deciding the same address write it once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from helpers import NatsServer, free_port, load_config, write_config

pytestmark = [pytest.mark.peer]


@pytest.fixture
def broker(tmp_path):
    pytest.importorskip("nats")
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{tmp_path}/js" }}\n')
    with NatsServer(conf, port) as server:
        yield server.url


def make(tmp_path, name, extra=""):
    from nightwarden.jobs.fleet.authority import Authority
    from nightwarden.lib.lists import load_lists

    config = load_config(write_config(tmp_path / name, f"\n[fleet]\nhost_cap = 3\n{extra}"))
    return Authority(config, name, KEY, None, load_lists(config))


KEY = Ed25519PrivateKey.generate()


async def attach(auth, url):
    import nats

    from nightwarden.jobs.fleet.broker import ensure_streams
    from nightwarden.jobs.fleet.feed import Feed

    nc = await nats.connect(url)
    auth.nc, auth.js = nc, nc.jetstream()
    await ensure_streams(auth.js)
    feed = Feed(nc, auth.on_bucket)
    await feed.start()
    await asyncio.wait_for(feed.current.wait(), 10)
    return nc, feed


@contextlib.asynccontextmanager
async def authorities(tmp_path, url, *names, extra=""):
    """Authorities on the broker, each with its bucket followed; closed at the end."""
    made = [make(tmp_path, name, extra) for name in names]
    attached = [await attach(a, url) for a in made]
    try:
        yield made
    finally:
        for nc, feed in attached:
            await feed.stop()
            await nc.close()


def evidence(host, address, trusted=False, kind="scan"):
    body = json.dumps({"address": address, "trusted": trusted, "count": 1}).encode()
    return (f"{host}.e.{kind}", body, 1, False, time.time_ns())


async def until(check, seconds: float = 2.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


async def history(js, key):
    kv = await js.key_value("nw-decisions")
    return len(await kv.history(key))


def test_two_hosts_or_one_trusted_host_make_a_decision(broker, tmp_path):
    async def main():
        async with authorities(tmp_path, broker, "a1") as (a,):
            a.on_evidence([evidence("web1", "198.51.100.1")])
            assert not a.queue  # one host's word that can be forged is not enough
            a.on_evidence([evidence("web2", "198.51.100.1")])
            a.on_evidence([evidence("web3", "198.51.100.2", trusted=True)])
            a.on_evidence(
                [evidence("web3", "198.51.100.0/24", trusted=True)]
            )  # a network: never from evidence
            a.on_evidence([evidence("web3", "10.0.0.1", trusted=True)])
            assert sorted(d.target for d, _, _ in a.queue) == ["10.0.0.1", "198.51.100.1", "198.51.100.2"]
            assert await a.flush() == 3
            made = {d.target: d for d, _ in a.current.values()}
            assert made["198.51.100.1"].reason.startswith("seen by 2 hosts")
            assert [e["host"] for e in made["198.51.100.2"].evidence] == ["web3"]

    asyncio.run(main())


def test_the_authoritys_own_allow_list_and_old_evidence_make_nothing(broker, tmp_path):
    async def main():
        (tmp_path / "a1" / "etc").mkdir(parents=True)
        (tmp_path / "a1" / "etc" / "allow").write_text("198.51.100.7 # the office\n")
        async with authorities(tmp_path, broker, "a1", extra="window = 60\n") as (a,):
            a.on_evidence([evidence("web1", "198.51.100.7", trusted=True)])
            old = evidence("web1", "198.51.100.8", trusted=True)
            a.on_evidence([old[:4] + (time.time_ns() - 120 * 10**9,)])
            assert not a.queue and a.stats["refused"] == 1

    asyncio.run(main())


def test_two_authorities_deciding_one_address_write_it_once(broker, tmp_path):
    async def main():
        async with authorities(tmp_path, broker, "a1", "a2") as (a1, a2):
            for a in (a1, a2):
                a.on_evidence([evidence("web1", "198.51.100.9", trusted=True)])
            assert len(a1.queue) == len(a2.queue) == 1
            assert await a1.flush() == 1
            key = "f.198.51.100.9"
            assert await until(lambda: key in a2.current)  # a2 learns of a1's decision before writing its own
            assert await a2.flush() == 0 and a2.stats["conflicts"] == 1
            assert await history(a1.js, key) == 1

    asyncio.run(main())


def test_a_hosts_cap_counts_the_decisions_every_authority_made(broker, tmp_path):
    async def main():
        async with authorities(tmp_path, broker, "a1", "a2") as (a1, a2):
            a1.on_evidence([evidence("web9", f"198.51.100.{i}", trusted=True) for i in range(20, 30)])
            assert len(a1.queue) == 3  # host_cap = 3
            await a1.flush()
            assert await until(lambda: len(a2.current) >= 3)
            a2.on_evidence([evidence("web9", f"198.51.100.{i}", trusted=True) for i in range(30, 40)])
            assert not a2.queue and a2.stats["capped"] == 10
            a2.on_evidence([evidence("web8", "198.51.100.40", trusted=True)])  # another host has room
            assert len(a2.queue) == 1

    asyncio.run(main())
