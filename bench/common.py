"""What the benchmarks share: private network namespaces, a configuration in a temp dir, and
timing a command with its peak memory."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
NW = str(Path(sys.executable).parent / "nightwarden")


@contextmanager
def private_namespace():
    """Run the block in a fresh network namespace (loopback only), then come back: whatever
    it does to the firewall dies with the namespace, never touching the host's."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    before = os.fstat(original).st_ino
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            sys.exit(f"cannot create a network namespace: {os.strerror(ctypes.get_errno())}")
        assert os.stat("/proc/thread-self/ns/net").st_ino != before
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        yield
    finally:
        libc.setns(original, CLONE_NEWNET)
        os.close(original)


def need_peer(*commands: str) -> None:
    """Every peer runs beside ours: a missing one stops the benchmark (make bench-debs)."""
    import shutil

    for cmd in commands:
        if shutil.which(cmd, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            sys.exit(f"{cmd} is missing: `make bench-debs` installs the benchmarks' peers")


def bench_config(tmp: str, extra: str = ""):
    """A configuration with every path in tmp and the table/chain/sets named nwbench."""
    from nightwarden.jobs import load_config

    path = Path(tmp) / "nw.toml"
    path.write_text(
        f'[general]\nstate_dir = "{tmp}/s"\nrun_dir = "{tmp}/r"\nlog_dir = "{tmp}/l"\n'
        f"[lists]\nextra_allow_files = []\nextra_deny_files = []\n"
        f'extra_ignore_files = []\nallow_file = "{tmp}/a"\ndeny_file = "{tmp}/d"\n'
        f'ignore_file = "{tmp}/i"\n[firewall]\nname = "nwbench"\n' + extra
    )
    return load_config(str(path))


# runs a command and prints the peak memory of its largest process on stderr's first line
RSS = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.stderr.write(r.stderr.decode(errors='replace')[-2000:])\n"
    "sys.exit(r.returncode)"
)


def timed(cmd: list[str], env: dict | None = None, ok: tuple = (0,)) -> tuple[float, int, int]:
    """(seconds, peak MB, exit code) of a command; another exit code ends the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RSS, *cmd], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    took = time.perf_counter() - start
    lines = done.stderr.splitlines()
    rss_kb = int(lines[0]) if lines and lines[0].isdigit() else 0
    if done.returncode not in ok:
        sys.exit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-800:]}")
    return took, rss_kb // 1024, done.returncode


class Monitor:
    """When each address first entered a kernel set, from `nft monitor` (netlink events as
    they are committed), in this network namespace or in a named one (`ip netns`). Asking
    the kernel instead (`get element`) takes up to 150 ms while a thousand blocks a second
    are being added: a delay of the asking, not of the blocking. `clock`: perf_counter, or
    time.time to compare with times other processes wrote."""

    def __init__(
        self, ns: str | None = None, clock=time.perf_counter, pattern: str = r"\b127\.\d+\.\d+\.\d+\b"
    ):
        import re
        import threading

        self.seen: dict[str, float] = {}
        argv = ["nft", "monitor", "new", "elements"]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv] if ns else argv, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        address = re.compile(pattern)

        def read() -> None:
            for line in self.proc.stdout:
                now = clock()
                for a in address.findall(line):
                    self.seen.setdefault(a, now)

        threading.Thread(target=read, daemon=True).start()
        time.sleep(0.3)

    def blocked(self, addr: str) -> bool:
        return addr in self.seen

    def wait(self, addr: str, start: float, give_up: float = 10.0) -> float:
        """ms from start (perf_counter) until addr was seen (give_up if it was not)."""
        while addr not in self.seen and time.perf_counter() - start < give_up:
            time.sleep(0.0002)
        return (self.seen.get(addr, start + give_up) - start) * 1000

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
