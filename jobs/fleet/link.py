"""The host's link to the fleet, a thread of the resident listener: it publishes the host's
evidence, status and daily summary, and applies the fleet's decisions as they arrive (and,
after a time offline, the bucket's current values first). The broker being away costs
nothing but delay: evidence waits in the state database, decisions in the bucket."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from nightwarden.lib.errors import NightwardenError
from nightwarden.lib.logsetup import get
from nightwarden.lib.threads import background

from . import evidence
from .broker import KV_STREAM, connect, evidence_subject, host_subject
from .decisions import Decision, Refused, check
from .signing import BadSignature, Verifier, public_key, unpack
from .store import KV_SEQ

log = get("fleet")
QUIET = ("expired", "not newer")  # refusals that are no one's attack: said at debug level only


def host_name(config) -> str:
    return config.fleet.host or config.hostname.split(".")[0].lower()


class Applier:
    """Checks and applies decisions; lives in one thread (sqlite and netlink are per thread)."""

    def __init__(self, config, make_blocks, dry_run: bool = False):
        from .store import FleetStore

        cfg = config.fleet
        self.config = config
        self.host = host_name(config)
        self.groups = list(cfg.groups)
        self.verifier = Verifier(public_key(cfg.fleet_key, "fleet_key"))
        self.operator_key = public_key(cfg.operator_key, "operator_key") if cfg.operator_key else None
        self.dry_run = dry_run
        self.mgr = make_blocks(config)
        self.store = FleetStore(self.mgr.state)
        self.known = self.store.known()
        self.kv_seq = int(self.mgr.state.get_meta(KV_SEQ, "0") or 0)
        self.applied = 0
        self.refused = 0
        self.last_applied: float | None = self.store.last()
        self._said: dict[str, float] = {}

    def process(self, items) -> int:
        """items: (key, value, stream sequence, deleted, time) from the bucket. Returns how
        many decisions were new here."""
        decisions = []
        for key, value, _sseq, deleted, _stamp in items:
            if deleted:  # a value's end is in its signed expiry, never in a deletion
                continue
            try:
                d = Decision.from_payload(unpack(value)[0])
                if self.known.get(key) == d.seq:
                    continue  # taken already (a copy of it can change nothing either)
                self.verifier.open(value)
                if d.key != key:
                    raise Refused(f"signed for key {d.key!r}, stored under {key!r}")
            except (BadSignature, Refused) as e:
                self._refuse(key, str(e))
                continue
            decisions.append(d)
        if items:
            self.kv_seq = max(self.kv_seq, max(i[2] for i in items))
        return self.take(decisions)

    def take(self, decisions: list[Decision]) -> int:
        """Checked decisions (their signature, or their snapshot's, verified) applied: the
        newest of each key, if newer than what was taken before."""
        from .apply import apply

        now = time.time()
        latest: dict[str, Decision] = {}
        for d in decisions:
            key = d.key
            before = latest.get(key)
            last = max(self.known.get(key, -1), before.seq if before else -1)
            if d.seq == last:
                continue  # taken already (a snapshot repeats what the bucket brought)
            try:
                check(d, now, last if last >= 0 else None, self.operator_key)
            except Refused as e:
                self._refuse(key, str(e))
                continue
            latest[key] = d
        mine = [d for d in latest.values() if d.applies_to(self.host, self.groups)]
        if self.dry_run:
            for d in mine:
                log.info("dry run: would %s %s (%s)", d.action, d.target, d.by)
            return len(mine)

        def record(outcome) -> None:
            outcomes = outcome.outcomes if outcome is not None else {}
            self.store.record(
                [
                    (
                        key,
                        d.seq,
                        d.action,
                        d.target,
                        d.expires,
                        now,
                        d.by,
                        outcomes.get(key, "not for this host"),
                    )
                    for key, d in latest.items()
                ]
            )
            self.mgr.state.set_meta(KV_SEQ, str(self.kv_seq))

        if mine:
            apply(self.mgr, mine, now, also=record)  # one transaction: the rows and what was taken
        else:
            with self.mgr.state:
                record(None)
        for key, d in latest.items():
            self.known[key] = d.seq
        self.applied += len(mine)
        if latest:
            self.last_applied = now
        return len(mine)

    def snapshot(self, head: dict, decisions: list[Decision]) -> int:
        """A verified snapshot's decisions taken; the bucket is followed from its sequence."""
        taken = self.take(decisions)
        self.kv_seq = max(self.kv_seq, int(head["kv_seq"]))
        with self.mgr.state:
            self.mgr.state.set_meta(KV_SEQ, str(self.kv_seq))
        return taken

    def _refuse(self, key: str, why: str) -> None:
        if why.startswith(QUIET):
            log.debug("fleet: %s: %s", key, why)
            return
        self.refused += 1
        now = time.monotonic()
        kind = re.sub(r"'[^']*'|\d+", "_", why)  # the reason, whatever the numbers and names
        if now - self._said.get(kind, -1e9) > 60:  # one line a minute for each reason
            self._said[kind] = now
            log.warning("fleet: ignored the decision %s: %s", key, why)

    def close(self) -> None:
        self.mgr.state.close()


class FleetLink(threading.Thread):
    """The fleet in the listener. `ready` is set once the state is open (the broker may be
    away: the listener does not wait for it)."""

    def __init__(self, config, make_blocks, dry_run: bool = False):
        super().__init__(name="fleet", daemon=True)
        self.config = config
        self.make_blocks = make_blocks
        self.dry_run = dry_run
        self.ready = threading.Event()
        self.current = threading.Event()  # the bucket's values at start are applied
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped: asyncio.Event | None = None
        self.applier: Applier | None = None
        self.feed = None
        self.published = 0

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop is not None and self.stopped is not None:
            self.loop.call_soon_threadsafe(self.stopped.set)
        self.join(timeout)

    def run(self) -> None:
        background()
        try:
            asyncio.run(self._main())
        except Exception as e:  # the fleet must never take the listener down
            log.exception("fleet: stopped: %s", e)
        finally:
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="fleet-apply")
        try:
            self.applier = await self._call(Applier, self.config, self.make_blocks, self.dry_run)
            if self.config.fleet.publish and not self.dry_run:
                await self._call(lambda: evidence.start_from_now(self.applier.mgr.state))
        except NightwardenError as e:
            log.error("fleet: %s", e)
            self.ready.set()
            return
        self.ready.set()
        wait = 0.5
        while not self.stopped.is_set():
            try:
                nc = await connect(
                    self.config.fleet,
                    self.config.fleet.credentials,
                    f"nightwarden {self.applier.host}",
                    persistent=True,
                    reconnected_cb=self._reconnected,
                )
            except NightwardenError as e:
                if wait == 0.5:
                    log.warning("fleet: %s; trying again", e)
                await self._sleep(wait)
                wait = min(wait * 2, 10)
                continue
            wait = 0.5
            log.info(
                "fleet: connected to %s as %s",
                nc.connected_url.netloc if nc.connected_url else "?",
                self.applier.host,
            )
            try:
                await self._session(nc)
            finally:
                try:
                    await nc.close()
                except Exception:
                    pass
        await self._call(self.applier.close)
        self.pool.shutdown(wait=True)

    async def _reconnected(self) -> None:
        """The broker is back: a consumer of ours it may have lost is made again."""
        log.info("fleet: reconnected")
        if self.feed is not None:
            asyncio.ensure_future(self.feed.reset())

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopped.wait(), seconds)
        except TimeoutError:
            pass

    async def _session(self, nc) -> None:
        from .feed import Feed

        tasks = []
        if self.config.fleet.apply:
            inbox: list = []
            wake = asyncio.Event()

            def take(items):
                inbox.extend(items)
                wake.set()

            self.session_start = time.monotonic()
            self.feed = Feed(nc, take, start_seq=await self._catch_up(nc))
            await self.feed.start()
            tasks.append(asyncio.create_task(self._when_current(wake)))
            tasks.append(asyncio.create_task(self._apply_loop(inbox, wake)))
        if not self.dry_run:  # a dry run tells the fleet nothing: no evidence, no status
            if self.config.fleet.publish:
                tasks.append(asyncio.create_task(self._publish_loop(nc)))
            tasks.append(asyncio.create_task(self._status_loop(nc)))
        try:
            await self.stopped.wait()
        finally:
            for t in tasks:
                t.cancel()
            if self.feed is not None:
                await self.feed.stop()

    async def _catch_up(self, nc) -> int:
        """Where to follow the bucket from: the last sequence taken here, or a snapshot's when
        that is far behind (a host back after long), or the start (every key's last value)."""
        from . import snapshot

        start = self.applier.kv_seq
        try:
            last = (await nc.jetstream().stream_info(KV_STREAM)).state.last_seq
        except Exception:
            return start
        if start > last:
            start = 0  # the bucket was made anew: its sequences mean other things now
        gap = self.config.fleet.snapshot_changes
        if gap and last - start > gap:
            try:
                got = await snapshot.fetch(nc, self.applier.verifier.key)
                if got is not None and got[0]["kv_seq"] > start:
                    taken = await self._call(self.applier.snapshot, *got)
                    log.info("fleet: snapshot of %d decision(s) taken (%d here)", got[0]["count"], taken)
                    start = self.applier.kv_seq
            except BadSignature as e:
                log.warning("fleet: the snapshot was not used: %s", e)
            except Exception as e:
                log.info("fleet: no snapshot (%s); reading the bucket", e or type(e).__name__)
        return start

    async def _when_current(self, wake: asyncio.Event) -> None:
        await self.feed.current.wait()
        wake.set()  # "in step" is said at once, even when nothing new came

    async def _apply_loop(self, inbox: list, wake: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(wake.wait(), 0.5)
            except TimeoutError:
                pass
            await asyncio.sleep(0.002)  # what arrives together is applied together
            wake.clear()
            items = inbox[:]
            del inbox[:]
            if items:
                try:
                    await self._call(self.applier.process, items)
                except NightwardenError as e:
                    log.error("fleet: applying %d decision(s): %s", len(items), e)
                except Exception:
                    log.exception("fleet: applying %d decision(s) failed", len(items))
            if self.feed.current.is_set() and not inbox and not self.current.is_set():
                self.current.set()
                log.warning(
                    "fleet: in step with the bucket: %d decision(s) applied here in %.2f s",
                    self.applier.applied,
                    time.monotonic() - self.session_start,
                )

    async def _publish_loop(self, nc) -> None:
        """Never in a dry run (see _session)."""
        js = nc.jetstream()
        host = self.applier.host
        state = self.applier.mgr.state
        said = False
        summary_looked = 0.0
        while True:
            try:
                messages, ev, bl = await self._call(evidence.pending, state, self.config, host)
                if messages:
                    await asyncio.gather(
                        *(
                            js.publish(evidence_subject(host, kind), data, headers={"Nats-Msg-Id": mid})
                            for kind, data, mid in messages
                        )
                    )
                    self.published += len(messages)
                await self._call(evidence.mark, state, ev, bl)
                if time.monotonic() - summary_looked > 60:  # a daily summary: a look a minute will do
                    summary_looked = time.monotonic()
                    due = await self._call(evidence.summary_due, state, time.time())
                else:
                    due = False
                if due:
                    s = await self._call(evidence.summary, state, host)
                    await js.publish(host_subject(host, "summary"), json.dumps(s).encode())
                    await self._call(self._summary_sent, s["time"])
                said = False
                await asyncio.sleep(0.25 if not messages else 0)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker away: the evidence waits in the state database
                if not said:
                    log.warning("fleet: evidence waits for the broker: %s", e or type(e).__name__)
                    said = True
                await asyncio.sleep(1)

    def _summary_sent(self, when: float) -> None:
        from .store import SUMMARY_AT

        with self.applier.mgr.state:
            self.applier.mgr.state.set_meta(SUMMARY_AT, str(when))

    async def _status_loop(self, nc) -> None:
        from nightwarden.lib import __version__

        js = nc.jetstream()
        host = self.applier.host
        while True:
            try:
                info = await js.stream_info(KV_STREAM)
                last_seq = info.state.last_seq
            except Exception:
                last_seq = None
            a = self.applier
            status = {
                "host": host,
                "version": __version__,
                "time": time.time(),
                "groups": a.groups,
                "applied": a.applied,
                "refused": a.refused,
                "last_applied": a.last_applied,
                "decisions_seen": self.feed.sseq if self.feed else None,
                "lag": (last_seq - self.feed.sseq) if (self.feed and last_seq is not None) else None,
                "published": self.published,
            }
            try:
                await js.publish(host_subject(host, "status"), json.dumps(status).encode())
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
            await asyncio.sleep(max(1, self.config.fleet.heartbeat))
