"""The listener's second thread: everything that may be slow (the firewall, the state
database, files, commands) happens here, in batches, so the receive loop never waits."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from nightwarden.lib.fsutil import atomic_write
from nightwarden.lib.logsetup import get
from nightwarden.lib.portsentry import format_line

log = get("listener")


class MinuteCap:
    """At most `limit` events in any 60 seconds."""

    def __init__(self, limit: int):
        self.limit = limit
        self.times: deque = deque()

    def take(self, count: int) -> int:
        """How many of `count` events may happen now (and count them as happened)."""
        now = time.monotonic()
        while self.times and now - self.times[0] > 60:
            self.times.popleft()
        granted = min(max(0, self.limit - len(self.times)), count)
        self.times.extend([now] * granted)
        return granted


class Responder(threading.Thread):
    def __init__(self, config, make_blocks, lcfg: dict):
        super().__init__(name="responder", daemon=True)
        self.config = config
        self.make_blocks = make_blocks          # called in this thread: sqlite and netlink are per thread
        self.lcfg = lcfg
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.cap = MinuteCap(lcfg.max_blocks_per_minute)
        self.capped = 0
        self.blocked = 0
        self.applied: dict[str, float] = {}     # address -> when its block was in place (bench, tests)
        self.children: list[subprocess.Popen] = []
        self.history = config.state_dir / "portsentry.history" if not lcfg.history_file \
            else Path(lcfg.history_file)
        self.blocked_file = config.state_dir / "portsentry.blocked" if not lcfg.blocked_file \
            else Path(lcfg.blocked_file)

    def submit(self, item: tuple) -> None:
        self.queue.put(item)

    def run(self) -> None:
        mgr = self.make_blocks(self.config)
        while not (self.stopping.is_set() and self.queue.empty()):
            try:
                first = self.queue.get(timeout=0.2)
            except queue.Empty:
                self._reap()
                continue
            items = [first]
            while len(items) < 20000:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(mgr, items)
            except Exception:  # one bad batch must not end the listener; the log has it
                log.exception("responder: a batch failed")
        mgr.state.close()

    def _handle(self, mgr, items: list[tuple]) -> None:
        blocks = [i for i in items if i[0] == "block"]
        hits = [i for i in items if i[0] == "hit"]
        if blocks:
            self._block(mgr, blocks)
        if hits:
            with mgr.state:
                mgr.state.add_events([(t, "scan", ip, port, proto, "listener", {"type": kind})
                                      for _, t, ip, port, proto, kind in hits])
        for item in items:
            if item[0] == "reload":
                mgr._lists = None
            elif item[0] == "digest":
                self._digest(item[1])

    def _digest(self, lines: list[str]) -> None:
        from nightwarden.lib.mail import Mailer
        sources = {line.split()[1] for line in lines}
        try:
            Mailer(self.config).alert("portscan", {
                "ip": f"{len(sources)} source(s)", "scantype": "see below", "ports": "see below",
                "hits": len(lines), "hitlines": lines[:500],
                "temp": f"for {self.lcfg.block_ttl} s" if self.lcfg.block else "no (block = false)"})
        except Exception as e:  # mail must never stop the listener
            log.warning("alert digest not sent: %s", e)

    def _block(self, mgr, blocks: list[tuple]) -> None:
        unique = {}
        for _, when, ip, port, proto, kind in blocks:
            unique.setdefault(ip, (when, port, proto, kind))
        room = self.cap.take(len(unique))
        chosen = list(unique.items())[:room]
        if len(unique) > room:
            self.capped += len(unique) - room
            log.warning("block cap of %d a minute reached: %d source(s) recorded, not blocked",
                        self.lcfg.max_blocks_per_minute, len(unique) - room)
        if not chosen:
            return
        if self.lcfg.block:
            result = mgr.block([ip for ip, _ in chosen], ttl=self.lcfg.block_ttl,
                               reason="port scan", source="listener", strict=False)
            done = time.time()
            added = {str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
                     for n in result.added}
        else:
            done, added = time.time(), set()
        for ip, _ in chosen:
            if ip in added:
                self.applied[ip] = done
        self.blocked += len(added)
        self._files(chosen, added)
        self._hosts_deny([ip for ip, _ in chosen if ip in added])
        self._commands(chosen)

    def _files(self, chosen, added: set) -> None:
        try:
            with open(self.history, "a") as hist, open(self.blocked_file, "a") as blk:
                for ip, (when, port, proto, kind) in chosen:
                    line = format_line(when, ip, port, proto, "Blocked" if ip in added else "Detected")
                    hist.write(line)
                    if ip in added:
                        blk.write(line)
        except OSError as e:
            log.warning("cannot write the history files: %s", e.strerror)

    def _hosts_deny(self, ips: list[str]) -> None:
        path = self.lcfg.hosts_deny
        if not path or not ips:
            return
        path = Path(path)
        try:
            current = path.read_text() if path.exists() else ""
        except OSError as e:
            log.warning("%s: %s", path, e.strerror)
            return
        have = {line.strip() for line in current.splitlines()}
        new = [f"ALL: {ip}" for ip in ips if f"ALL: {ip}" not in have]
        if new:
            text = current + ("" if not current or current.endswith("\n") else "\n") + "\n".join(new) + "\n"
            atomic_write(path, text.encode(), 0o644)

    def _commands(self, chosen) -> None:
        argv = self.lcfg.run_command
        if not argv:
            return
        for ip, (when, port, proto, kind) in chosen:
            args = [a.replace("$TARGET$", ip).replace("$PORT$", str(port))
                    .replace("$MODE$", proto if kind in ("connect", "UDP") else f"a{proto}") for a in argv]
            try:   # an argument list, never a shell
                self.children.append(subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            except OSError as e:
                log.warning("run_command %s: %s", args[0], e.strerror)
        self._reap()

    def _reap(self) -> None:
        self.children = [c for c in self.children if c.poll() is None]
