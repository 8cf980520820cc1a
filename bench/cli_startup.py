"""CLI start-up time: `nightwarden --help` and `nightwarden jobs`, median of 20 runs,
beside a bare `python -c pass`. Target: --help well under 150 ms."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 20
BIN = Path(sys.executable).parent


def median_ms(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    rows = [
        ("python -c pass (baseline)", median_ms([sys.executable, "-c", "pass"])),
        ("nightwarden --help", median_ms([str(BIN / "nightwarden"), "--help"])),
        ("nightwarden jobs", median_ms([str(BIN / "nightwarden"), "jobs"])),
    ]
    print(f"CLI start-up, median of {RUNS} runs")
    for name, ms in rows:
        print(f"  {name:<28} {ms:7.1f} ms")
    verdict = "met" if rows[1][1] < 150 else "MISSED"
    print(f"  target --help < 150 ms: {verdict}")


if __name__ == "__main__":
    main()
