"""Blocking 10,000 addresses in one batch and removing them, per backend, each in a fresh
private network namespace (never the host's firewall). Prints seconds per operation.

Beside the batches, the way csf, fail2ban and PortSentry add entries (one process per
entry) is timed for 1,000 `ipset add` calls, for scale. Run as root: make bench.
Target: under 1 s for 10,000 with nftables and with ipset.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_config, private_namespace  # noqa: E402

N = 10_000
PER_PROCESS_N = 1_000


def addresses(n: int) -> list:
    base = int(ipaddress.ip_address("10.0.0.1"))
    return [ipaddress.ip_network(ipaddress.ip_address(base + i)) for i in range(n)]


def make(name: str):
    if name == "nftables":
        from nightwarden.lib.firewall.nftables import NftablesBackend

        return NftablesBackend(prefix="nwbench")
    if name == "ipset":
        from nightwarden.lib.firewall.ipset import IpsetBackend

        return IpsetBackend(prefix="nwbench")
    from nightwarden.lib.firewall.iptc import IptcBackend

    return IptcBackend(prefix="nwbench")


def bench_backend(name: str) -> tuple[float, float, float]:
    from nightwarden.lib.firewall import Entry

    fw = make(name)
    start = time.perf_counter()
    fw.ensure()
    setup = time.perf_counter() - start
    entries = [Entry(a, "temp", 3600) for a in addresses(N)]
    start = time.perf_counter()
    fw.block(entries)
    add = time.perf_counter() - start
    count = sum(1 for e in fw.list() if e.kind == "temp")
    assert count == N, f"{name}: {count} entries in the kernel, expected {N}"
    start = time.perf_counter()
    fw.unblock(entries)
    remove = time.perf_counter() - start
    assert not fw.list(), f"{name}: entries left after removal"
    fw.teardown()
    return setup, add, remove


def bench_manager() -> tuple[float, float]:
    """The full path a job takes: validation, state rows and the kernel, one transaction."""
    from nightwarden.lib.blocks import BlockManager
    from nightwarden.lib.firewall.nftables import NftablesBackend
    from nightwarden.lib.state import State

    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(tmp)
        mgr = BlockManager(cfg, State(cfg.db_path), NftablesBackend(prefix="nwbench"))
        mgr.ensure_ready()
        nets = addresses(N)
        start = time.perf_counter()
        mgr.block(nets, ttl=3600, source="bench", strict=False)
        add = time.perf_counter() - start
        start = time.perf_counter()
        mgr.unblock(nets, strict=False)
        remove = time.perf_counter() - start
        return add, remove


def bench_per_process() -> float | None:
    if shutil.which("ipset") is None:
        return None
    subprocess.run(["ipset", "create", "nwbench-pp", "hash:ip", "timeout", "0"], check=True)
    start = time.perf_counter()
    for a in addresses(PER_PROCESS_N):
        subprocess.run(["ipset", "add", "nwbench-pp", str(a.network_address)], check=True)
    return time.perf_counter() - start


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/firewall_batch.py needs root (it works in private network namespaces)")
    print(f"Firewall batches: {N:,} addresses blocked in one batch, then removed in one batch")
    print(f"  {'backend':<34} {'set up':>8} {'block':>8} {'unblock':>8}  target")
    for name, target in (("nftables", 1.0), ("ipset", 1.0), ("iptc", None)):
        try:
            with private_namespace():
                setup, add, remove = bench_backend(name)
        except Exception as e:  # a backend missing here is reported, not fatal
            print(f"  {name:<34} unavailable: {e}")
            continue
        verdict = "-" if target is None else ("met" if max(add, remove) < target else "MISSED")
        label = name + (" (python-iptables, legacy)" if name == "iptc" else "")
        print(
            f"  {label:<34} {setup:7.3f}s {add:7.3f}s {remove:7.3f}s  "
            f"{f'< {target:.0f} s: {verdict}' if target else 'no target'}"
        )
    with private_namespace():
        add, remove = bench_manager()
    print(f"  {'nftables via BlockManager (+state)':<34} {'':>8} {add:7.3f}s {remove:7.3f}s")
    with private_namespace():
        per = bench_per_process()
    if per is not None:
        print(
            f"  one `ipset add` process per entry: {PER_PROCESS_N:,} entries in {per:.2f} s "
            f"(about {per * N / PER_PROCESS_N:.0f} s for {N:,})"
        )


if __name__ == "__main__":
    main()
