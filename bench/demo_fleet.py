"""make demo-fleet (as root): three hosts in network namespaces of their own, a broker and an
authority in a fourth, sharing a block. A scanner completes a handshake with web1's bait port;
web1 blocks it at once, tells the fleet, and web2 and web3 have it in their kernels within a
second; the operator lifts it everywhere with one signed command. Everything lives in the
namespaces and a temporary directory, and is gone at the end."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fleetlab import FleetLab, wait_until  # noqa: E402


def show(lab: FleetLab, title: str, address: str) -> None:
    print(f"== {title}")
    for h in lab.hosts:
        held = address in lab.kernel(h)
        print(f"   {h}: {address} {'blocked in its kernel (nftables)' if held else 'not blocked'}")


def main() -> int:
    import os
    import shutil

    if os.geteuid() != 0:
        print("make demo-fleet needs root: its hosts are network namespaces")
        return 77
    for tool in ("nats-server", "nft", "ip"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            print(f"make demo-fleet needs {tool} (apt-get install nats-server nftables iproute2)")
            return 69
    tmp = Path(tempfile.mkdtemp(prefix="nw-demo-fleet-"))
    lab = FleetLab(tmp)
    try:
        print("== a fleet: nats-server (JetStream) and the authority in one namespace; web1-3 in theirs")
        print(
            f"   `nightwarden fleet init` made the keys, the broker's users, each host's config: {lab.fleet}"
        )
        lab.start()
        print(lab.cli("operator", "fleet", "status").stdout)
        address = "127.0.0.77"
        show(lab, "before", address)
        print(f"== a scanner at {address} completes a handshake with web1's bait port {lab.bait}")
        start = time.monotonic()
        lab.scan("web1", address)
        wait_until(lambda: all(address in lab.kernel(h) for h in lab.hosts), 5, 0.01)
        show(lab, f"after {time.monotonic() - start:.2f} s", address)
        print("== nightwarden fleet decisions")
        print(lab.cli("operator", "fleet", "decisions").stdout)
        print("== web2: nightwarden blocks")
        print(lab.cli("web2", "blocks").stdout)
        print(f"== the operator: nightwarden fleet unblock {address} (signed with the operator's key)")
        print(lab.cli("operator", "fleet", "unblock", address, "--reason", "demo: a customer").stdout.strip())
        wait_until(lambda: not any(address in lab.kernel(h) for h in lab.hosts), 5, 0.01)
        show(lab, "after the unblock", address)
        print("== nightwarden fleet report --no-mail")
        lab.cli("operator", "fleet", "report", "--no-mail")
        report = sorted((tmp / "operator" / "reports").glob("fleet-report-*.txt"))[-1]
        print(report.read_text())
    finally:
        lab.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
