"""One pass over the running processes (procfs: reading /proc only) and the kernel's socket
tables: what is suspicious about each process, who uses too much, how many each user runs,
which ports listen that nobody expected, which interpreters talk to a watched port.

A process that vanishes while it is looked at is skipped; so is one whose details cannot be
read. Everything a process says of itself (argv) is taken as its word only: the executable
comes from /proc/PID/exe."""

from __future__ import annotations

import fnmatch
import functools
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from nightwarden.lib import netstat
from nightwarden.lib.cli.output import printable

from . import procfs
from .checks import Finding, Proc, examine

PER_USER_KEPT = 100  # processes listed per user in the process-count alert


@dataclass
class Look:
    findings: dict[int, Finding] = field(default_factory=dict)  # pid -> what is wrong with it
    alive: set = field(default_factory=set)  # (pid, start) of every process seen
    errors: list[str] = field(default_factory=list)  # the ignore lists' bad lines
    heavy: list[dict] = field(default_factory=list)  # over a resource limit
    per_user: dict = field(default_factory=dict)  # user -> count, and the first processes
    listening: set = field(default_factory=set)  # (proto, port) listening now
    count: int = 0


def ignore_files(config) -> list[Path]:
    """Our own csf.pignore-format file, then the extra ones (not under a sandbox)."""
    cfg = config.processes
    own = config.configured_path(cfg.ignore_file, config.config_dir / "nightwarden.pignore")
    return config.own_and_extra(own, cfg.extra_ignore_files)


def writable_dirs(config) -> list[str]:
    dirs = list(config.processes.writable_dirs) + list(config.quarantine.dirs)
    return [os.path.realpath(config.sandboxed(d)) for d in dict.fromkeys(dirs)]


def look(config, expected: set | None) -> Look:
    """The pass. expected: the (proto, port) pairs that listened at the first run (None: no
    baseline yet, so no listener is judged this time)."""
    from . import pignore

    cfg = config.processes
    ignore = pignore.load(ignore_files(config))
    writable = writable_dirs(config)
    dirs: dict = {}  # directory -> world-writable, once per pass
    me = os.getpid()
    out = Look(errors=ignore.errors)
    judged: dict[int, Proc] = {}
    for e in procfs.entries():
        key = (e.pid, round(e.started, 2))
        out.alive.add(key)
        out.count += 1
        if e.pid == me or (not cfg.all_users and e.uid == 0):
            continue
        if not e.argv and e.ppid in (0, 2):
            continue  # a kernel thread
        exe, reasons = examine(e.pid, e.argv, cfg, writable, dirs)
        if not exe and not e.argv:
            continue  # a zombie, or gone
        user = _user(e.uid)
        cmdline = " ".join(e.argv)
        if ignore.ignores(user, exe, cmdline):
            continue
        p = Proc(e.pid, key[1], user, e.ppid, exe, cmdline)
        judged[p.pid] = p
        count, listed = out.per_user.get(user, (0, []))
        if len(listed) < PER_USER_KEPT:
            listed.append((p.pid, printable(cmdline[:200])))
        out.per_user[user] = (count + 1, listed)
        out.heavy += _excess(e, key, user, printable(exe), cfg)
        if reasons:
            out.findings[p.pid] = _finding(p, reasons)
    _sockets(cfg, expected, judged, out)
    return out


@functools.lru_cache(maxsize=4096)
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _finding(p: Proc, reasons: list[str]) -> Finding:
    """What is said of a process: its executable and command line as text that cannot start
    a line of its own in a mail (any user chooses both)."""
    return Finding(p.pid, p.started, p.user, p.ppid, printable(p.exe), printable(p.cmdline), reasons)


def _excess(e: procfs.Entry, key: tuple, user: str, exe: str, cfg) -> list[dict]:
    """lfd's resalert: a process over PT_USERMEM, PT_USERRSS or PT_USERTIME."""
    checks = [
        ("virtual memory (MB)", e.vms / 1048576, cfg.user_mem),
        ("resident memory (MB)", e.rss / 1048576, cfg.user_rss),
        ("CPU time (s)", e.cpu, cfg.user_time),
    ]
    return [
        {
            "pid": key[0],
            "started": key[1],
            "user": user,
            "exe": exe,
            "resource": name,
            "value": round(value, 1),
            "limit": limit,
        }
        for name, value, limit in checks
        if limit and value > limit
    ]


