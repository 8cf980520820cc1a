"""A sweep of a generated /tmp-like tree of 100,000 entries: wall time and entries per second.
Target: under 5 s. The tree: 2,000 directories (some hidden) of files owned by an ordinary
user, so every file is opened and its head read; 1 % are suspicious (scripts, ELF binaries,
symlinks) and are quarantined into the tar archive. Run as root: make bench."""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from firewall_batch import bench_config  # noqa: E402

ENTRIES = int(os.environ.get("NW_BENCH_ENTRIES", 100_000))
DIRS = 2_000
NOBODY = 65534
ELF = Path("/bin/true").read_bytes()[:8192]


def build(root: Path) -> int:
    rnd = random.Random(42)
    per_dir = ENTRIES // DIRS - 1
    made = suspicious = 0
    for d in range(DIRS):
        sub = root / (f".cache-{d}" if d % 100 == 0 else f"session-{d}")
        sub.mkdir()
        os.chown(sub, NOBODY, NOBODY)
        made += 1
        for f in range(per_dir):
            roll = rnd.random()
            path = sub / f"f{f}"
            if roll < 0.004:
                path = path.with_suffix(".sh")
                path.write_bytes(b"#!/bin/sh\necho x\n")
                suspicious += 1
            elif roll < 0.007:
                path.write_bytes(ELF)
                suspicious += 1
            elif roll < 0.01:
                path.symlink_to("/etc/passwd")
                os.lchown(path, NOBODY, NOBODY)
                suspicious += 1
                made += 1
                continue
            else:
                path.write_bytes(b"session data %d\n" % f * rnd.randrange(1, 40))
            os.chown(path, NOBODY, NOBODY)
            made += 1
    return made


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/quarantine.py needs root (it plants files owned by another user)")
    from nightwarden.jobs.quarantine import ignore
    from nightwarden.jobs.quarantine.archive import Quarantine
    from nightwarden.jobs.quarantine.sweep import Sweep
    from nightwarden.lib.state import State

    tmp = Path(tempfile.mkdtemp(prefix="nw-bench-q-"))
    try:
        watched = tmp / "tmp"
        watched.mkdir(mode=0o1777)
        start = time.perf_counter()
        made = build(watched)
        os.sync()  # the tree is written out, as a real /tmp's files long are
        print(f"Quarantine sweep: {made:,} entries built in {time.perf_counter() - start:.1f} s")
        cfg = bench_config(
            str(tmp), f'[quarantine]\ndirs = ["{watched}"]\nmax_files = 100000\ntime_limit = 600\n'
        )
        state = State(cfg.db_path)
        for mode in ("report", "quarantine"):
            handler = Quarantine(cfg, state, report_only=(mode == "report"))
            start = time.perf_counter()
            stats = Sweep(cfg.quarantine, ignore.IgnoreRules(), handler).run([watched])
            handler.close()
            took = time.perf_counter() - start
            print(
                f"  {mode:<10} {stats.entries:,} entries, {stats.examined:,} files read, "
                f"{len(handler.outcome.records):,} findings: {took:.2f} s "
                f"({stats.entries / took:,.0f} entries/s)  target < 5 s: "
                f"{'met' if took < 5 else 'MISSED'}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
