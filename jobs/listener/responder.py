"""The listener's second thread: everything that may be slow (the firewall, the state
database, files, commands) happens here, in batches, so the receive loop never waits."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from nightwarden.lib.fsutil import atomic_write
from nightwarden.lib.logsetup import get
from nightwarden.lib.netaddr import display
from nightwarden.lib.portsentry import format_line
from nightwarden.lib.threads import background

from .messages import BlockRequest, Digest, LoginAlerts, Mails, Message, Probe, Reload

log = get("listener")
# the scan types the loop names, as the JSON of an event's detail (made once, not per probe)
DETAIL = {k: json.dumps({"type": k}) for k in ("connect", "UDP", "SYN", "FIN", "NULL", "XMAS")}


def _append(path: Path):
    """A PortSentry-format file opened for appending: never through a link, mode 0640."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    return os.fdopen(fd, "a")


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
    """Takes the loop's messages in batches: scan rows into state, the blocks through the
    block manager (the loop already applied the policy and, on nftables, put the kernel entry
    in place), the history files, hosts.deny, commands and alert digests."""

    def __init__(self, config, make_blocks):
        super().__init__(name="responder", daemon=True)
        self.make_blocks = make_blocks  # called in this thread: sqlite and netlink are per thread
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.blocked = 0
        self.applied: dict[str, float] = {}  # address -> when its block was in place (bench, tests)
        self.children: list[subprocess.Popen] = []
        self.mgr = None
        self._configure(config)

    def _configure(self, config) -> None:
        """Everything derived from the configuration (at start and at each reload)."""
        self.config = config
        self.lcfg = config.listener
        self.history = config.configured_path(self.lcfg.history_file, config.state_dir / "portsentry.history")
        self.blocked_file = config.configured_path(
            self.lcfg.blocked_file, config.state_dir / "portsentry.blocked"
        )

    def submit(self, message: Message) -> None:
        self.queue.put(message)

    def run(self) -> None:
        background()
        self.mgr = self.make_blocks(self.config)
        while not (self.stopping.is_set() and self.queue.empty()):
            try:
                first = self.queue.get(timeout=0.2)
            except queue.Empty:
                self._reap()
                continue
            batch = [first]
            while len(batch) < 20000:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            except Exception:  # one bad batch must not end the listener; the log has it
                log.exception("responder: a batch failed")
        self.mgr.state.close()

    def _handle(self, batch: list[Message]) -> None:
        """In order, a reload dividing the batch: what came before it, then what came after."""
        start = 0
        for i, message in enumerate(batch):
            if isinstance(message, Reload):
                self._apply(batch[start:i])
                self._reload(message.config)
                start = i + 1
        self._apply(batch[start:])

    def _apply(self, batch: list[Message]) -> None:
        requests = [m for m in batch if isinstance(m, BlockRequest)]
        probes = [m for m in batch if isinstance(m, Probe)]
        for in_kernel in (True, False):
            blocks = [m.probe for m in requests if m.in_kernel is in_kernel]
            if blocks:
                self._block(blocks, in_kernel)
        if probes:
            with self.mgr.state:
                self.mgr.state.add_events(
                    [
                        (
                            p.when,
                            "scan",
                            p.source,
                            p.port,
                            p.proto,
                            "listener",
                            DETAIL.get(p.kind) or {"type": p.kind},
                        )
                        for p in probes
                    ]
                )
        alerts = [a for m in batch if isinstance(m, LoginAlerts) for a in m.items]
        if alerts:
            self._login_alerts(alerts)
        mails = [item for m in batch if isinstance(m, Mails) for item in m.items]
        if mails:
            self._mails(mails)
        for message in batch:
            if isinstance(message, Digest):
                self._digest(message.lines)

    def _reload(self, config) -> None:
        self.mgr.state.close()
        self._configure(config)
        self.mgr = self.make_blocks(config)

    def _digest(self, lines: tuple[str, ...]) -> None:
        from nightwarden.lib.mail import Mailer

        sources = {line.split()[1] for line in lines}
        try:
            Mailer(self.config).alert(
                "portscan",
                {
                    "ip": f"{len(sources)} source(s)",
                    "scantype": "see below",
                    "ports": "see below",
                    "hits": len(lines),
                    "hitlines": list(lines[:500]),
                    "temp": f"for {self.lcfg.block_ttl} s" if self.lcfg.block else "no (block = false)",
                },
            )
        except Exception as e:  # mail must never stop the listener
            log.warning("alert digest not sent: %s", e)

    def _mails(self, items: list[tuple[str, dict]]) -> None:
        from nightwarden.lib.mail import Mailer

        try:
            mailer = Mailer(self.config)
            for template, fields in items:
                mailer.alert(template, fields)
        except Exception as e:  # mail must never stop the listener
            log.warning("notice not sent: %s", e)

    def _login_alerts(self, items: list[dict]) -> None:
        """One mail per block, as the cron job sends; blocks that came together (a second's
        worth, one batch here) share one mail."""
        from nightwarden.lib.mail import Mailer

        try:
            mailer = Mailer(self.config)
            if len(items) == 1:
                mailer.alert("alert", items[0])
                return
            rows = [f"{a['ip']:<40} {a['service']:<10} {a['text']}" for a in items]
            mailer.alert(
                "alerts",
                {
                    "count": len(items),
                    "block": items[0]["block"],
                    "blocks": "\n".join(rows),
                    "loglines": "\n".join(a["loglines"] for a in items[:50]),
                },
            )
        except Exception as e:  # mail must never stop the listener
            log.warning("login-failure alert not sent: %s", e)

    def _block(self, probes: list[Probe], in_kernel: bool = False) -> None:
        unique: dict[str, Probe] = {}
        for p in probes:
            unique.setdefault(p.source, p)
        chosen = list(unique.values())  # the loop applied the cap
        added: set[str] = set()
        if self.lcfg.block:
            result = self.mgr.block(
                [p.source for p in chosen],
                ttl=self.lcfg.block_ttl,
                reason="port scan",
                source="listener",
                strict=False,
                policy_checked=True,
                in_kernel=in_kernel,
            )
            added = {display(n) for n in result.added}
        done = time.time()
        for p in chosen:
            if p.source in added:
                self.applied[p.source] = done
        self.blocked += len(added)
        self._files(chosen, added)
        self._hosts_deny([p.source for p in chosen if p.source in added])
        self._commands(chosen)

    def _files(self, chosen: list[Probe], added: set[str]) -> None:
        try:
            with _append(self.history) as hist, _append(self.blocked_file) as blk:
                for p in chosen:
                    blocked = p.source in added
                    line = format_line(
                        p.when, p.source, p.port, p.proto, "Blocked" if blocked else "Detected"
                    )
                    hist.write(line)
                    if blocked:
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

    def _commands(self, chosen: list[Probe]) -> None:
        argv = self.lcfg.run_command
        if not argv:
            return
        for p in chosen:
            mode = p.proto if p.kind in ("connect", "UDP") else f"a{p.proto}"
            args = [
                a.replace("$TARGET$", p.source).replace("$PORT$", str(p.port)).replace("$MODE$", mode)
                for a in argv
            ]
            try:  # an argument list, never a shell
                self.children.append(
                    subprocess.Popen(
                        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                )
            except OSError as e:
                log.warning("run_command %s: %s", args[0], e.strerror)
        self._reap()

    def _reap(self) -> None:
        self.children = [c for c in self.children if c.poll() is None]
