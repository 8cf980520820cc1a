"""The listener beside Debian's portsentry 1.2, in the same kind of private namespace and the
same modes (connect: -tcp; advanced: -atcp). Run as root: make bench. Attackers are 127.x.

Printed for both tools: first probe to block in place (p50, p99 over 25 scans), ports answered
before the block in a sequential scan (the median of five scanners), CPU per probe, sources
detected out of a 1,000-source burst, time to block 1,000 and 10,000 distinct sources, time to
restore 1,000 blocks after a restart, peak memory, and the connect rate through the resulting
firewall state.
PortSentry runs with its config bound over /etc/portsentry/portsentry.conf in a private mount
namespace (the host's file is never touched) and blocks with `iptables -I INPUT ... -j DROP`.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from nightwarden.lib.firewall import libnft

sys.path.insert(0, str(Path(__file__).parent))
from common import NW, need_peer, private_namespace  # noqa: E402

# the listener's default bait ports, given to PortSentry too: both watch the same ports
from nightwarden.jobs.listener.settings import ListenerSettings  # noqa: E402

TCP_PORTS = ListenerSettings().tcp_ports
UDP_PORTS = ListenerSettings().udp_ports
WAIT_CAP = 60.0
ADVANCED_PORTS = [p for p in range(1, 1001) if p not in (113, 139)]  # both tools exclude 113, 139


def addr(i: int, base: int = 20) -> str:
    return f"127.{base + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}"


# -- probes -------------------------------------------------------------------------------
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def syn(src: str, port: int, raw: socket.socket) -> None:
    sport = random.randrange(20000, 60000)
    header = struct.pack("!HHIIBBHHH", sport, port, random.getrandbits(32), 0, 5 << 4, 0x02, 1024, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!BBH", 0, 6, 20)
    header = header[:16] + struct.pack("!H", _checksum(pseudo + header)) + header[18:]
    packet = (
        struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton("127.0.0.1")
        )
        + header
    )
    raw.sendto(packet, ("127.0.0.1", 0))


def probe(src: str, mode: str, raw: socket.socket, port: int = 1, keep: list | None = None) -> None:
    """One probe: a raw SYN (advanced), or a TCP connect left open until `keep` is closed, as a
    real scanner's connect completes its handshake."""
    if mode == "advanced":
        syn(src, port, raw)
        return
    s = socket.socket()
    s.setblocking(False)
    s.bind((src, 0))
    s.connect_ex(("127.0.0.1", port))
    if keep is None:
        time.sleep(0.001)
        s.close()
    else:
        keep.append(s)


# -- the two tools ----------------------------------------------------------------------------
class Nightwarden:
    name = "nightwarden"

    def __init__(self, tmp: Path, mode: str):
        self.tmp, self.mode = tmp, mode
        self.cfg = tmp / "nw.toml"
        self.cfg.write_text(
            f'[general]\nstate_dir = "{tmp}/state"\nlog_dir = "{tmp}/log"\nrun_dir = "{tmp}/run"\n'
            f'report_dir = "{tmp}/reports"\nsyslog = false\n[lists]\nallow_file = "{tmp}/a"\n'
            f'deny_file = "{tmp}/d"\nignore_file = "{tmp}/i"\nextra_allow_files = []\n'
            f'extra_deny_files = []\nextra_ignore_files = []\n[firewall]\nbackend = "nftables"\n'
            f'protect_loopback = false\nname = "nwbench"\n[blocks]\nperm_block_count = 0\n'
            f'temp_limit = 100000\n[listener]\nmode = "{mode}"\nbind4 = "127.0.0.1"\nipv6 = false\n'
            f'log_lines_per_second = 5\n[mail]\ntransport = "none"\n'
            '[logins]\nfollow = "cron"\n'
        )
        self.proc = None

    def start(self) -> float:
        sock_path = str(self.tmp / "notify.sock")
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(sock_path)
        notify.settimeout(30)
        start = time.perf_counter()
        env = {**os.environ, "NOTIFY_SOCKET": sock_path}
        self.proc = subprocess.Popen([NW, "--config", str(self.cfg), "-q", "listen", "--no-mail"], env=env)
        notify.recv(100)
        notify.close()
        return time.perf_counter() - start

    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)

    def blocked(self) -> set[str]:
        rc, out, _ = libnft.run_script("list set inet nwbench temp4", json_output=True)
        if rc:
            return set()
        for item in json.loads(out)["nftables"]:
            if "set" in item:
                return {e["elem"]["val"] if isinstance(e, dict) else e for e in item["set"].get("elem", [])}
        return set()

    def lose_kernel_state(self) -> None:
        libnft.run_script("delete table inet nwbench")

    def detected(self) -> int:
        import sqlite3

        db = sqlite3.connect(self.tmp / "state" / "state.db")
        return db.execute("SELECT COUNT(DISTINCT address) FROM events WHERE kind = 'scan'").fetchone()[0]


