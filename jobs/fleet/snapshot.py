"""Snapshots of the decision bucket, for a host that comes back after a long time: every
decision in force as of one bucket sequence, compressed, in parts, under one Ed25519
signature of the fleet key over a head that names the parts' SHA-256. A host checks one
signature instead of one path per decision and reads a few messages instead of 100,000,
then follows the bucket from the snapshot's sequence on. No snapshot, or a bad one: the host
reads the bucket itself, as before."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import zlib

from .broker import SNAPSHOT as STREAM
from .signing import BadSignature

HEAD = "nw.snap.head"
DOMAIN = b"nightwarden-fleet-snapshot-v1\0"
CHUNK = 60_000  # bytes a part (the broker takes 64 KiB a message)
MAX_SIZE = 512 * 1024**2  # decompressed, at most
EVERY = 300  # seconds between two snapshots while the bucket changes
SOON = 1000  # or as soon as this many changes have been made


def build(key, payloads: list[bytes], kv_seq: int) -> tuple[dict, list[bytes]]:
    blob = zlib.compress(b"[" + b",".join(payloads) + b"]", 1)  # one JSON array: decoded in one call
    parts = [blob[i : i + CHUNK] for i in range(0, len(blob), CHUNK)] or [b""]
    head = {
        "id": os.urandom(8).hex(),
        "kv_seq": kv_seq,
        "count": len(payloads),
        "parts": len(parts),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "time": time.time(),
    }
    head["sig"] = base64.b64encode(key.sign(DOMAIN + _canonical(head))).decode()
    return head, parts


def _canonical(head: dict) -> bytes:
    return json.dumps(
        {k: v for k, v in head.items() if k != "sig"}, sort_keys=True, separators=(",", ":")
    ).encode()


def check_head(head: dict, public_key) -> None:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(base64.b64decode(head["sig"], validate=True), DOMAIN + _canonical(head))
    except (InvalidSignature, KeyError, TypeError, ValueError):
        raise BadSignature("the snapshot's signature is not the fleet key's") from None
    for field in ("id", "kv_seq", "count", "parts", "sha256"):
        if field not in head:
            raise BadSignature(f"the snapshot has no {field}")


def decisions(head: dict, parts: list[bytes]) -> list:
    """The snapshot's decisions (each one's key checked as Decision.from_payload does)."""
    import msgspec

    from .decisions import Decision

    try:
        found = msgspec.json.decode(_data(head, parts) or b"[]", type=list[Decision])
    except msgspec.DecodeError as e:
        raise BadSignature(f"the snapshot is malformed ({e})") from None
    return [d for d in found if d.signed_key == d.key]


def _data(head: dict, parts: list[bytes]) -> bytes:
    blob = b"".join(parts)
    if len(parts) != head["parts"] or hashlib.sha256(blob).hexdigest() != head["sha256"]:
        raise BadSignature("the snapshot's parts are not those it was signed with")
    d = zlib.decompressobj()
    data = d.decompress(blob, MAX_SIZE)
    if d.unconsumed_tail:
        raise BadSignature("the snapshot is too large")
    return data


async def publish(js, key, payloads_: list[bytes], kv_seq: int, previous: str | None) -> dict:
    import asyncio

    head, parts = build(key, payloads_, kv_seq)
    await asyncio.gather(*(js.publish(f"nw.snap.{head['id']}.{i}", p) for i, p in enumerate(parts)))
    await js.publish(HEAD, json.dumps(head).encode())
    if previous:
        try:
            await js.purge_stream(STREAM, subject=f"nw.snap.{previous}.>")
        except Exception:
            pass  # its age removes it too
    return head


async def fetch(nc, public_key, timeout: float = 30) -> tuple[dict, list] | None:
    """The latest snapshot (checked), or None if there is none."""
    import asyncio

    from nats.js.errors import NotFoundError

    from .feed import Feed

    js = nc.jetstream()
    try:
        msg = await js.get_last_msg(STREAM, HEAD)
    except NotFoundError:
        return None
    try:
        head = json.loads(msg.data)
    except ValueError:
        raise BadSignature("the snapshot's head is not JSON") from None
    check_head(head, public_key)
    got: dict[int, bytes] = {}
    prefix = f"nw.snap.{head['id']}."

    def take(items):
        for suffix, data, _sseq, _deleted, _stamp in items:
            if suffix.isdigit():
                got[int(suffix)] = data

    feed = Feed(nc, take, stream=STREAM, prefix=prefix)
    await feed.start()
    try:
        await asyncio.wait_for(feed.current.wait(), timeout)
    finally:
        await feed.stop()
    parts = [got.get(i, b"") for i in range(head["parts"])]
    return head, decisions(head, parts)
