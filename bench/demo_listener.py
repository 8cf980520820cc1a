"""For `make demo`: the listener in the sandbox and a simulated scanner hitting it from five
127.x sources (TCP connects to bait ports, UDP datagrams). Run inside a private network
namespace as root (with NIGHTWARDEN_SANDBOX_FIREWALL=nftables: real kernel blocks that die
with the namespace); otherwise on loopback with the dry-run firewall.
Usage: demo_listener.py SANDBOX"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NW = str(Path(sys.executable).parent / "nightwarden")
TCP = [1080, 6667, 12345, 31337, 20034]
UDP = [31335, 37444, 54321]


def wait_for(path: Path, text: str, start: int, timeout: float = 20) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and text in path.read_text(errors="replace")[start:]:
            return True
        time.sleep(0.1)
    return False


def scan(source: str) -> int:
    answered = 0
    for port in TCP:
        with socket.socket() as s:
            s.bind((source, 0))
            s.settimeout(0.3)
            try:
                s.connect(("127.0.0.1", port))
                answered += 1
            except OSError:
                pass
        time.sleep(0.05)  # a patient scanner: the block is in place by now
    for port in UDP:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            s.sendto(b"probe", ("127.0.0.1", port))
    return answered


def main() -> None:
    box = Path(sys.argv[1])
    log = box / "log" / "nightwarden.log"
    start = log.stat().st_size if log.exists() else 0
    proc = subprocess.Popen(
        [NW, "--sandbox", str(box), "listen", "--no-mail"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for(log, "listening (connect mode)", start):
            sys.exit("the listener did not start; see " + str(log))
        sources = [f"127.0.2.{i}" for i in range(1, 6)]
        answered = {src: scan(src) for src in sources}
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    blocks = json.loads(
        subprocess.run(
            [NW, "--sandbox", str(box), "blocks", "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    mine = [b for b in blocks if b["source"] == "listener"]
    alerts = [ln for ln in log.read_text(errors="replace")[start:].splitlines() if "attackalert" in ln]
    from nightwarden.jobs import load_config

    backend = load_config(sandbox=str(box)).firewall_backend()
    backend = "nftables, in a private network namespace," if backend == "nftables" else "dry-run"
    print(
        f"   scanner: 5 sources, {len(TCP)} TCP and {len(UDP)} UDP bait ports each; "
        f"ports answered before the block: {', '.join(f'{s} {n}' for s, n in answered.items())}"
    )
    print(
        f"   listener: {len(alerts)} attack alert line(s), {len(mine)} source(s) blocked ({backend} firewall)"
    )


if __name__ == "__main__":
    main()