class PortSentry:
    name = "portsentry 1.2"

    def __init__(self, tmp: Path, mode: str):
        self.tmp, self.mode = tmp, mode
        (tmp / "ignore").write_text("")
        self.history = tmp / "portsentry.history"
        self.conf = tmp / "portsentry.conf"
        self.conf.write_text(
            f'TCP_PORTS="{",".join(map(str, TCP_PORTS))}"\nUDP_PORTS="{",".join(map(str, UDP_PORTS))}"\n'
            f'ADVANCED_PORTS_TCP="1024"\nADVANCED_PORTS_UDP="1024"\nADVANCED_EXCLUDE_TCP="113,139"\n'
            f'ADVANCED_EXCLUDE_UDP="520,138,137,67"\nIGNORE_FILE="{tmp}/ignore"\n'
            f'HISTORY_FILE="{self.history}"\nBLOCKED_FILE="{tmp}/portsentry.blocked"\n'
            f'RESOLVE_HOST="0"\nBLOCK_UDP="1"\nBLOCK_TCP="1"\n'
            f'KILL_ROUTE="/usr/sbin/iptables -I INPUT -s $TARGET$ -j DROP"\nSCAN_TRIGGER="0"\n'
        )
        self._pid = None

    def start(self) -> float:
        start = time.perf_counter()
        flag = "-tcp" if self.mode == "connect" else "-atcp"
        subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mount --bind {self.conf} /etc/portsentry/portsentry.conf && exec portsentry {flag}",
            ],
            check=True,
            capture_output=True,
        )
        for _ in range(100):
            out = subprocess.run(["pgrep", "-n", "-x", "portsentry"], capture_output=True, text=True)
            if out.stdout.strip():
                self._pid = int(out.stdout.split()[0])
                break
            time.sleep(0.05)
        time.sleep(0.5)  # it binds its ports after forking
        return time.perf_counter() - start

    def pid(self) -> int:
        return self._pid

    def stop(self) -> None:
        if self._pid:
            os.kill(self._pid, signal.SIGKILL)
            time.sleep(0.2)

    def blocked(self) -> set[str]:
        rc, out, _ = libnft.run_script("list chain ip filter INPUT")
        if rc:
            return set()
        return {line.split("ip saddr ")[1].split()[0] for line in out.splitlines() if "ip saddr " in line}

    def lose_kernel_state(self) -> None:
        subprocess.run(["iptables", "-F", "INPUT"], capture_output=True)

    def detected(self) -> int:
        if not self.history.exists():
            return 0
        return len(
            {
                line.split("Host: ")[1].split("/")[0]
                for line in self.history.read_text().splitlines()
                if "Host: " in line
            }
        )


# -- measurements ---------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """The process's CPU and its waited-for children's (portsentry's iptables runs)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_count(tool, sources: set[str], since: float, cap: float = WAIT_CAP) -> tuple[float, int]:
    """Seconds from `since` until every source is blocked (or blocking stalls for 5 s, or the
    cap), and how many were blocked."""
    last, last_change = -1, time.perf_counter()
    while True:
        count = len(tool.blocked() & sources)
        now = time.perf_counter()
        if count != last:
            last, last_change = count, now
        if count >= len(sources) or now - since > cap or now - last_change > 5:
            return (last_change if count < len(sources) else now) - since, count
        time.sleep(0.05)


