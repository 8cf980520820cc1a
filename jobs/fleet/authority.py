"""The authority: evidence in, signed decisions out.

It reads every host's evidence (the last `window` seconds of it at start, so a restart loses
nothing and two authorities see the same), keeps per address the hosts that reported it, and
decides a fleet-wide block when `min_hosts` distinct hosts did, or one host with evidence it
can trust (a journal entry, a completed handshake). Each evidence host may cause at most
`host_cap` decisions an hour, and no more than `max_entries` are in force. Its own allow and
ignore lists and protected addresses are never blocked. Decisions are gathered for
`batch_delay` and signed as one batch; each is written with compare-and-set, so two
authorities never write the same decision twice. Operators' commands arrive on one queue
group: one authority answers each. Expired decisions are deleted from the bucket."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import OrderedDict, deque

from nightwarden.lib.blocks import refusal
from nightwarden.lib.errors import NightwardenError, UnavailableError
from nightwarden.lib.logsetup import get
from nightwarden.lib.netaddr import display, is_host, parse_network

from . import decisions as dec
from . import signing
from .broker import COMMANDS, EVIDENCE, QUEUE, connect, ensure_streams
from .decisions import Decision, Refused

log = get("fleet")
MAX_ADDRESSES = 1_000_000  # addresses remembered with their evidence (least recent go first)
WRITE_BATCH = 2000  # decisions signed together and written at once, at most
COMMAND_AGE = 300  # an operator's command older than this is refused (a replay)


class Authority:
    def __init__(self, config, name: str, signing_key, operator_key=None, lists=None):
        cfg = config.fleet
        self.cfg = cfg
        self.config = config
        self.name = name
        self.key = signing_key
        self.operator_key = operator_key
        self.lists = lists
        self.tally: OrderedDict[str, dict[str, tuple[float, bool, str]]] = OrderedDict()
        self.current: dict[str, tuple[Decision, int]] = {}  # key -> (decision, revision)
        self.inflight: dict[str, int] = {}  # key -> seq written, not yet seen back
        # evidence host -> times of the decisions it caused (read from the bucket, so two
        # authorities count the same), and those queued or written but not yet seen there
        self.charges: dict[str, deque] = {}
        self.provisional: dict[str, int] = {}
        # (decision, the revision it replaces as the authority saw it when deciding — None: the
        # latest, for an operator's command — and the operator's answer)
        self.queue: list[tuple[Decision, int | None, asyncio.Future | None]] = []
        self.nonces: dict[str, float] = {}
        self.retries: dict[str, int] = {}
        self.stats = {
            "evidence": 0,
            "decisions": 0,
            "capped": 0,
            "full": 0,
            "refused": 0,
            "conflicts": 0,
            "commands": 0,
            "expired": 0,
        }
        self.js = None
        self.nc = None
        self.wake = asyncio.Event()
        self.blocks_in_force = 0

    # -- evidence -> decisions -------------------------------------------------------------
    def in_force(self) -> int:
        """Blocks in force (counted again each second by the sweeper) and those queued."""
        return self.blocks_in_force + len(self.queue)

    def count_in_force(self) -> None:
        now = time.time()
        self.blocks_in_force = sum(
            1 for d, _ in self.current.values() if d.action == "block" and d.in_force(now)
        )

    def on_evidence(self, items) -> None:
        now = time.time()
        for subject, data, _sseq, _deleted, stamp in items:
            self.stats["evidence"] += 1
            parts = subject.split(".")  # <host>.e.<kind>: the subject names the host, not the body
            if len(parts) != 3:
                continue
            host, kind = parts[0], parts[2]
            when = stamp / 1e9
            if when < now - self.cfg.window:
                continue
            try:
                ev = json.loads(data)
                net = parse_network(str(ev["address"]))
            except Exception:
                continue
            if not is_host(net):
                continue  # evidence names addresses; networks are an operator's to block
            address = display(net)
            trusted = bool(ev.get("trusted")) and kind in ("scan", "login", "conn", "block")
            hosts = self.tally.get(address)
            if hosts is None:
                hosts = self.tally[address] = {}
                if len(self.tally) > MAX_ADDRESSES:
                    self.tally.popitem(last=False)
            else:
                self.tally.move_to_end(address)
            old = hosts.get(host)
            hosts[host] = (when, trusted or bool(old and old[1] and old[0] > now - self.cfg.window), kind)
            self._consider(address, net, hosts, now)

    def _consider(self, address: str, net, hosts: dict, now: float) -> None:
        key = dec.key_for("fleet", "", address)
        cur = self.current.get(key)
        if key in self.inflight or (
            cur is not None and cur[0].action in ("block", "allow") and cur[0].in_force(now)
        ):
            return
        recent = {h: v for h, v in hosts.items() if v[0] > now - self.cfg.window}
        free = {h: v for h, v in recent.items() if self._room(h, now)}
        by_count = len(free) >= self.cfg.min_hosts
        trusted = [h for h, v in free.items() if v[1]] if self.cfg.trust_single_host else []
        if not (by_count or trusted):
            if len(recent) >= self.cfg.min_hosts or any(v[1] for v in recent.values()):
                self.stats["capped"] += 1
            return
        if self.in_force() >= self.cfg.max_entries:
            self.stats["full"] += 1
            return
        if self.lists is not None and refusal(self.config, self.lists, net):  # its own lists and protections
            self.stats["refused"] += 1
            return
        contributing = sorted(free) if by_count else trusted[:1]
        for h in contributing:
            self.provisional[h] = self.provisional.get(h, 0) + 1
        kinds = sorted({v[2] for h, v in free.items() if h in contributing})
        reason = (
            f"seen by {len(contributing)} hosts ({', '.join(contributing[:5])}): {', '.join(kinds)}"
            if by_count
            else f"trusted evidence from {contributing[0]}: {', '.join(kinds)}"
        )
        d = Decision(
            action="block",
            target=address,
            issued=now,
            expires=now + self.cfg.block_ttl,
            seq=self._next_seq(key),
            by=f"authority:{self.name}",
            reason=reason,
            evidence=[
                {"host": h, "kind": free[h][2], "trusted": free[h][1], "time": round(free[h][0], 3)}
                for h in contributing[:10]
            ],
        )
        self.inflight[key] = d.seq
        self.queue.append((d, cur[1] if cur else 0, None))
        self.wake.set()

    def _room(self, host: str, now: float) -> bool:
        q = self.charges.get(host) or deque()
        while q and q[0] < now - 3600:
            q.popleft()
        return len(q) + self.provisional.get(host, 0) < self.cfg.host_cap

    def _charge(self, d: Decision, provisional: bool) -> None:
        """The evidence hosts of a decision seen in the bucket pay for it (an hour)."""
        if not d.by.startswith("authority:"):
            return
        for e in d.evidence:
            host = str(e.get("host", "")) if isinstance(e, dict) else ""
            if not host:
                continue
            if provisional and self.provisional.get(host):
                self.provisional[host] -= 1
            self.charges.setdefault(host, deque()).append(d.issued)

    def _next_seq(self, key: str) -> int:
        cur = self.current.get(key)
        return max(time.time_ns(), (cur[0].seq + 1) if cur else 0, self.inflight.get(key, 0) + 1)

    # -- the bucket ------------------------------------------------------------------------
    def on_bucket(self, items) -> None:
        for key, value, sseq, deleted, _stamp in items:
            if deleted:
                self.current.pop(key, None)
                continue
            try:
                payload = signing.unpack(value)[0]
                d = Decision.from_payload(payload)
            except (signing.BadSignature, Refused):
                continue
            before = self.current.get(key)
            if before is None or before[0].seq != d.seq:
                self._charge(d, provisional=self.inflight.get(key) == d.seq)
            self.current[key] = (d, sseq)
            if self.inflight.get(key, -1) <= d.seq:
                self.inflight.pop(key, None)

    async def flush(self) -> int:
        """Sign what is queued as one batch and write each decision with compare-and-set."""
        from nats.errors import TimeoutError as NatsTimeout

        batch, self.queue = self.queue[:WRITE_BATCH], self.queue[WRITE_BATCH:]
        if self.queue:
            self.wake.set()  # the rest in the next batch: a bounded number of writes in flight
        if not batch:
            return 0
        envelopes = signing.sign_batch(self.key, [d.payload() for d, _, _ in batch])
        results = await asyncio.gather(
            *(self._write(d, rev, env) for (d, rev, _), env in zip(batch, envelopes, strict=True)),
            return_exceptions=True,
        )
        written = 0
        for (d, _rev, answer), result in zip(batch, results, strict=True):
            if isinstance(result, TimeoutError | NatsTimeout) and self.retries.get(d.key, 0) < 3:
                # unanswered: written or not, the same compare-and-set again tells (a conflict
                # then means it was, or another authority's was)
                self.retries[d.key] = self.retries.get(d.key, 0) + 1
                self.queue.append((d, _rev if _rev is not None else None, answer))
                self.wake.set()
                continue
            retried = self.retries.pop(d.key, None)
            seen = self.current.get(d.key)
            if isinstance(result, BaseException) and retried and seen is not None and seen[0].seq == d.seq:
                result = seen[1]  # the unanswered write had landed: the bucket shows it
            if isinstance(result, BaseException):
                self.inflight.pop(d.key, None)
                for e in d.evidence:  # not written: its hosts owe nothing
                    h = e.get("host", "")
                    if self.provisional.get(h):
                        self.provisional[h] -= 1
                self.stats["conflicts"] += 1
                if answer is not None and not answer.done():
                    answer.set_exception(result)
                continue
            written += 1
            self.stats["decisions"] += 1
            self.blocks_in_force += d.action == "block"
            seen = self.current.get(d.key)
            if seen is None or seen[0].seq != d.seq:  # else the bucket's feed was quicker than the ack
                self._charge(d, provisional=True)
                self.current[d.key] = (d, result)
            if answer is not None and not answer.done():
                answer.set_result(result)
        return written

    async def _write(self, d: Decision, replaces: int | None, envelope: bytes) -> int:
        """Compare-and-set: written only if the key is still at the revision the decision
        was made on (two authorities deciding the same address: one of them writes it)."""
        if replaces is None:
            cur = self.current.get(d.key)
            replaces = cur[1] if cur else 0
        headers = {"Nats-Expected-Last-Subject-Sequence": str(replaces)}
        ack = await self.js.publish(f"$KV.{dec.BUCKET}.{d.key}", envelope, headers=headers)
        return ack.seq

    async def writer(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(self.cfg.batch_delay)
            self.wake.clear()
            try:
                await self.flush()
            except Exception as e:
                log.warning("fleet authority: writing decisions: %s", e)
                await asyncio.sleep(0.5)

    async def sweeper(self, every: float = 1.0) -> None:
        """Delete what has expired (hosts end it by the expiry in its signed value anyway)."""
        kv = await self.js.key_value(dec.BUCKET)
        while True:
            await asyncio.sleep(every)
            now = time.time()
            for key, (d, rev) in list(self.current.items()):
                if d.expires is not None and d.expires <= now:
                    try:
                        await kv.delete(key, last=rev)
                        self.stats["expired"] += 1
                    except Exception:
                        pass  # the other authority did it, or a newer value came
                    self.current.pop(key, None)
            self.count_in_force()

    async def snapshotter(self, bucket) -> None:
        """A snapshot of what is in force for hosts back after long: every snapshot_every
        seconds while the bucket changes, after snapshot_changes changes sooner (not more
        often than every 30 s)."""
        from . import snapshot

        every, changes = self.cfg.snapshot_every, self.cfg.snapshot_changes
        if not every:
            return
        last_seq, last_time, previous = 0, time.monotonic(), None
        while True:
            await asyncio.sleep(min(5, every))
            changed, since = bucket.sseq - last_seq, time.monotonic() - last_time
            if changed <= 0 or not (since >= every or (changed >= changes and since >= min(30, every))):
                continue
            now, seq = time.time(), bucket.sseq
            payloads = [
                d.payload() for d, _ in self.current.values() if d.action != "block" or d.in_force(now)
            ]
            try:
                head = await snapshot.publish(self.js, self.key, payloads, seq, previous)
            except Exception as e:
                log.warning("fleet authority: snapshot not published: %s", e)
                continue
            previous, last_seq, last_time = head["id"], seq, time.monotonic()
            log.info("fleet authority: snapshot %s: %d decisions as of %d", head["id"], len(payloads), seq)

    # -- operators ---------------------------------------------------------------------------
    async def on_command(self, msg) -> None:
        try:
            rev = await self.command(json.loads(msg.data))
            reply = {"ok": True, "seq": rev[1], "key": rev[0]}
        except (Refused, NightwardenError, ValueError, KeyError, TypeError) as e:
            reply = {"ok": False, "error": str(e)}
        except Exception as e:
            reply = {"ok": False, "error": f"not written: {e or type(e).__name__}"}
        if msg.reply:
            await self.nc.publish(msg.reply, json.dumps(reply).encode())

    async def command(self, signed: dict) -> tuple[str, int]:
        cmd = dec.open_operator(signed, self.operator_key)
        now = time.time()
        issued = cmd.get("issued")
        if not isinstance(issued, (int, float)) or abs(now - issued) > COMMAND_AGE:
            raise Refused("the command is not from the last five minutes (a replay, or the clocks differ)")
        nonce = str(cmd.get("nonce", ""))
        self.nonces = {n: t for n, t in self.nonces.items() if t > now - 2 * COMMAND_AGE}
        if not nonce or nonce in self.nonces:
            raise Refused("the command was sent before (a replay)")
        self.nonces[nonce] = now
        action, scope, to = cmd["action"], cmd.get("scope", "fleet"), cmd.get("to", "")
        if action not in dec.ACTIONS or scope not in dec.SCOPES:
            raise Refused(f"unknown action or scope ({action!r}, {scope!r})")
        target = display(parse_network(str(cmd["target"])))
        if target != cmd["target"]:
            raise Refused(f"write {cmd['target']!r} as {target!r}")
        ttl = cmd.get("ttl")
        if action == "unblock":
            expires = now + 86400  # kept a day for hosts that were away, then deleted
        else:
            expires = None if ttl is None else now + int(ttl)
        key = dec.key_for(scope, to, target)
        if action != "block":
            self.tally.pop(target, None)  # what was seen of it before is not held against it again
        d = Decision(
            action=action,
            target=target,
            scope=scope,
            to=to,
            issued=now,
            expires=expires,
            seq=self._next_seq(key),
            by="operator",
            reason=str(cmd.get("reason", ""))[:200],
            operator=signed,
        )
        dec.check(d, now, None, self.operator_key)  # what every host will check
        self.stats["commands"] += 1
        answer = asyncio.get_running_loop().create_future()
        self.inflight[key] = d.seq
        self.queue.append((d, None, answer))
        self.wake.set()
        seq = await asyncio.wait_for(answer, 10)
        log.warning(
            "fleet: operator %s %s (%s%s): %s", action, target, scope, f" {to}" if to else "", d.reason
        )
        return key, seq


async def serve(config, name: str, stop: asyncio.Event, ready=None) -> Authority:
    """Run an authority until `stop` is set."""
    from pathlib import Path

    from nightwarden.lib.lists import load_lists

    from .feed import Feed

    cfg = config.fleet
    if not cfg.signing_key:
        raise UnavailableError("fleet.signing_key is empty: the authority signs with the fleet's private key")
    key = signing.load_key(Path(cfg.signing_key), "fleet signing key")
    operator_key = signing.public_key(cfg.operator_key, "operator_key") if cfg.operator_key else None
    lists = load_lists(config)
    lists.require_readable()
    auth = Authority(config, name, key, operator_key, lists)
    feeds: list = []

    async def reconnected():  # consumers the broker may have lost are made again
        for feed in feeds:
            asyncio.ensure_future(feed.reset())

    nc = await connect(
        cfg, cfg.credentials, f"nightwarden authority {name}", persistent=True, reconnected_cb=reconnected
    )
    auth.nc, auth.js = nc, nc.jetstream()
    try:
        await ensure_streams(auth.js)
        bucket = Feed(nc, auth.on_bucket)
        feeds.append(bucket)
        await bucket.start()
        await asyncio.wait_for(bucket.current.wait(), 120)
        auth.count_in_force()
        evidence = Feed(
            nc, auth.on_evidence, stream=EVIDENCE, prefix="nw.evt.", start_time=time.time() - cfg.window
        )
        feeds.append(evidence)
        tasks = [
            asyncio.create_task(auth.writer()),
            asyncio.create_task(auth.sweeper()),
            asyncio.create_task(auth.snapshotter(bucket)),
        ]
        await evidence.start()
        await nc.subscribe(f"{COMMANDS}.>", queue=QUEUE, cb=auth.on_command)
        log.warning(
            "fleet authority %s: %d decisions in the bucket, reading evidence", name, len(auth.current)
        )
        if ready is not None:
            ready()
        await stop.wait()
        for t in tasks:
            t.cancel()
        await auth.flush()
        await evidence.stop()
        await bucket.stop()
    finally:
        await nc.close()
    return auth


def run(config, name: str) -> int:
    """`nightwarden fleet authority`: in the foreground until SIGTERM or SIGINT."""
    from nightwarden.lib import sdnotify

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        auth = await serve(config, name, stop, ready=lambda: sdnotify.notify("READY=1"))
        return auth

    auth = asyncio.run(main())
    log.warning("fleet authority %s stopped: %s", name, ", ".join(f"{k} {v}" for k, v in auth.stats.items()))
    return 0
