"""The weekly purge of 50,000 dynamic blocks, with the re-assertion of the base rules and the
reconciliation of kernel and state, per backend, each in a fresh private network namespace.
Target: under 2 s on nftables and on iptables + ipset; python-iptables printed beside them.
Run as root: make bench."""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_config, private_namespace  # noqa: E402
from firewall_batch import make  # noqa: E402

N = int(os.environ.get("NW_BENCH_N", 50_000))


def config(tmp: str):
    return bench_config(tmp, f"[blocks]\nperm_block_count = 0\ntemp_limit = {N * 2}\n")


def bench(name: str) -> tuple[float, float, int]:
    from nightwarden.lib import lifecycle
    from nightwarden.lib.blocks import BlockManager
    from nightwarden.lib.state import State

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(tmp)
        mgr = BlockManager(cfg, State(cfg.db_path), make(name))
        mgr.ensure_ready()
        base = int(ipaddress.ip_address("10.0.0.1"))
        nets = [ipaddress.ip_network(ipaddress.ip_address(base + i)) for i in range(N)]
        start = time.perf_counter()
        for i in range(0, N, 10_000):
            mgr.block(nets[i : i + 10_000], ttl=86400, source="bench", strict=False)
        fill = time.perf_counter() - start
        assert sum(1 for e in mgr.backend.list() if e.kind == "temp") == N
        start = time.perf_counter()
        result = lifecycle.purge(mgr, age=0)
        took = time.perf_counter() - start
        assert len(result.removed) == N and not mgr.backend.list() and mgr.backend.is_ready()
        return fill, took, len(result.removed)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/purge.py needs root (it works in private network namespaces)")
    print(f"Purge of {N:,} dynamic blocks + re-assertion of the base rules + reconciliation")
    print(f"  {'backend':<32} {'fill (not timed)':>17} {'purge':>8}  target")
    for name, target in (("nftables", 2.0), ("ipset", 2.0), ("iptc", None)):
        try:
            with private_namespace():
                fill, took, removed = bench(name)
        except Exception as e:  # a backend missing here is reported, not fatal
            print(f"  {name:<32} unavailable: {e}")
            continue
        label = name + (" (python-iptables, legacy)" if name == "iptc" else "")
        verdict = f"< {target:.0f} s: {'met' if took < target else 'MISSED'}" if target else "no target"
        print(f"  {label:<32} {fill:16.2f}s {took:7.3f}s  {verdict}")


if __name__ == "__main__":
    main()