def _sockets(cfg, expected: set | None, judged: dict[int, Proc], out: Look) -> None:
    """Listeners nobody expected and interpreters connected to a watched port: reasons
    added to the processes that hold the sockets."""
    listens: dict[int, str] = {}  # socket inode -> why
    calls: dict[int, str] = {}
    if cfg.listen:
        allowed = netstat.PortSet(cfg.listen_allowed)
        for s in netstat.listening():
            out.listening.add((s.proto, s.port))
            if s.uid == 0 and not cfg.all_users:  # made by root's process (inherited or not)
                continue
            if expected is None or (s.proto, s.port) in expected or allowed.has(s.proto, s.port):
                continue
            where = "" if s.local in ("0.0.0.0", "::") else f" on {s.local}"
            listens[s.inode] = (
                f"it listens on {s.proto} port {s.port}{where}, "
                "which is not expected (processes.listen_allowed)"
            )
    if cfg.watch_ports and cfg.interpreters:
        for s in netstat.outbound(netstat.PortSet(cfg.watch_ports)):
            state = "connected" if s.state == netstat.ESTABLISHED else "connecting"
            if s.uid == 0 and not cfg.all_users:
                continue
            calls[s.inode] = f"{state} to {s.remote} port {s.rport} (processes.watch_ports)"
    inodes = (set(listens) | set(calls)) - {0}  # 0: a socket no process holds any more
    if not inodes:
        return
    for inode, pids in netstat.owners(inodes).items():
        for pid in pids:
            p = judged.get(pid)
            if p is None:  # root's (all_users off), ignored, or this job's own
                continue
            reasons = [listens[inode]] if inode in listens else []
            if inode in calls and _interpreter(p.exe, cfg.interpreters):
                reasons.append(f"{os.path.basename(p.exe)}, an interpreter, is {calls[inode]}")
            if not reasons:
                continue
            found = out.findings.get(pid)
            if found is None:
                out.findings[pid] = _finding(p, reasons)
            else:
                found.reasons += [r for r in reasons if r not in found.reasons]


def _interpreter(exe: str, patterns: list[str]) -> bool:
    name = os.path.basename(exe)
    return any(fnmatch.fnmatchcase(name, pat) for pat in patterns)


def read_load(path: str) -> tuple[float, float, float] | None:
    """The 1, 5 and 15-minute load averages from a file in /proc/loadavg's format."""
    try:
        with open(path) as f:
            a, b, c = f.read(256).split()[:3]
        return float(a), float(b), float(c)
    except (OSError, ValueError):
        return None


def top(count: int = 10) -> list[str]:
    """The processes using the most CPU and memory now (lfd's loadalert snapshot)."""
    import psutil

    rows = []
    for p in psutil.process_iter(["pid", "username", "cpu_percent", "memory_percent", "cmdline"]):
        i = p.info
        rows.append(
            (
                i["cpu_percent"] or 0.0,
                i["memory_percent"] or 0.0,
                i["pid"],
                i["username"],
                " ".join(i["cmdline"] or [])[:100],
            )
        )
    by_cpu = sorted(rows, reverse=True)[:count]
    by_mem = sorted(rows, key=lambda r: -r[1])[:count]
    fmt = lambda r: f"{r[2]:>7} {r[3] or '?':<12} cpu {r[0]:5.1f}%  mem {r[1]:5.1f}%  {r[4]}"  # noqa: E731
    return ["by CPU:"] + [fmt(r) for r in by_cpu] + ["by memory:"] + [fmt(r) for r in by_mem]


def details(finding: Finding, lines: int) -> None:
    """lfd's processtracking fields: sockets, open files, mapped files (what can be read)."""
    import psutil

    d = finding.details
    try:
        p = psutil.Process(finding.pid)
        d["sockets"] = [
            f"{c.type.name.lower().replace('sock_', '')} {c.laddr.ip}:{c.laddr.port}"
            + (f" -> {c.raddr.ip}:{c.raddr.port}" if c.raddr else "")
            + f" {c.status}"
            for c in p.net_connections(kind="inet")
        ][:lines]
        d["files"] = [f.path for f in p.open_files()][:lines]
        d["maps"] = sorted({m.path for m in p.memory_maps(grouped=True) if m.path.startswith("/")})[:lines]
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, OSError):
        d.setdefault("sockets", [])
        d.setdefault("files", [])
        d.setdefault("maps", [])
