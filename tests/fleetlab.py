"""A fleet on one machine for the tests and the benchmark: a real nats-server (JetStream, the
users `fleet init` made) and the authority in one network namespace, and each host in a
namespace of its own (its own state, configuration, listener and nftables), joined to the
broker's namespace by a veth pair on a bridge. Nothing touches the machine's own network."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import write_config

NIGHTWARDEN = str(Path(sys.executable).parent / "nightwarden")
SUBNET = "10.77.0"


PUBLISHER = r"""
import asyncio, json, sys, time, tomllib
import nats
sys.path.insert(0, sys.argv[1])
from fleetlab import addresses

async def main():
    creds = tomllib.loads(open(sys.argv[2]).read())
    user = creds["user"]
    kind, trusted, gap = sys.argv[3], sys.argv[4] == "1", float(sys.argv[5])
    targets = addresses(sys.argv[6], int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9]))
    nc = await nats.connect(f"nats://{sys.argv[10]}:4222", user=user, password=creds["password"],
                            inbox_prefix=f"_INBOX_{user}")
    js = nc.jetstream()
    body = lambda a: json.dumps({"address": a, "trusted": trusted, "count": 1}).encode()
    sent = {}
    if gap:
        for a in targets:
            sent[a] = time.time()
            await js.publish(f"nw.evt.{user}.e.{kind}", body(a))
            await asyncio.sleep(gap)
    subject = f"nw.evt.{user}.e.{kind}"
    for start in range(0, 0 if gap else len(targets), 5000):
        await asyncio.gather(*(js.publish(subject, body(a)) for a in targets[start:start + 5000]))
    await nc.close()
    print(json.dumps(sent))

