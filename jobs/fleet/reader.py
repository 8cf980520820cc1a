"""Reading the fleet for a person: the bucket's decisions, each host's last status and
summary, the evidence of a period (for `fleet status`, `fleet decisions`, `fleet report`)."""

from __future__ import annotations

import asyncio
import json

from . import signing
from .broker import EVIDENCE, HOSTS, connect
from .decisions import Decision, Refused
from .feed import Feed


async def _drain(nc, on_items, timeout: float, **kwargs) -> None:
    feed = Feed(nc, on_items, **kwargs)
    await feed.start()
    try:
        await asyncio.wait_for(feed.current.wait(), timeout)
    finally:
        await feed.stop()


async def decisions(nc, verifier=None, timeout: float = 60) -> list[tuple[str, Decision, int, str]]:
    """(key, decision, revision, trouble) of every key; trouble says why a value does not verify."""
    out = []

    def take(items):
        for key, value, sseq, deleted, _stamp in items:
            if deleted:
                continue
            trouble = ""
            try:
                payload = verifier.open(value) if verifier else signing.unpack(value)[0]
                d = Decision.from_payload(payload)
            except (signing.BadSignature, Refused) as e:
                trouble = str(e)
                d = None
            out.append((key, d, sseq, trouble))

    await _drain(nc, take, timeout)
    return out


async def hosts(nc, timeout: float = 30) -> dict[str, dict]:
    """host -> {"status": {...}, "summary": {...}} from their last messages."""
    out: dict[str, dict] = {}

    def take(items):
        for subject, data, _sseq, _deleted, stamp in items:
            host, _, what = subject.partition(".")
            try:
                body = json.loads(data)
            except ValueError:
                continue
            body["received"] = stamp / 1e9
            out.setdefault(host, {})[what] = body

    await _drain(nc, take, timeout, stream=HOSTS, prefix="nw.evt.")
    return out


async def summaries(nc, since: float, timeout: float = 60) -> dict[str, list[dict]]:
    """Every summary of each host since a time."""
    out: dict[str, list[dict]] = {}

    def take(items):
        for subject, data, _sseq, _deleted, stamp in items:
            host, _, what = subject.partition(".")
            if what != "summary":
                continue
            try:
                body = json.loads(data)
            except ValueError:
                continue
            body["received"] = stamp / 1e9
            out.setdefault(host, []).append(body)

    await _drain(nc, take, timeout, stream=HOSTS, prefix="nw.evt.", start_time=since)
    return out


async def evidence(nc, since: float, timeout: float = 120) -> list[tuple[str, str, dict, float]]:
    """(host, kind, evidence, time) since a time."""
    out = []

    def take(items):
        for subject, data, _sseq, _deleted, stamp in items:
            parts = subject.split(".")
            if len(parts) != 3:
                continue
            try:
                out.append((parts[0], parts[2], json.loads(data), stamp / 1e9))
            except ValueError:
                continue

    await _drain(nc, take, timeout, stream=EVIDENCE, prefix="nw.evt.", start_time=since)
    return out


async def history(nc, since: float, timeout: float = 60) -> list[tuple[str, Decision | None, bool, float]]:
    """Every value written to the bucket since a time, deletions included: (key, decision, deleted, time)."""
    from .broker import KV_STREAM
    from .feed import PREFIX

    out = []

    def take(items):
        for key, value, _sseq, deleted, stamp in items:
            d = None
            if not deleted:
                try:
                    d = Decision.from_payload(signing.unpack(value)[0])
                except (signing.BadSignature, Refused):
                    continue
            out.append((key, d, deleted, stamp / 1e9))

    await _drain(nc, take, timeout, stream=KV_STREAM, prefix=PREFIX, start_time=since)
    return out


def run(config, credentials: str, name: str, fn, *args):
    """Connect, call `fn(nc, *args)`, close: for one command."""

    async def main():
        nc = await connect(config.fleet, credentials, name)
        try:
            return await fn(nc, *args)
        finally:
            await nc.close()

    return asyncio.run(main())