def latency(tool, mode: str, raw) -> list[float]:
    times = []
    for i in range(25):
        src = addr(i, base=30)
        keep: list = []
        start = time.perf_counter()
        probe(src, mode, raw, keep=keep)
        while src not in tool.blocked():
            if time.perf_counter() - start > 2:
                break
        times.append((time.perf_counter() - start) * 1000)
        for s in keep:
            s.close()
        time.sleep(0.05)
    return times


def answered_before_block(mode: str, scans: int = 5) -> list[int]:
    """Ports answered before the block in a sequential connect scan, for `scans` scanners one
    after another (one scan's figure mostly says how soon the machine woke the tool up)."""
    out = []
    for i in range(scans):
        out.append(_answered(f"127.40.0.{i + 1}"))
        time.sleep(0.2)
    return out


def _answered(src: str) -> int:
    answered = 0
    for port in range(1, 1024):
        s = socket.socket()
        s.settimeout(0.3)
        s.bind((src, 0))
        try:
            s.connect(("127.0.0.1", port))
            answered += 1
        except ConnectionRefusedError:
            answered += 1
        except (TimeoutError, OSError):
            return answered
        finally:
            s.close()
    return answered


def softnet_dropped() -> int:
    """Packets the kernel dropped from its per-CPU input queues (net.core.netdev_max_backlog)
    before any socket saw them: a loss no listener can see, counted to tell it apart."""
    total = 0
    for line in Path("/proc/net/softnet_stat").read_text().splitlines():
        total += int(line.split()[1], 16)
    return total


def burst(n: int, mode: str, raw, base: int) -> tuple[float, float, set[str]]:
    """(start, seconds to send, sources) of a burst of n distinct sources."""
    keep: list = []
    sources = {addr(i, base) for i in range(n)}
    start = time.perf_counter()
    for i in range(n):
        probe(
            addr(i, base),
            mode,
            raw,
            TCP_PORTS[i % len(TCP_PORTS)] if mode == "connect" else ADVANCED_PORTS[i % len(ADVANCED_PORTS)],
            keep,
        )
    sent = time.perf_counter() - start
    time.sleep(0.5)
    for s in keep:
        s.close()
    return start, sent, sources


RATE_PORT = 8088  # not a bait port of either tool


