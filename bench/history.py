"""Scan-history analysis of 10,000,000 rows (30 days, 200,000 sources, a few heavy scanners):
wall time and peak memory of `nightwarden scan-history` over them. Targets: under 30 s and
under 2 GB. The state database is built once (fixed seed) and reused."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import NW, timed  # noqa: E402

ROOT = Path(os.environ.get("NW_BENCH_DIR", "/var/tmp/nightwarden-bench-history"))
ROWS = int(os.environ.get("NW_BENCH_ROWS", 10_000_000))
END = 1_795_000_000.0


def build(db_path: Path) -> None:
    marker = ROOT / f"built-{ROWS}"
    if marker.exists():
        return
    if db_path.exists():
        db_path.unlink()
    subprocess.run(
        [NW, "--config", str(ROOT / "nw.toml"), "-q", "config", "check"], check=True, capture_output=True
    )
    from nightwarden.lib.state import State

    State(db_path).close()  # the schema
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA synchronous=OFF")
    rnd = random.Random(7)
    heavy = [f"203.0.113.{i}" for i in range(1, 21)]
    kinds = ['{"type": "connect"}', '{"type": "SYN"}', '{"type": "FIN"}', '{"type": "UDP"}']

    pool = [
        f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        for _ in range(200_000)
    ]

    def rows():
        for i in range(ROWS):
            ip = heavy[i % 20] if i % 4 == 0 else pool[rnd.randrange(200_000)]
            # the listener appends as it goes: rows arrive in time order
            yield (
                END - 30 * 86400 + i * (30 * 86400 / ROWS),
                "scan",
                ip,
                rnd.randrange(1, 65536),
                "tcp",
                "listener",
                kinds[i % 4],
            )

    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO events(time, kind, address, port, proto, source, detail) VALUES (?,?,?,?,?,?,?)", rows()
    )
    db.execute("COMMIT")
    db.close()
    marker.write_text("ok\n")


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    cfg = ROOT / "nw.toml"
    cfg.write_text(
        f'[general]\nstate_dir = "{ROOT}/state"\nlog_dir = "{ROOT}/log"\n'
        f'report_dir = "{ROOT}/reports"\nrun_dir = "{ROOT}/run"\nsyslog = false\n'
        f'[mail]\ntransport = "none"\n'
    )
    start = time.perf_counter()
    build(ROOT / "state" / "state.db")
    print(f"Scan history: {ROWS:,} rows ready in {time.perf_counter() - start:.0f} s")
    since = time.strftime("%Y-%m-%dT%H:%M", time.localtime(END - 31 * 86400))
    until = time.strftime("%Y-%m-%dT%H:%M", time.localtime(END + 60))
    took, peak, _ = timed(
        [NW, "--config", str(cfg), "-q", "scan-history", "--since", since, "--until", until, "--no-mail"]
    )
    latest = sorted((ROOT / "reports").glob("scan-history-*.json"))[-1]
    summary = json.loads(latest.read_text())["summary"]
    print(
        f"  analysed {summary['hits']:,} rows from {summary['sources']:,} sources in {took:.1f} s "
        f"(target < 30 s: {'met' if took < 30 else 'MISSED'}), peak {peak:.0f} MB "
        f"(target < 2048 MB: {'met' if peak < 2048 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
