"""The fleet: how fast a decision reaches every host, how fast a host that was away catches up,
how much evidence one authority takes. A real nats-server (JetStream, the users `fleet init`
made) and the authority in one network namespace, three hosts in namespaces of their own
(their own listener, state and nftables), and 200 simulated hosts (each its own broker user,
connection, signature checks and state database, applying to the dry-run backend) in one
process. Run as root: make bench. Nothing leaves the namespaces.

Figures:
- propagation: from the decision's signed time to the kernel entry (`nft monitor` in each
  host's namespace), 50 decisions made from evidence 0.1 s apart, p50 and p99 over the three
  hosts; then the same to the 200 simulated hosts' state. Target p99 < 1 s. The peer's figure
  is CrowdSec's: its firewall bouncer asks the local API every `update_frequency` (10 s by
  default), so a decision waits 5 s on average and 10 s at worst.
- convergence: a host stopped while 100,000 decisions are made, started again: from its
  listener's start to its log saying it is in step with the bucket, and its kernel holding
  them all. Target < 5 s.
- authority: 100,000 evidence messages in the stream, the authority started: evidence taken
  per second (each one parsed, counted and decided on). Target >= 10,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

SIMULATED = 200
DECISIONS = 50
BIG = 100_000
GIVE_UP = 10.0


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def issued(lab, prefix: str) -> dict[str, float]:
    return {d["target"]: d["issued_unix"] for d in lab.decisions() if d.get("target", "").startswith(prefix)}


# -- the 200 simulated hosts (run in the broker's namespace) -----------------------------------
def simulate(base: Path, first: int, last: int, out: Path, expect: int) -> None:
    from helpers import write_config
    from nightwarden.jobs import load_config
    from nightwarden.jobs.fleet.broker import connect
    from nightwarden.jobs.fleet.feed import Feed
    from nightwarden.jobs.fleet.link import Applier
    from nightwarden.lib.blocks import BlockManager
    from nightwarden.lib.firewall.dryrun import DryRunBackend
    from nightwarden.lib.state import State

    fleet = base / "fleet"
    appliers, seen = {}, {}
    shm = Path(tempfile.mkdtemp(prefix="nw-fleet-sim-", dir="/dev/shm"))
    for i in range(first, last + 1):
        name = f"sim{i}"
        d = shm / name  # state in memory: 200 hosts' disks are not this machine's one disk
        snippet = (fleet / f"{name}.toml").read_text().replace("/etc/nightwarden/fleet/", str(fleet) + "/")
        cfg = load_config(write_config(d, 'backend = "dryrun"\n' + snippet))

        def make_blocks(config):
            return BlockManager(config, State(config.db_path), DryRunBackend(prefix="nwsim"))

        appliers[name] = Applier(cfg, make_blocks)
        seen[name] = {}

    async def main():
        conns = []
        for name, a in appliers.items():

            def take(items, name=name, a=a):
                a.process(items)
                now = time.time()
                for key, _v, _s, deleted, _t in items:
                    if not deleted:
                        seen[name].setdefault(key[2:], now)

            nc = await connect(a.config.fleet, a.config.fleet.credentials, name)
            feed = Feed(nc, take)
            await feed.start()
            conns.append((nc, feed))
        (out.with_suffix(".ready")).write_text("ready")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(sum(1 for k in s if k.startswith("100.64.2.")) >= expect for s in seen.values()):
                break
            await asyncio.sleep(0.1)
        for nc, feed in conns:
            await feed.stop()
            await nc.close()

    asyncio.run(main())
    out.write_text(
        json.dumps({n: {k: t for k, t in s.items() if k.startswith("100.64.2.")} for n, s in seen.items()})
    )
    import shutil

    shutil.rmtree(shm, ignore_errors=True)


# -- the authority's throughput (run in the broker's namespace) ------------------------------------
def authority(config_path: str, out: Path) -> None:
    from nightwarden.jobs import load_config
    from nightwarden.jobs.fleet import authority as auth_mod
    from nightwarden.jobs.fleet.broker import EVIDENCE, connect

    config = load_config(config_path)
    result = {}

    async def main():
        nc = await connect(config.fleet, config.fleet.credentials, "bench")
        count = (await nc.jetstream().stream_info(EVIDENCE)).state.messages  # all of it is in the window
        await nc.close()
        stop = asyncio.Event()
        holder = {}
        original = auth_mod.Authority.on_evidence

        def counting(self, items):
            holder.setdefault("first", time.perf_counter())
            holder.setdefault("before", self.stats["decisions"])
            original(self, items)
            holder["auth"] = self
            if self.stats["evidence"] >= count and "last" not in holder:
                holder["last"] = time.perf_counter()

        auth_mod.Authority.on_evidence = counting
        task = asyncio.create_task(auth_mod.serve(config, "bench", stop))
        t_start = time.perf_counter()
        while "last" not in holder and time.perf_counter() - t_start < 300:
            await asyncio.sleep(0.01)
        a = holder.get("auth")
        while a is not None and a.inflight:  # queued, or written and not yet seen back
            if time.perf_counter() - t_start > 300:
                break
            await asyncio.sleep(0.05)
        t2 = time.perf_counter()
        stop.set()
        await task
        first = holder.get("first", t_start)
        result.update(
            evidence=count,
            taken=(a.stats["evidence"] if a else 0),
            decisions=(a.stats["decisions"] if a else 0),
            seconds=holder.get("last", t2) - first,
            written=t2 - t_start,
        )

    asyncio.run(main())
    out.write_text(json.dumps(result))


# -- the run -------------------------------------------------------------------------------------
def main() -> int:
    from common import Monitor, need_peer
    from fleetlab import FleetLab, wait_until

    if os.geteuid() != 0:
        print("bench/fleet.py needs root (network namespaces)")
        return 1
    need_peer("nats-server", "nft", "ip")
    tmp = Path(tempfile.mkdtemp(prefix="nw-fleet-bench-"))
    lab = FleetLab(
        tmp,
        authority="host_cap = 1000000\nmax_entries = 500000\nwindow = 86400\nsnapshot_every = 30\n",
        simulated=SIMULATED,
    )
    results = {}
    try:
        lab.start()
        print(f"fleet: broker, authority and {len(lab.hosts)} hosts in namespaces ({tmp})")
        # 1. propagation to the three namespaced hosts
        monitors = {
            h: Monitor(lab.ns[h], clock=time.time, pattern=r"\b\d+\.\d+\.\d+\.\d+\b") for h in lab.hosts
        }
        sent = lab.publish("web1", "100.64.1", DECISIONS, gap=0.1)
        wait_until(
            lambda: all(
                len([a for a in m.seen if a.startswith("100.64.1.")]) >= DECISIONS for m in monitors.values()
            ),
            GIVE_UP,
        )
        made = issued(lab, "100.64.1.")
        lat, e2e = [], []
        for m in monitors.values():
            for target, t in made.items():
                lat.append((m.seen.get(target, t + GIVE_UP) - t) * 1000)
                e2e.append((m.seen.get(target, sent[target] + GIVE_UP) - sent[target]) * 1000)
        for m in monitors.values():
            m.close()
        results["hosts3"] = (pct(lat, 50), pct(lat, 99), pct(e2e, 50), pct(e2e, 99), len(made))
        print(
            f"propagation, 3 namespaced hosts, {len(made)} decisions: decision -> kernel entry "
            f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms; evidence sent -> kernel entry "
            f"p50 {pct(e2e, 50):.1f} ms, p99 {pct(e2e, 99):.1f} ms"
        )
        # 2. the 200 simulated hosts, in one process per core
        cores = os.cpu_count() or 1
        share = -(-SIMULATED // cores)
        sims, outs = [], []
        for c in range(cores):
            first, last = c * share + 1, min(SIMULATED, (c + 1) * share)
            out = tmp / f"simulated{c}.json"
            outs.append(out)
            argv = [
                sys.executable,
                __file__,
                "--simulate",
                str(tmp),
                str(first),
                str(last),
                str(out),
                str(DECISIONS),
            ]
            err = open(tmp / f"simulate{c}.err", "w")
            sims.append(
                subprocess.Popen(["ip", "netns", "exec", lab.broker_ns, *argv], stdout=err, stderr=err)
            )
        t0 = time.monotonic()
        while not all(o.with_suffix(".ready").exists() for o in outs):
            if any(p.poll() is not None for p in sims) or time.monotonic() - t0 > 300:
                raise SystemExit(
                    "simulated hosts did not start: " + (tmp / "simulate0.err").read_text()[-2000:]
                )
            time.sleep(0.2)
        print(f"  {SIMULATED} simulated hosts connected in {time.monotonic() - t0:.1f} s ({cores} processes)")
        lab.publish("web1", "100.64.2", DECISIONS, gap=0.2)
        applied = {}
        for p, o in zip(sims, outs, strict=True):
            p.wait(300)
            applied.update(json.loads(o.read_text()))
        made = issued(lab, "100.64.2.")
        lat = [(applied[h].get(t, made[t] + GIVE_UP) - made[t]) * 1000 for h in applied for t in made]
        results["sim"] = (pct(lat, 50), pct(lat, 99), len(lat))
        print(
            f"propagation, {SIMULATED} simulated hosts ({cores} processes on this machine's {cores} cores): "
            f"{len(lat)} applications, decision -> applied p50 {pct(lat, 50):.1f} ms, "
            f"p99 {pct(lat, 99):.1f} ms"
        )
        print(
            "  CrowdSec (peer, by its design): the bouncer polls every 10 s: 5,000 ms on average, "
            "10,000 ms at worst"
        )
        # 3. the authority's throughput, then a host back after 100,000 decisions. The hosts'
        # listeners are stopped meanwhile: on a fleet they are other machines, here they would
        # take this machine's two cores from the authority and from web3
        for h in lab.hosts:
            lab.listeners[h].stop()
        lab.authorities.pop("a1").stop()
        rates = []
        for label, prefix, modulo in (
            ("100,000 messages about 2,000 addresses (a flood seen again and again)", "101", 2000),
            ("100,000 messages, each a new address and a new decision (the worst case)", "100", 0),
        ):
            t0 = time.perf_counter()
            lab.publish("web1", prefix, BIG, modulo=modulo)
            print(f"  {BIG:,} evidence messages published in {time.perf_counter() - t0:.1f} s (with acks)")
            out = tmp / "authority.json"
            argv = [sys.executable, __file__, "--authority", str(lab.configs["authority"]), str(out)]
            done = subprocess.run(
                ["ip", "netns", "exec", lab.broker_ns, *argv], capture_output=True, text=True, timeout=900
            )
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            a = json.loads(out.read_text())
            rate = a["taken"] / a["seconds"]
            rates.append(rate)
            print(
                f"authority, {label}: {a['taken']:,} evidence messages taken in {a['seconds']:.2f} s "
                f"({rate:,.0f}/s; the stream's {a['evidence']:,} in all from the window's start); "
                f"{a['decisions']:,} new decisions signed and written {a['written']:.1f} s after its start"
            )
        results["authority"] = (min(rates), 0, 0)
        authority_log = lab.base / "authority" / "log" / "nightwarden.log"
        snapshots = authority_log.read_text().count("snapshot ")
        lab.start_authority("a1")
        t0 = time.perf_counter()
        wait_until(lambda: authority_log.read_text().count("snapshot ") > snapshots, 120, 0.5)
        print(f"  the authority's snapshot published {time.perf_counter() - t0:.0f} s after its start")
        log = lab.base / "web3" / "log" / "nightwarden.log"
        before = log.read_text().count("in step with the bucket")
        t0 = time.perf_counter()
        lab.start_host("web3")
        caught_up = wait_until(lambda: log.read_text().count("in step with the bucket") > before, 60, 0.01)
        took = time.perf_counter() - t0
        held = len([a for a in lab.kernel("web3", ("temp4",)) if a.startswith("100.")])
        results["converge"] = (took, held)
        for h in lab.hosts[:2]:
            lab.start_host(h)
        print(
            f"convergence: web3 back after {BIG:,} more decisions: in step {took:.2f} s after its "
            f"listener started ({'yes' if caught_up else 'NOT within 60 s'}); its kernel holds {held:,}"
        )
    finally:
        lab.stop()
    h3, sim, au, cv = (
        results.get("hosts3"),
        results.get("sim"),
        results.get("authority"),
        results.get("converge"),
    )
    print("targets:")
    if h3 and sim:
        print(
            f"  p99 < 1 s: 3 hosts {h3[1]:.0f} ms, {SIMULATED} hosts {sim[1]:.0f} ms: "
            + ("met" if max(h3[1], sim[1]) < 1000 else "MISSED")
        )
    if cv:
        print(f"  converged < 5 s: {cv[0]:.2f} s: " + ("met" if cv[0] < 5 and cv[1] >= BIG else "MISSED"))
    if au:
        print(
            f"  authority >= 10,000 evidence/s: {au[0]:,.0f}/s: " + ("met" if au[0] >= 10_000 else "MISSED")
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulate", nargs=5)
    parser.add_argument("--authority", nargs=2)
    ns = parser.parse_args()
    if ns.simulate:
        a = ns.simulate
        simulate(Path(a[0]), int(a[1]), int(a[2]), Path(a[3]), int(a[4]))
    elif ns.authority:
        authority(ns.authority[0], Path(ns.authority[1]))
    else:
        sys.exit(main())
