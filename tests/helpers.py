"""Helpers for the tests: configs in temp dirs, the CLI, loopback servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
NIGHTWARDEN = str(Path(sys.executable).parent / "nightwarden")


def need(*commands: str) -> None:
    for cmd in commands:
        if shutil.which(cmd, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            pytest.skip(f"{cmd} is not installed (make test installs it as root)")


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """A config whose every path is under tmp_path; loopback may be blocked (test attackers)."""
    path = tmp_path / "etc" / "nightwarden.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""
[general]
state_dir = "{tmp_path}/state"
log_dir = "{tmp_path}/log"
report_dir = "{tmp_path}/reports"
run_dir = "{tmp_path}/run"
syslog = false

[lists]
allow_file = "{tmp_path}/etc/allow"
deny_file = "{tmp_path}/etc/deny"
ignore_file = "{tmp_path}/etc/ignore"
extra_allow_files = []
extra_deny_files = []
extra_ignore_files = []

[firewall]
protect_loopback = false
name = "nwtest"
"""
        + extra
    )
    return path


def listener_config(tmp_path: Path, extra: str = "", backend: str = "nftables") -> Path:
    """write_config for a listener on one bait port of 127.0.0.1 (IPv4 only), plus `extra`."""
    return write_config(
        tmp_path,
        f'backend = "{backend}"\n\n[listener]\ntcp_ports = [1]\nudp_ports = []\n'
        f'bind4 = "127.0.0.1"\nipv6 = false\n' + extra,
    )


def log_config(tmp_path: Path, log: Path, logins: str = "") -> Path:
    """A config whose login-failure job reads one rfc3164 log and no journal, with `logins`
    added to [logins], the dry-run firewall and mail into tmp_path/mbox."""
    return write_config(
        tmp_path,
        f'backend = "dryrun"\n[logins]\nsources = [{{path = "{log}", format = "rfc3164"}}]\n'
        f'journal = "no"\n{logins}\n[mail]\ntransport = "mbox"\nmbox = "{tmp_path}/mbox"\n',
    )


def following_config(tmp_path: Path, logins: str = "", backend: str = "nftables") -> tuple[Path, Path]:
    """(config, log): a listener that follows one empty rfc3164 log under tmp_path/logs, with
    `logins` added to its [logins] section and mail into tmp_path/mbox."""
    log = tmp_path / "logs" / "auth.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("")
    cfg = listener_config(
        tmp_path,
        f'[logins]\nsources = [{{path = "{log}", format = "rfc3164"}}]\njournal = "no"\n{logins}\n'
        f'[mail]\ntransport = "mbox"\nmbox = "{tmp_path}/mbox"\n',
        backend,
    )
    return cfg, log


def stamp(t: float) -> str:
    """A syslog (RFC 3164) time stamp, as a daemon writes it into its log."""
    import time

    lt = time.localtime(t)
    return time.strftime("%b ", lt) + f"{lt.tm_mday:2d} " + time.strftime("%H:%M:%S", lt)


def append(path: Path, text: str) -> None:
    """Add lines to a log the way a daemon does (append, never rewrite)."""
    with open(path, "a") as f:
        f.write(text)


def journal_stub(tmp_path: Path, entries: list[dict]) -> Path:
    """A journalctl stand-in that prints these entries as `journalctl -o json` does (no
    journald runs on the test machines)."""
    import json

    data = tmp_path / "journal.json"
    data.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    script = tmp_path / "journalctl"
    script.write_text(f"#!/bin/sh\nexec cat {data}\n")
    script.chmod(0o755)
    return script


def load_config(path: Path):
    from nightwarden.jobs import load_config

    return load_config(str(path))


def run_cli(*args: str, env: dict | None = None, check: int | None = None, timeout: float = 60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTWARDEN_")}
    full_env.update(env or {})
    done = subprocess.run([NIGHTWARDEN, *args], capture_output=True, text=True, env=full_env, timeout=timeout)
    if check is not None:
        assert done.returncode == check, (done.returncode, done.stdout, done.stderr)
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A TCP server on loopback that accepts and closes, for connection tests."""

    def __init__(self, family=socket.AF_INET, host="127.0.0.1"):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.family = family

    def close(self):
        self.sock.close()


def connects(server: Server, source: str, timeout: float = 0.6) -> bool:
    """True if a TCP connection from `source` (a local address) to the server completes."""
    with socket.socket(server.family, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.bind((source, 0))
        try:
            c.connect((server.host, server.port))
        except TimeoutError:
            return False
        conn, _ = server.sock.accept()
        conn.close()
        return True


def real_backend(name: str):
    """A real firewall backend on the test table `nwtest` (inside the test's namespace)."""
    if name == "nftables":
        need("nft")
        from nightwarden.lib.firewall.nftables import NftablesBackend

        return NftablesBackend(prefix="nwtest")
    if name == "ipset":
        need("ipset", "iptables", "ip6tables")
        from nightwarden.lib.firewall.ipset import IpsetBackend

        return IpsetBackend(prefix="nwtest")
    need("iptables-legacy")
    from nightwarden.lib.firewall.iptc import IptcBackend

    return IptcBackend(prefix="nwtest")


class ListenerProcess:
    """`nightwarden listen` as systemd runs it: Type=notify (READY=1 awaited), then SIGHUP,
    SIGTERM, or SIGKILL for a crash."""

    def __init__(self, cfg: Path, tmp_path: Path):
        import signal as _signal

        self.signal = _signal
        self.cfg = cfg
        self.tmp = tmp_path
        self.notify_path = str(tmp_path / f"notify-{id(self)}.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(10)
        self.proc = None

    def start(self, *args: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTWARDEN_")}
        env["NOTIFY_SOCKET"] = self.notify_path
        self.proc = subprocess.Popen(
            [NIGHTWARDEN, "--config", str(self.cfg), "listen", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.notify.recv(4096).startswith(b"READY=1"), "no READY=1 from the listener"
        return self

    def stop(self) -> float:
        import time

        start = time.monotonic()
        self.proc.send_signal(self.signal.SIGTERM)
        self.proc.wait(timeout=10)
        return time.monotonic() - start

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def log(self) -> str:
        path = self.tmp / "log" / "nightwarden.log"
        return path.read_text() if path.exists() else ""


def nft_set(name: str = "temp4", table: str = "nwtest") -> set[str]:
    """The addresses in one of our kernel sets (the test namespace's)."""
    import json

    out = subprocess.run(["nft", "-j", "list", "set", "inet", table, name], capture_output=True, text=True)
    if out.returncode:
        return set()
    elems = json.loads(out.stdout)["nftables"][1]["set"].get("elem", [])
    return {e["elem"]["val"] if isinstance(e, dict) else e for e in elems}


def wait_for(check, seconds: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


class NatsServer:
    """A real nats-server on loopback from a configuration file, until stop() (or the end of
    a with block)."""

    def __init__(self, conf: Path, port: int):
        import time

        need("nats-server")
        self.proc = subprocess.Popen(
            [shutil.which("nats-server"), "-c", str(conf)], stderr=subprocess.DEVNULL
        )
        self.url = f"nats://127.0.0.1:{port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("nats-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
