"""Allow lists of a million entries: one `nightwarden block` end to end, the load and the
index, a lookup through the index beside the linear scan that came before it (and that
csf's and fail2ban's ignore lists still do), and the listener's cost per probe with a
100,000-entry allow list beside an empty one.

Targets: a lookup under 10 us at 1,000,000 entries; the listener's per-probe cost with a
100,000-entry allow list within 20 % of an empty list's."""

from __future__ import annotations

import ipaddress
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import NW, private_namespace, timed  # noqa: E402

ENTRIES = 1_000_000


def write_allow(path: Path, count: int, rng: random.Random) -> None:
    with open(path, "w") as f:
        for i in range(count):
            if i % 10 == 0:
                f.write(f"{ipaddress.IPv4Address(rng.getrandbits(32) & 0xFFFFFF00)}/24 # office {i}\n")
            else:
                f.write(f"{ipaddress.IPv4Address(rng.getrandbits(32))}\n")


def per_probe_us(tmp: Path, allow_entries: int) -> float:
    """Listener.hit for 20,000 new sources: the decision path (lists, policy), no sockets."""
    from nightwarden.jobs import load_config
    from nightwarden.jobs.listener.loop import Listener
    from nightwarden.lib.blocks import BlockManager
    from nightwarden.lib.firewall.dryrun import DryRunBackend
    from nightwarden.lib.state import State

    box = tmp / f"l{allow_entries}"
    (box / "etc").mkdir(parents=True)
    (box / "etc" / "nightwarden.toml").write_text("[firewall]\nprotect_loopback = false\n")
    write_allow(box / "etc" / "nightwarden.allow", allow_entries, random.Random(3))
    cfg = load_config(sandbox=str(box))
    logging.getLogger("nightwarden").setLevel(logging.CRITICAL)  # no alert lines on the console
    listener = Listener(cfg, lambda c: BlockManager(c, State(c.db_path), DryRunBackend()), mail=False)
    listener.policy.lists.allow.match(ipaddress.ip_network("127.0.0.1"))  # the index, built once
    sources = [f"127.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(20000)]
    runs = []
    for chunk in range(0, len(sources), 2000):
        start = time.perf_counter()
        for src in sources[chunk : chunk + 2000]:
            listener.hit(src, 1, "tcp", "connect")
        runs.append((time.perf_counter() - start) / 2000 * 1e6)
    return statistics.median(runs)


def main() -> None:
    from nightwarden.lib.lists import AddressList, read_list_file

    rng = random.Random(1)
    tmp = Path(tempfile.mkdtemp(prefix="nw-bench-lists-"))
    box = tmp / "sb"
    (box / "etc").mkdir(parents=True)
    allow = box / "etc" / "nightwarden.allow"
    write_allow(allow, ENTRIES, rng)
    print(f"Allow list of {ENTRIES:,} entries ({allow.stat().st_size / 1e6:.0f} MB)")
    # the real nftables backend, in a private namespace (a sandbox may use it only there)
    env = {"NIGHTWARDEN_SANDBOX_FIREWALL": "nftables"}
    with private_namespace():
        took, peak, _ = timed([NW, "--sandbox", str(box), "firewall", "start"], env)
        print(f"  nightwarden firewall start (nftables, loads all)  {took:6.2f} s   peak {peak} MB")
        took, peak, code = timed([NW, "--sandbox", str(box), "block", "198.51.100.7"], env, ok=(0, 69))
        said = "" if code == 0 else "  FAILED: nft gave no answer within 10 s with a million elements loaded"
        print(f"  nightwarden block, firewall running              {took:6.2f} s   peak {peak} MB{said}")
    start = time.perf_counter()
    lst = AddressList("allow")
    read_list_file(allow, "allow", lst)
    load = time.perf_counter() - start
    start = time.perf_counter()
    lst.match(ipaddress.ip_network("198.51.100.7"))
    build = time.perf_counter() - start
    queries = [ipaddress.ip_network(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20000)]
    start = time.perf_counter()
    for q in queries:
        lst.match(q)
    index_us = (time.perf_counter() - start) / len(queries) * 1e6
    whole = lst.whole
    start = time.perf_counter()
    for q in queries[:20]:
        next((e for e in whole if e.network.version == q.version and e.network.overlaps(q)), None)
    linear_us = (time.perf_counter() - start) / 20 * 1e6
    print(f"  read and parse the file             {load:7.2f} s")
    print(f"  build the index (first lookup)      {build:7.2f} s")
    print(f"  lookup through the index            {index_us:7.1f} us")
    print(f"  lookup by a linear scan (before)    {linear_us:7.0f} us")
    empty, full = per_probe_us(tmp, 0), per_probe_us(tmp, 100_000)
    print(f"  listener decision per probe, empty allow list       {empty:6.1f} us")
    print(f"  listener decision per probe, 100,000-entry list     {full:6.1f} us")
    print(f"  target lookup < 10 us: {'met' if index_us < 10 else 'MISSED'}")
    print(f"  target per-probe cost within 20 % of empty: {'met' if full <= empty * 1.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
