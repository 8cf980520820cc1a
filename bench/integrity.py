"""Integrity snapshot and check, side by side with AIDE 0.18 and a plain 2-process sha256 pass,
on the same generated tree (100,000 files, 2 GB; built once with a fixed seed and reused).

Prints wall time and peak memory (the largest process) for: the plain pass, `nightwarden
integrity init` and `check` (and `check --quick`), `aide --init` and `aide --check` (sha256
only, 2 workers). Warm cache: one untimed pass reads the tree first.
Targets: init <= 1.25 x the plain pass and >= 2 x as fast as aide --init; check >= 5 x as fast
as aide --check; peak memory < 300 MB. Run: make bench (AIDE: Debian package aide).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import NW, need_peer, timed  # noqa: E402

FINDINGS = (0, 1, 4, 5, 7)  # nightwarden's and aide's exit bits for what they found

ROOT = Path(os.environ.get("NW_BENCH_DIR", "/var/tmp/nightwarden-bench-integrity"))
FILES = int(os.environ.get("NW_BENCH_FILES", 100_000))
BIG = 100  # files of 15 MB: 1.5 GB
BIG_SIZE = 15 << 20


def build(tree: Path) -> None:
    marker = tree.parent / f"built-{FILES}"
    if marker.exists():
        return
    shutil.rmtree(tree, ignore_errors=True)
    rnd = random.Random(20261121)
    block = rnd.randbytes(BIG_SIZE + 65536)
    total = 0
    for i in range(FILES):
        d = tree / f"d{i // 500:03d}" / f"s{(i // 50) % 10}"
        if i % 50 == 0:
            d.mkdir(parents=True, exist_ok=True)
        if i < BIG:
            data = block[i * 64 : i * 64 + BIG_SIZE]
        else:
            start = rnd.randrange(65536)
            data = block[start : start + rnd.choice((512, 2048, 4096, 6000, 9000, 16384))]
        (d / f"f{i}").write_bytes(data)
        total += len(data)
    os.sync()
    marker.write_text(f"{total}\n")


def tree_size(tree: Path) -> int:
    return int((tree.parent / f"built-{FILES}").read_text())


def _hash_batch(paths: list[str]) -> int:
    n = 0
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        n += 1
    return n


def plain_pass(tree: Path) -> float:
    start = time.perf_counter()
    batches, batch = [], []
    for dirpath, _, files in os.walk(tree):
        for name in files:
            batch.append(os.path.join(dirpath, name))
            if len(batch) == 1024:
                batches.append(batch)
                batch = []
    batches.append(batch)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        count = sum(pool.imap_unordered(_hash_batch, batches))
    assert count == FILES
    return time.perf_counter() - start


def main() -> None:
    tree = ROOT / "tree"
    ROOT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    build(tree)
    print(
        f"Integrity: {FILES:,} files, {tree_size(tree) / 1e9:.2f} GB in {tree} "
        f"(ready in {time.perf_counter() - start:.1f} s)"
    )
    work = ROOT / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "etc").mkdir(parents=True)
    cfg = work / "etc" / "nightwarden.toml"
    cfg.write_text(
        f'[general]\nstate_dir = "{work}/state"\nlog_dir = "{work}/log"\n'
        f'report_dir = "{work}/reports"\nrun_dir = "{work}/run"\nsyslog = false\n'
        f'[integrity]\npaths = ["{tree}"]\nexcludes = []\npackage_aware = false\n'
        f'workers = 2\n[mail]\ntransport = "none"\n'
    )
    env = {"NIGHTWARDEN_INTEGRITY_PASSPHRASE": "bench passphrase"}
    subprocess.run(
        [NW, "--config", str(cfg), "-q", "integrity", "keygen"], env={**os.environ, **env}, check=True
    )
    aide_conf = work / "aide.conf"
    aide_conf.write_text(
        f"database_in=file:{work}/aide.db\ndatabase_out=file:{work}/aide.db.new\n"
        f"gzip_dbout=no\nnum_workers=2\nreport_url=stdout\n"
        f"Bench = p+i+n+u+g+s+m+c+sha256\n{tree} Bench\n"
    )
    plain_pass(tree)  # warm the cache, untimed
    # the plain pass runs as its own process too, so both sides pay an interpreter's start
    plain_cmd = [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import integrity; integrity.plain_pass(integrity.Path({str(tree)!r}))",
    ]
    t, rss, _ = timed(plain_cmd, ok=FINDINGS)
    rows = [("plain 2-process sha256 pass", t, rss)]
    t, rss, _ = timed([NW, "--config", str(cfg), "-q", "integrity", "init"], env, ok=FINDINGS)
    rows.append(("nightwarden integrity init", t, rss))
    t, rss, _ = timed([NW, "--config", str(cfg), "-q", "integrity", "check", "--no-mail"], env, ok=FINDINGS)
    rows.append(("nightwarden integrity check", t, rss))
    t, rss, _ = timed(
        [NW, "--config", str(cfg), "-q", "integrity", "check", "--quick", "--no-mail"], env, ok=FINDINGS
    )
    rows.append(("nightwarden check --quick (weaker)", t, rss))
    need_peer("aide")
    aide = shutil.which("aide")
    if aide:
        t, rss, _ = timed([aide, f"--config={aide_conf}", "--init"], ok=FINDINGS)
        rows.append(("aide --init (sha256, 2 workers)", t, rss))
        os.replace(work / "aide.db.new", work / "aide.db")
        t, rss, _ = timed([aide, f"--config={aide_conf}", "--check"], ok=FINDINGS)
        rows.append(("aide --check (sha256, 2 workers)", t, rss))
    else:
        print("  aide is not installed: apt-get install aide")
    for name, secs, rss in rows:
        print(f"  {name:<38} {secs:7.2f} s" + (f"   peak {rss:4d} MB" if rss else ""))
    r = {name: secs for name, secs, _ in rows}
    plain, init, chk = (
        r["plain 2-process sha256 pass"],
        r["nightwarden integrity init"],
        r["nightwarden integrity check"],
    )
    peak = max(rss for name, _, rss in rows if name.startswith("nightwarden"))
    print(
        f"  init / plain pass = {init / plain:.2f} "
        f"(target <= 1.25: {'met' if init <= 1.25 * plain else 'MISSED'})"
    )
    if aide:
        ai, ac = r["aide --init (sha256, 2 workers)"], r["aide --check (sha256, 2 workers)"]
        print(
            f"  aide --init / init = {ai / init:.2f} (target >= 2: {'met' if ai >= 2 * init else 'MISSED'})"
        )
        print(
            f"  aide --check / check = {ac / chk:.2f} (target >= 5: {'met' if ac >= 5 * chk else 'MISSED'})"
        )
    print(f"  peak memory {peak} MB (target < 300 MB: {'met' if peak < 300 else 'MISSED'})")


if __name__ == "__main__":
    main()
