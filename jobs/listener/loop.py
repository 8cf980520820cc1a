"""The resident listener (PortSentry's job): bait ports in connect mode, or raw sockets in
advanced mode; a hit from a source that is not ignored blocks it through the firewall
library, within a millisecond or two. One process, non-blocking sockets, bounded memory."""

from __future__ import annotations

import errno
import gc
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections import OrderedDict

from nightwarden.lib import sdnotify
from nightwarden.lib.blocks import kernel_ttl
from nightwarden.lib.errors import NightwardenError
from nightwarden.lib.logsetup import get
from nightwarden.lib.netaddr import parse_network

from .messages import BlockRequest, Digest, Message, Probe, Reload
from .packets import parse_ipv4, parse_ipv6, ports_in_use
from .responder import MinuteCap, Responder

log = get("listener")
UNREADABLE = "a list cannot be read"
CAPPED = "not blocked: cap"  # max_blocks_per_minute reached; blocked once it makes room
MAX_SOURCES = 200_000  # sources remembered (threshold counts, decisions): oldest forgotten
RCVBUF = 64 << 20


def _big_buffer(sock: socket.socket) -> None:
    """A receive buffer past net.core.rmem_max (root may): a burst must not overflow it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


class RateLimitedLog:
    """At most N lines a second; the rest are counted and summed up once a second."""

    def __init__(self, per_second: int):
        self.per_second = per_second
        self.window = 0
        self.used = 0
        self.dropped = 0

    def error(self, fmt: str, *args) -> None:
        self.warning(fmt, *args, level=logging.ERROR)

    def warning(self, fmt: str, *args, level: int = logging.WARNING) -> None:
        now = int(time.monotonic())
        if now != self.window:
            if self.dropped:
                log.warning("(%d alert lines suppressed in the last second)", self.dropped)
            self.window, self.used, self.dropped = now, 0, 0
        if self.used < self.per_second:
            self.used += 1
            log.log(level, fmt, *args)
        else:
            self.dropped += 1


class Listener:
    def __init__(
        self, config, make_blocks, mail: bool = True, mode: str = "connect", reload_from: tuple = (None, None)
    ):
        self.make_blocks = make_blocks
        self.mailer = mail
        self.mode = mode  # kept across reloads: the sockets stay as they are
        self.reload_from = reload_from  # (--config, --sandbox) for SIGHUP
        self.sel = selectors.DefaultSelector()
        self.sockets: dict[tuple, socket.socket] = {}  # (family, kind, addr, port) -> bait
        self.raw_sockets: list[socket.socket] = []
        self.running = True
        self.reload_requested = False
        self.counts: OrderedDict[str, list] = OrderedDict()  # source -> [first, hits]
        self.decided: OrderedDict[str, str] = OrderedDict()  # source -> "blocked" / "ignored: why"
        self.alerts: dict[str, dict] = {}  # aggregated for the log and the digest
        self.digest: list[str] = []
        self.hits = 0
        self.spare_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.responder = Responder(config, make_blocks)
        self.fast_pending: list[Probe] = []
        self.waiting: OrderedDict[str, Probe] = OrderedDict()  # over the block cap, in order
        self.capped = 0
        self.outbox: list[Message] = []  # for the responder, handed over after the fast path
        self.unbound: list[tuple] = []  # bait ports busy at start, tried again later
        self.policy = None
        self.on_reload = None  # called with the new configuration after a reload
        self._configure(config)

    def _configure(self, config) -> None:
        """Everything derived from the configuration, at start and at each SIGHUP."""
        self.config = config
        self.lcfg = config.listener
        self.rlog = RateLimitedLog(self.lcfg.log_lines_per_second)
        if self.policy is not None:
            self.policy.state.close()
        self.policy = self.make_blocks(config)  # the block policy, decided in this thread
        # On nftables with libnftables, the kernel entry is added from this loop, once per pass
        # over the ready sockets for everything that pass found: one in-process transaction
        # (about 0.2 ms), so a sequential scan gets few answers. The responder then records the
        # block in state (and re-adds it, which only refreshes the timeout). Other backends
        # would fork from here: the responder does all of it for them.
        self.fast = self._fast_path_on()
        self.block_cap = MinuteCap(self.lcfg.max_blocks_per_minute)  # the one cap of the listener
        # the lists and their index live as long as this configuration: out of the cyclic
        # collector's sight, so that a big allow list does not slow every collection (and so
        # every probe); refcounting still frees them after a reload
        self.policy.lists.build_index()
        gc.freeze()

    def _fast_path_on(self) -> bool:
        """The kernel entry from the receive loop: when blocking, in process, and not while
        the firewall is off (`firewall stop`: nothing is added)."""
        return bool(self.lcfg.block and self.policy.backend.fast_in_process and not self.policy.off())

    # -- sockets -----------------------------------------------------------------------
    def _bind(self, family, kind, addr: str, port: int) -> None:
        key = (family, kind, addr, port)
        proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((addr, port))
        except OSError as e:
            sock.close()
            if key not in self.unbound:
                self.unbound.append(key)
                log.warning(
                    "port %d/%s not watched yet: %s (tried again every 30 s)", port, proto, e.strerror
                )
            return
        if key in self.unbound:
            self.unbound.remove(key)
            log.warning("port %d/%s watched now", port, proto)
        if kind == socket.SOCK_DGRAM:
            _big_buffer(sock)
        if kind == socket.SOCK_STREAM:
            sock.listen(4096)  # PortSentry's backlog of 5 loses most of a burst
        sock.setblocking(False)
        self.sockets[key] = sock
        self.sel.register(sock, selectors.EVENT_READ, ("accept" if proto == "tcp" else "udp", port))

    def _unbind(self, key: tuple) -> None:
        sock = self.sockets.pop(key)
        self.sel.unregister(sock)
        sock.close()

    def _wanted(self) -> set[tuple]:
        """The bait sockets the configuration asks for (connect mode): every configured port
        that nothing on the host really uses, on each address family."""
        lcfg = self.lcfg
        # a sandboxed listener opens no port on the host's real interfaces
        bind4, bind6 = ("127.0.0.1", "::1") if self.config.sandbox else (lcfg.bind4, lcfg.bind6)
        families = [(socket.AF_INET, bind4)] + (
            [(socket.AF_INET6, bind6)] if lcfg.ipv6 and socket.has_ipv6 else []
        )
        wanted = set()
        for proto, kind in (("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)):
            used = ports_in_use(proto)
            for port in getattr(lcfg, f"{proto}_ports"):
                if port in used and not any(k[1] == kind and k[3] == port for k in self.sockets):
                    log.warning("port %d/%s is really in use here: not watched", port, proto)
                    continue
                wanted |= {(family, kind, addr, port) for family, addr in families}
        return wanted

    def _rebind(self) -> None:
        """Bind what is wanted and not bound yet; close what is no longer wanted."""
        wanted = self._wanted()
        for key in [k for k in self.sockets if k not in wanted]:
            self._unbind(key)
        self.unbound = [k for k in self.unbound if k in wanted]
        for key in sorted(wanted - set(self.sockets), key=lambda k: (k[1], k[3], k[0])):
            self._bind(*key)

    def _raw(self, family, proto: str) -> None:
        number = socket.IPPROTO_TCP if proto == "tcp" else socket.IPPROTO_UDP
        sock = socket.socket(family, socket.SOCK_RAW, number)
        _big_buffer(sock)
        sock.setblocking(False)
        self.raw_sockets.append(sock)
        self.sel.register(sock, selectors.EVENT_READ, ("raw", (family, proto)))

    def open(self) -> None:
        if self.mode == "advanced":
            self.refresh_ports()
            families = [socket.AF_INET] + ([socket.AF_INET6] if self.lcfg.ipv6 and socket.has_ipv6 else [])
            for family in families:
                self._raw(family, "tcp")
                self._raw(family, "udp")
        else:
            self._rebind()
        self.responder.start()

    def refresh_ports(self) -> None:
        self.in_use = {"tcp": ports_in_use("tcp"), "udp": ports_in_use("udp")}
        self.ports_refreshed = time.monotonic()

    def close(self) -> None:
        for key in list(self.sockets):
            self._unbind(key)
        for sock in self.raw_sockets:
            self.sel.unregister(sock)
            sock.close()
        self.raw_sockets = []

    # -- events --------------------------------------------------------------------------
    def _accept(self, sock: socket.socket, port: int) -> None:
        while True:
            try:
                conn, addr = sock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    self._shed(sock)
                    continue
                return
            try:
                if self.lcfg.banner:
                    conn.setblocking(False)
                    try:
                        conn.send(self.lcfg.banner.encode() + b"\r\n")
                    except OSError:
                        pass
            finally:
                conn.close()
            self.hit(_plain(addr[0]), port, "tcp", "connect")

    def _shed(self, sock: socket.socket) -> None:
        """Out of descriptors: free the spare one, take the waiting connection, drop it."""
        os.close(self.spare_fd)
        try:
            conn, addr = sock.accept()
            conn.close()
            self.hit(_plain(addr[0]), sock.getsockname()[1], "tcp", "connect")
        except OSError:
            pass
        finally:
            self.spare_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.rlog.warning("out of file descriptors: connections are taken and dropped at once")

    def _udp(self, sock: socket.socket, port: int) -> None:
        for _ in range(1000):
            try:
                _, addr = sock.recvfrom(2048)
            except (BlockingIOError, OSError):
                return
            self.hit(_plain(addr[0]), port, "udp", "UDP")

    def _raw_read(self, sock: socket.socket, family, proto: str) -> None:
        below = getattr(self.lcfg, f"advanced_{proto}_below")
        exclude = set(getattr(self.lcfg, f"advanced_{proto}_exclude"))
        for _ in range(5000):
            try:
                packet, addr = sock.recvfrom(65535)
            except (BlockingIOError, OSError):
                return
            try:
                found = (
                    parse_ipv4(packet, proto)
                    if family == socket.AF_INET
                    else parse_ipv6(packet, _plain(addr[0]), proto)
                )
            except Exception:  # a malformed packet is skipped, whatever it is
                found = None
            if found is None:
                continue
            src, dport, kind = found
            if dport >= below or dport in exclude or dport in self.in_use[proto]:
                continue
            self.hit(src, dport, proto, kind)

    def hit(self, src: str, port: int, proto: str, kind: str) -> None:
        """One probe. Decides in this thread; the responder does the slow part."""
        self.hits += 1
        now = time.time()
        decided = self.decided.get(src)
        if decided is None:
            why = self._ignored(src)
            if why == UNREADABLE:
                decided = "not blocked: a list cannot be read"  # decided again once it can
            elif why:
                decided = f"ignored: {why}"
                self._remember(self.decided, src, decided)
        if decided is None or decided in ("blocked", CAPPED):
            self._alert(src, port, proto, kind, now)
        if decided is not None:
            if decided in ("blocked", CAPPED):
                self._record(Probe(now, src, port, proto, kind))
            return
        entry = self.counts.get(src)
        if entry is None or now - entry[0] > self.lcfg.trigger_window:
            entry = [now, 0]
            self._remember(self.counts, src, entry)
        entry[1] += 1
        probe = Probe(now, src, port, proto, kind)
        self._record(probe)
        if entry[1] > self.lcfg.scan_trigger:
            self.counts.pop(src, None)
            if self.block_cap.take(1):
                self._decide_block(probe)
            else:  # over the cap: blocked as soon as the cap allows (_unwait)
                self._remember(self.decided, src, CAPPED)
                self._remember(self.waiting, src, probe)
                self.capped += 1
                self.rlog.warning(
                    "block cap of %d a minute reached: %s waits (%d waiting)",
                    self.lcfg.max_blocks_per_minute,
                    src,
                    len(self.waiting),
                )

    def _decide_block(self, probe: Probe) -> None:
        self._remember(self.decided, probe.source, "blocked")
        if self.fast:
            self.fast_pending.append(probe)
        else:
            self.outbox.append(BlockRequest(probe))

    def _unwait(self) -> None:
        """Sources held back by the cap, blocked in their order as it makes room."""
        for _ in range(self.block_cap.take(len(self.waiting))):
            _, probe = self.waiting.popitem(last=False)
            self._decide_block(probe)

    def _fast_block(self) -> None:
        """The kernel entries for this pass's new sources, through the backend's fast path."""
        pending, self.fast_pending = self.fast_pending, []  # the cap was applied when deciding
        done = True
        try:
            self.policy.backend.fast_block(
                [parse_network(p.source) for p in pending], kernel_ttl(self.lcfg.block_ttl)
            )
        except Exception as e:  # the responder's block puts the entry in place all the same
            done = False
            self.rlog.warning("fast block path failed (the responder will retry): %s", e)
        # the responder records them; entries already in the kernel are not added again there
        # (a second transaction per block, racing this loop's next one for the kernel)
        self.outbox += [BlockRequest(p, done) for p in pending]

    def _record(self, probe: Probe) -> None:
        # one row per source and port per alert period: a flood cannot grow the table without bound
        alert = self.alerts.get(probe.source)
        if alert is not None and probe.port in alert["recorded"]:
            return
        if alert is not None:
            alert["recorded"].add(probe.port)
        self.outbox.append(probe)

    def _ignored(self, src: str) -> str | None:
        try:
            net = parse_network(src)
        except Exception:
            return "not an address"
        try:
            return self.policy.refusal(net)
        except NightwardenError as e:  # an unreadable allow or ignore list: fail closed, loudly
            self.rlog.error("refusing to block %s: %s", src, e)
            return UNREADABLE

    @staticmethod
    def _remember(table: OrderedDict, key, value) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > MAX_SOURCES:
            table.popitem(last=False)

    # -- alerts: one line per source and port range, and a mail digest ----------------------
    def _alert(self, src, port, proto, kind, now) -> None:
        a = self.alerts.get(src)
        if a is None:
            if len(self.alerts) >= 10000:
                self._flush_alerts(force=True)
            a = self.alerts[src] = {
                "first": now,
                "kind": kind,
                "proto": proto,
                "ports": set(),
                "hits": 0,
                "recorded": set(),
            }
        a["ports"].add(port)
        a["hits"] += 1

    def _flush_alerts(self, force: bool = False) -> None:
        now = time.time()
        for src in [s for s, a in self.alerts.items() if force or now - a["first"] >= 1.0]:
            a = self.alerts.pop(src)
            ports = sorted(a["ports"])
            span = str(ports[0]) if len(ports) == 1 else f"{ports[0]}-{ports[-1]} ({len(ports)} ports)"
            what = (
                "Connect from host"
                if a["kind"] == "connect"
                else ("UDP scan from host" if a["kind"] == "UDP" else f"{a['kind']}/Normal scan from host")
            )
            state = self.decided.get(src, "")
            suffix = "" if state == "blocked" else f" ({state})" if state else ""
            self.rlog.warning(
                "attackalert: %s: %s/%s to %s port: %s%s", what, src, src, a["proto"].upper(), span, suffix
            )
            self.digest.append(
                f"{time.strftime('%H:%M:%S', time.localtime(a['first']))}  {src}  "
                f"{a['kind']} {a['proto']} {span}  {a['hits']} probe(s)  "
                f"{'blocked' if state == 'blocked' else state or 'below threshold'}"
            )

    def _send_digest(self) -> None:
        """One mail for everything since the last one (never one mail per probe); the
        responder thread sends it, so a slow mail server cannot stall the receive loop."""
        if self.digest and self.mailer:
            self.responder.submit(Digest(tuple(self.digest)))
        self.digest = []

    # -- the loop --------------------------------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "running", False))
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_requested", True))

    def reload(self) -> None:
        """SIGHUP: read the configuration and the lists again and rebuild everything derived
        from them here and in the responder (ports, TTL, trigger, caps, policy); the mode and
        the raw sockets stay. A configuration that does not load changes nothing."""
        from nightwarden.jobs import load_config
        from nightwarden.lib.netaddr import own_addresses

        try:
            fresh = load_config(*self.reload_from)
        except Exception as e:
            log.error("reload refused, the old configuration stays: %s", e)
            return
        if fresh.listener.mode != self.mode:
            log.warning(
                "listener.mode is now %s: it takes a restart (the sockets stay in %s mode)",
                fresh.listener.mode,
                self.mode,
            )
        own_addresses.cache_clear()
        self._configure(fresh)
        if self.mode == "connect":
            self._rebind()
        self.decided = OrderedDict((k, v) for k, v in self.decided.items() if v == "blocked")
        self.responder.submit(Reload(fresh))
        if self.on_reload is not None:
            self.on_reload(fresh)
        log.warning(
            "configuration and lists reloaded: %d bait socket(s), block %s, ttl %d s, trigger %d",
            len(self.sockets) + len(self.raw_sockets),
            "on" if self.lcfg.block else "off",
            self.lcfg.block_ttl,
            self.lcfg.scan_trigger,
        )

    def serve(self, until: float | None = None) -> None:
        # the responder thread must not hold the GIL for long while a probe waits here
        sys.setswitchinterval(0.0002)
        sdnotify.notify("READY=1\nSTATUS=watching")
        watchdog = sdnotify.watchdog_interval()
        last_dog = last_flush = last_retry = time.monotonic()
        log.warning(
            "listening (%s mode) on %d socket(s)", self.mode, len(self.sockets) + len(self.raw_sockets)
        )
        while self.running and (until is None or time.monotonic() < until):
            for key, _ in self.sel.select(timeout=0.25):
                action, arg = key.data
                if action == "accept":
                    self._accept(key.fileobj, arg)
                elif action == "udp":
                    self._udp(key.fileobj, arg)
                else:
                    self._raw_read(key.fileobj, *arg)
            if self.waiting:
                self._unwait()
            if self.fast_pending:
                self._fast_block()
            if self.outbox:
                # handed over only now: the responder thread would otherwise take the GIL
                # between a hit and its kernel entry
                for item in self.outbox:
                    self.responder.submit(item)
                self.outbox = []
            now = time.monotonic()
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            if self.alerts:
                self._flush_alerts()
            if now - last_flush >= self.lcfg.alert_digest_seconds:
                last_flush = now
                self._send_digest()
            if watchdog and now - last_dog >= watchdog:
                sdnotify.notify("WATCHDOG=1")
                last_dog = now
            if self.mode == "advanced" and now - self.ports_refreshed > 5:
                self.refresh_ports()
            if now - last_retry > 30:
                last_retry = now
                for args in list(self.unbound):
                    self._bind(*args)
                self.fast = self._fast_path_on()
                if self.policy.lists.unreadable_any:  # read them again: blocking resumes once it can
                    self.policy._lists = None

    def shutdown(self) -> None:
        sdnotify.notify("STOPPING=1")
        self._flush_alerts(force=True)
        self._send_digest()
        self.close()
        self.responder.stopping.set()
        self.responder.join(timeout=1.5)
        self.policy.state.close()


def _plain(address: str) -> str:
    """::ffff:1.2.3.4 as 1.2.3.4."""
    return address[7:] if address.startswith("::ffff:") else address