def connect_rate(seconds: float = 1.0) -> float:
    """Connections a second from 127.0.0.1 (never blocked) to a server on 127.0.0.1."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", RATE_PORT))
    server.listen(4096)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        c = socket.socket()
        c.connect(("127.0.0.1", port))
        c.close()
        count += 1
    stop.set()
    t.join()
    server.close()
    return count / seconds


def rates_with_and_without(rounds: int = 4) -> tuple[float, float]:
    """Median connect rate through the current ruleset and through none, measured in turns
    (the ruleset is saved, flushed and put back: this namespace's own), so drift cancels."""
    rc, ruleset, _ = libnft.run_script("list ruleset")
    with_rules, without = [], []
    for _ in range(rounds):
        with_rules.append(connect_rate())
        libnft.run_script("flush ruleset")
        without.append(connect_rate())
        libnft.run_script(ruleset)
    return statistics.median(with_rules), statistics.median(without)


def run_tool(cls, mode: str) -> dict:
    with private_namespace():
        return _run_tool(cls, mode)


def _run_tool(cls, mode: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="nw-bench-listen-"))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tool = cls(tmp, mode)
    r: dict = {}
    try:
        tool.start()
        lat = latency(tool, mode, raw)
        r["p50"], r["p99"] = statistics.median(lat), sorted(lat)[int(len(lat) * 0.99) - 1]
        scans = answered_before_block(mode)
        r["answered"] = statistics.median(scans)
        r["answered_each"] = " ".join(map(str, scans))
        time.sleep(1.0)
        cpu0 = cpu_seconds(tool.pid())
        dropped = softnet_dropped()
        since, sent, sources = burst(1000, mode, raw, base=50)
        r["burst_ms"] = sent * 1000
        r["t1000"], r["blocked_1000"] = wait_count(tool, sources, since)
        r["kernel_dropped_1000"] = softnet_dropped() - dropped
        time.sleep(1.0)
        r["detected"] = tool.detected() - 25 - 5  # the latency and sequential scans' sources
        r["cpu_per_probe_us"] = (cpu_seconds(tool.pid()) - cpu0) / 1000 * 1e6
        if cls is Nightwarden:
            tool.stop()
            tool.lose_kernel_state()  # a reboot
            start = time.perf_counter()
            tool.start()
            r["restore"] = time.perf_counter() - start
            r["restored"] = len(tool.blocked() & sources)
        dropped = softnet_dropped()
        since, sent, sources = burst(10_000, mode, raw, base=80)
        r["burst10k_s"] = sent
        took, r["blocked_10000"] = wait_count(tool, sources, since)
        r["kernel_dropped_10000"] = softnet_dropped() - dropped
        r["t10000"] = took
        r["after_last_probe"] = took - sent
        r["peak_mb"] = peak_mb(tool.pid())
        tool.stop()
        time.sleep(0.5)
        r["rate_blocked"], r["rate_empty"] = rates_with_and_without()
    finally:
        try:
            tool.stop()
        except Exception:
            pass
        raw.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return r


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/listener.py needs root (private network namespaces, raw sockets)")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need_peer("portsentry")
    for mode in ("connect", "advanced"):
        results = {"nightwarden": run_tool(Nightwarden, mode), "portsentry": run_tool(PortSentry, mode)}
        print(f"\nListener, {mode} mode (portsentry {'-tcp' if mode == 'connect' else '-atcp'})")
        rows = [
            ("first probe to block, p50 (ms)", "p50", "{:.2f}"),
            ("first probe to block, p99 (ms)", "p99", "{:.2f}"),
            ("ports answered before the block (median of 5 scans)", "answered", "{:g}"),
            ("  each scan", "answered_each", "{}"),
            ("CPU per probe (us)", "cpu_per_probe_us", "{:.0f}"),
            ("burst of 1,000 sources sent in (ms)", "burst_ms", "{:.0f}"),
            ("sources detected of the 1,000", "detected", "{}"),
            ("  packets the kernel dropped before any socket", "kernel_dropped_1000", "{}"),
            ("blocked of the 1,000", "blocked_1000", "{}"),
            ("time to block 1,000 (s)", "t1000", "{:.2f}"),
            ("10,000 more sources sent in (s)", "burst10k_s", "{:.2f}"),
            ("blocked of the 10,000", "blocked_10000", "{}"),
            ("  packets the kernel dropped before any socket", "kernel_dropped_10000", "{}"),
            ("time to block 10,000 (s)", "t10000", "{:.2f}"),
            ("  of which after the last probe (s)", "after_last_probe", "{:.2f}"),
            ("restore 1,000 blocks after a restart (s)", "restore", "{:.2f}"),
            ("blocks restored of the 1,000", "restored", "{}"),
            ("peak memory (MB)", "peak_mb", "{:.0f}"),
            ("connect rate, empty firewall (/s)", "rate_empty", "{:.0f}"),
            ("connect rate with the blocks, tool stopped (/s)", "rate_blocked", "{:.0f}"),
        ]
        print(f"  {'':<52} {'nightwarden':>16} {'portsentry':>16}")
        for label, key, fmt in rows:
            cells = [
                fmt.format(results[t][key]) if key in results.get(t, {}) else "n/a"
                for t in ("nightwarden", "portsentry")
            ]
            print(f"  {label:<52} {cells[0]:>16} {cells[1]:>16}")
        nw = results["nightwarden"]
        ps = results.get("portsentry")
        checks = [
            ("p50 < 2 ms", nw["p50"] < 2),
            ("p99 < 10 ms", nw["p99"] < 10),
            ("1,000 of 1,000 burst sources detected", nw["detected"] >= 1000),
            (
                "10,000 sources blocked within 2 s of the last probe",
                nw["blocked_10000"] >= 10000 and nw["after_last_probe"] < 2,
            ),
            ("restore of 1,000 blocks under 1 s", nw.get("restore", 99) < 1),
            ("connect rate within 5 % of empty", nw["rate_blocked"] >= 0.95 * nw["rate_empty"]),
        ]
        if ps:
            checks.append(
                ("at most a quarter of PortSentry's answered ports", nw["answered"] <= ps["answered"] / 4)
            )
        for label, ok in checks:
            print(f"  target {label}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