asyncio.run(main())
"""


def addresses(prefix: str, count: int, first: int = 1, modulo: int = 0) -> list[str]:
    """Test attackers: prefix "127.4.0" gives 127.4.0.<n>, "127.5" 127.5.<n/256>.<n%256>,
    "100" 100.<n/65536>.<..>.<..>, for n from `first` (taken modulo `modulo` when given)."""
    out = []
    for i in range(first, first + count):
        n = i % modulo + 1 if modulo else i
        octets = [n >> 16 & 255, n >> 8 & 255, n & 255][prefix.count(".") :]
        out.append(".".join([prefix, *map(str, octets)]))
    return out


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTWARDEN_")}
    env.update(extra)
    return env


class Notified:
    """A resident process started under `ip netns exec`, awaited for its READY=1."""

    def __init__(self, base: Path, ns: str, argv: list[str], name: str):
        self.ns, self.argv, self.name = ns, argv, name
        self.path = str(base / f"notify-{name}.sock")
        self.proc = None
        self.log = base / f"{name}.out"

    def start(self, timeout: float = 20) -> Notified:
        if os.path.exists(self.path):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.path)
        sock.settimeout(timeout)
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *self.argv],
            env=_env(NOTIFY_SOCKET=self.path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            while not sock.recv(4096).startswith(b"READY=1"):
                pass
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no READY=1 in {timeout} s: {self.log.read_text()[-2000:]}"
            ) from None
        finally:
            sock.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class FleetLab:
    def __init__(
        self, base: Path, hosts: int = 3, authority: str = "", host_extra: str = "", simulated: int = 0
    ):
        self.base = base
        self.simulated = [f"sim{i}" for i in range(1, simulated + 1)]  # users only: no namespace
        self.tag = f"nw{os.getpid() % 100000}"
        self.broker_ns = f"{self.tag}b"
        self.hosts = [f"web{i}" for i in range(1, hosts + 1)]
        self.ns = {h: f"{self.tag}h{i}" for i, h in enumerate(self.hosts, 1)}
        self.authority_extra = authority
        self.host_extra = host_extra
        self.fleet = base / "fleet"
        self.bait = 2222
        self.nats = None
        self.authorities: dict[str, Notified] = {}
        self.listeners: dict[str, Notified] = {}
        self.configs: dict[str, Path] = {}

    # -- the network ----------------------------------------------------------------------
    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def start(self) -> FleetLab:
        b = self.broker_ns
        self.ip("netns", "add", b)
        self.ip("-n", b, "link", "set", "lo", "up")
        self.ip("-n", b, "link", "add", "br0", "type", "bridge")
        self.ip("-n", b, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
        self.ip("-n", b, "link", "set", "br0", "up")
        for i, h in enumerate(self.hosts, 1):
            ns = self.ns[h]
            self.ip("netns", "add", ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
            self.ip("-n", b, "link", "add", f"vb{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.ip("-n", b, "link", "set", f"vb{i}", "master", "br0", "up")
            self.ip("-n", ns, "addr", "add", f"{SUBNET}.{10 + i}/24", "dev", "eth0")
            self.ip("-n", ns, "link", "set", "eth0", "up")
        self.init()
        self.start_broker()
        self.start_authority("a1")
        for h in self.hosts:
            self.start_host(h)
        return self

    def stop(self) -> None:
        for p in [*self.listeners.values(), *self.authorities.values()]:
            p.stop()
        self.stop_broker()
        for ns in [self.broker_ns, *self.ns.values()]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    # -- the fleet --------------------------------------------------------------------------
    def cli(self, who: str, *args: str, check: int | None = 0, timeout: float = 60):
        ns = self.ns.get(who, self.broker_ns)
        done = subprocess.run(
            ["ip", "netns", "exec", ns, NIGHTWARDEN, "--config", str(self.configs[who]), *args],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=timeout,
        )
        if check is not None:
            assert done.returncode == check, (args, done.returncode, done.stdout, done.stderr)
        return done

    def _config(self, who: str, extra: str) -> Path:
        d = self.base / who
        d.mkdir(parents=True, exist_ok=True)
        cfg = write_config(
            d,
            f'backend = "nftables"\n\n[listener]\ntcp_ports = [{self.bait}]\nudp_ports = []\n'
            f'bind4 = "127.0.0.1"\nipv6 = false\n\n[logins]\nfollow = "cron"\njournal = "no"\nsources = []\n'
            + extra,
        )
        self.configs[who] = cfg
        subprocess.run(
            [
                NIGHTWARDEN,
                "--config",
                str(cfg),
                "fleet",
                "join",
                str(self.fleet / f"{who}.toml"),
                str(self.fleet / f"{who}.creds"),
                "--no-check",
            ],
            check=True,
            capture_output=True,
            env=_env(),
        )
        return cfg

    def init(self) -> None:
        subprocess.run(
            [
                NIGHTWARDEN,
                "--sandbox",
                str(self.base / "admin"),
                "fleet",
                "init",
                str(self.fleet),
                "--hosts",
                *self.hosts,
                *self.simulated,
                "--server",
                f"nats://{SUBNET}.1:4222",
                "--listen",
                "0.0.0.0:4222",
                "--group",
                f"{self.hosts[0]}=front",
                "--group",
                f"{self.hosts[1]}=front",
            ],
            check=True,
            capture_output=True,
            env=_env(),
        )
        auth = self._config("authority", "\n[fleet]\n" + self.authority_extra)
        shutil.copy(self.fleet / "fleet.key", auth.parent / "fleet" / "fleet.key")
        os.chmod(auth.parent / "fleet" / "fleet.key", 0o600)
        op = self._config("operator", "")
        shutil.copy(self.fleet / "operator.key", op.parent / "fleet" / "operator.key")
        os.chmod(op.parent / "fleet" / "operator.key", 0o600)
        for h in self.hosts:
            self._config(h, "\n[fleet]\nheartbeat = 1\n" + self.host_extra)

    def start_broker(self) -> None:
        out = open(self.base / "nats.out", "a")
        self.nats = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.broker_ns,
                "nats-server",
                "-c",
                str(self.fleet / "nats-server.conf"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.broker_ns,
                    sys.executable,
                    "-c",
                    "import socket; socket.create_connection(('127.0.0.1', 4222), 0.2).close()",
                ],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("nats-server did not start: " + (self.base / "nats.out").read_text()[-2000:])

    def stop_broker(self) -> None:
        if self.nats is not None and self.nats.poll() is None:
            self.nats.send_signal(signal.SIGTERM)
            self.nats.wait(15)
        self.nats = None

    def start_authority(self, name: str) -> Notified:
        p = Notified(
            self.base,
            self.broker_ns,
            [NIGHTWARDEN, "--config", str(self.configs["authority"]), "fleet", "authority", "--name", name],
            name,
        )
        self.authorities[name] = p.start()
        return p

    def start_host(self, host: str, *args: str) -> Notified:
        p = Notified(
            self.base,
            self.ns[host],
            [NIGHTWARDEN, "--config", str(self.configs[host]), "listen", "--no-mail", *args],
            host,
        )
        self.listeners[host] = p.start()
        return p

    # -- looking ------------------------------------------------------------------------------
    def kernel(self, host: str, sets=("temp4", "perm4", "tempnet4", "permnet4")) -> set[str]:
        found = set()
        for name in sets:
            out = subprocess.run(
                ["ip", "netns", "exec", self.ns[host], "nft", "-j", "list", "set", "inet", "nwtest", name],
                capture_output=True,
                text=True,
            )
            if out.returncode:
                continue
            for e in json.loads(out.stdout)["nftables"][1]["set"].get("elem", []):
                val = e["elem"]["val"] if isinstance(e, dict) else e
                found.add(val if isinstance(val, str) else f"{val['prefix']['addr']}/{val['prefix']['len']}")
        return found

    def scan(self, host: str, source: str) -> None:
        """A completed TCP handshake from `source` to the host's bait port (in its namespace)."""
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns[host],
                sys.executable,
                "-c",
                "import socket,sys\ns=socket.socket(); s.settimeout(2); s.bind((sys.argv[1],0))\n"
                "try: s.connect(('127.0.0.1', int(sys.argv[2])))\nexcept OSError: pass\ns.close()",
                source,
                str(self.bait),
            ],
            check=True,
        )

    def python_in(self, who: str, code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Python (nats-py at hand) in a host's or the broker's namespace."""
        ns = self.ns.get(who, self.broker_ns)
        return subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def publish(
        self,
        who: str,
        prefix: str,
        count: int,
        kind: str = "scan",
        trusted: bool = True,
        gap: float = 0,
        first: int = 1,
        modulo: int = 0,
    ) -> dict[str, float]:
        """Evidence from a host's broker user, as its listener would send it (or a liar would):
        `count` addresses (see addresses()), all at once or `gap` seconds apart; returns when
        each was sent (with a gap)."""
        creds = str(self.configs[who].parent / "fleet" / f"{who}.creds")
        args = (
            str(Path(__file__).parent),
            creds,
            kind,
            "1" if trusted else "0",
            str(gap),
            prefix,
            str(count),
            str(first),
            str(modulo),
            f"{SUBNET}.1",
        )
        done = self.python_in(who, PUBLISHER, *args, timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout or "{}")

    def decisions(self) -> list[dict]:
        return json.loads(self.cli("operator", "fleet", "decisions", "--json").stdout)


def wait_until(check, seconds: float = 5.0, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return check()
