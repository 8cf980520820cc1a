"""The processes job over 5,000 processes of an ordinary user, beside `ps` piped through a
trivial filter (the least any process check does: read every process once).

Targets: one pass under 1 s and 60 MB. The processes are `sleep`s run as nobody (so each is
judged, not skipped as root's), started in one process group, bounded in count and time, and
killed at the end whatever happens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

from common import NW, bench_config, timed

COUNT = 5000
LIFETIME = 300  # seconds: the sleeps end by themselves if this script is killed


def start(count: int) -> subprocess.Popen:
    script = f"for i in $(seq {count}); do sleep {LIFETIME} & done; wait"
    group = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", script],
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pgrep = subprocess.run(["pgrep", "-c", "-u", "65534", "sleep"], capture_output=True, text=True)
        n = int(pgrep.stdout or 0)
        if n >= count:
            return group
        time.sleep(0.2)
    stop(group)
    sys.exit(f"only {n} of {count} processes started in 60 s")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: the processes run as nobody")
    group = start(COUNT)
    try:
        listed = subprocess.run(["ps", "-e", "--no-headers"], capture_output=True, text=True).stdout
        total = listed.count("\n")
        with tempfile.TemporaryDirectory() as tmp:
            cfg = bench_config(tmp, '[mail]\ntransport = "mbox"\n')
            argv = [NW, "--config", str(cfg.files[0]), "processes", "--report-only", "--json", "--no-mail"]
            runs = [timed(argv) for _ in range(3)]
            best = min(runs)
            # the pass alone, in process (the command above includes Python's start-up)
            from nightwarden.jobs.processes.look import look

            t = time.perf_counter()
            seen = look(cfg, set())
            inner = time.perf_counter() - t
            assert seen.count >= COUNT, seen.count
        ps = (
            "ps -eo pid,user,rss,vsz,cputime,args --no-headers"
            " | awk '$3 > 262144 || $5 > \"00:30:00\"' | wc -l"
        )
        t = time.perf_counter()
        for _ in range(3):
            subprocess.run(["bash", "-c", ps], capture_output=True, check=True)
        ps_took = (time.perf_counter() - t) / 3
        ps_time, ps_mb, _ = timed(["bash", "-c", ps])
        print(f"processes: one pass over {total} processes ({COUNT} of nobody)")
        print(f"  {'':34} {'seconds':>8} {'peak MB':>8}")
        print(f"  {'nightwarden processes (command)':34} {best[0]:8.2f} {best[1]:8d}")
        print(f"  {'nightwarden look() in process':34} {inner:8.2f} {'':>8}")
        print(f"  {'ps -eo ... | awk (peer)':34} {ps_took:8.2f} {ps_mb:8d}")
        print(f"  target: under 1 s and 60 MB -> {'met' if best[0] < 1 and best[1] < 60 else 'MISSED'}")
    finally:
        stop(group)


def stop(group: subprocess.Popen) -> None:
    """Every process started here gone (its session, then any sleep of nobody's), checked."""
    os.killpg(group.pid, signal.SIGKILL)
    group.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        subprocess.run(["pkill", "-KILL", "-s", str(group.pid)], check=False)
        subprocess.run(["pkill", "-KILL", "-u", "65534", "-x", "sleep"], check=False)
        left = subprocess.run(["pgrep", "-u", "65534", "-x", "sleep"], capture_output=True, text=True).stdout
        if not left.strip():
            return
        time.sleep(0.2)
    print(f"warning: {len(left.split())} sleep processes of nobody are left", file=sys.stderr)


if __name__ == "__main__":
    main()
