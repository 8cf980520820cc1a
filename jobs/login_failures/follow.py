"""Following the log sources from the resident listener (logins.follow = "listener").

The cron job reads what a source gained since its cursor once a minute. Here the same reading
(sources.plan and read_part: rotation by rename, copytruncate, `.1` and `.gz` hand-overs), the
same rules and the same counter run the moment inotify says a log or its directory changed,
and the journal is read from `journalctl --follow`. Counting is exact to the second. An address
that reaches its service's limit gets its kernel entry through the firewall's fast path at
once; its block row follows, and the attempts and cursors are written in one transaction a
second. Alert mails go through a callback (the listener's responder thread sends them).

One reader per source: the follower holds each source's lock (reading.source_lock) for as long
as it follows it, and the cron job skips a locked source. When the listener dies, its locks go
with it and the next cron run reads on from the last saved cursor; when it comes back it takes
each lock as soon as the job lets go and reads from the cursor the job left.
"""

from __future__ import annotations

import os
import selectors
import sqlite3
import subprocess
import threading
import time
from collections import OrderedDict, deque

from nightwarden.lib import inotify
from nightwarden.lib.blocks import kernel_ttl
from nightwarden.lib.errors import NightwardenError
from nightwarden.lib.logsetup import get
from nightwarden.lib.netaddr import parse_network
from nightwarden.lib.threads import background

from . import counting, notify, reading, rules, sources, tracking
from .store import AttemptStore

log = get("logins")
CHUNK = 32 << 10  # one findall holds the GIL: short, so the listener's probe loop never waits long
MIN_GAP = 0.01  # seconds between two reads of one source: a stream of events is read in batches
POLL = 2.0  # each file is looked at this often without an event too
COMMIT = 1.0  # attempts, cursors and events are written at most this often
RETRY = 1.0  # a busy lock, a missing directory, a journal command that ended
MAX_KEYS = 200_000  # (service, address) windows kept: the oldest is forgotten first
RECENT = 256 << 10  # bytes of recent text per source, for the alerts' log lines
MAX_CONNECTIONS = 100_000  # sshd connections remembered per source (a sustained flood)
SAVED_CONNECTIONS = 2000  # sshd connections saved with a cursor (the newest)
JOURNAL_READ = 1 << 20  # bytes taken from journalctl per wake-up
DIR_EVENTS = (
    inotify.IN_MODIFY
    | inotify.IN_CLOSE_WRITE
    | inotify.IN_CREATE
    | inotify.IN_MOVED_TO
    | inotify.IN_MOVED_FROM
    | inotify.IN_DELETE
    | inotify.IN_ATTRIB
    | inotify.IN_DELETE_SELF
    | inotify.IN_MOVE_SELF
    | inotify.IN_ONLYDIR
)


class Windows:
    """Failures per (service, address) with their times, kept within each service's window:
    the limit is checked exact to the second. Bounded: the least recently used key goes first."""

    def __init__(self, limits: dict, windows: dict):
        self.limits = limits
        self.windows = windows
        self.keys: OrderedDict = OrderedDict()  # (service, address) -> deque of [time, failures]

    def add(self, service: str, addr: str, t: float, n: int) -> bool:
        """Count; True when the service has a limit (the key is then worth a check)."""
        if not self.limits.get(service):
            return False
        key = (service, addr)
        q = self.keys.get(key)
        if q is None:
            q = self.keys[key] = deque()
            if len(self.keys) > MAX_KEYS:
                self.keys.popitem(last=False)
        else:
            self.keys.move_to_end(key)
        if q and q[-1][0] == t:
            q[-1][1] += n
        else:
            q.append([t, n])
        return True

    def over(self, key: tuple, now: float) -> tuple | None:
        """(service, address, [failures, first, last]) when the key reached its limit."""
        q = self.keys.get(key)
        if not q:
            return None
        service = key[0]
        start = now - self.windows[service]
        while q and q[0][0] < start:
            q.popleft()
        total = sum(n for _, n in q)
        if q and total >= self.limits[service]:
            return (service, key[1], [total, q[0][0], q[-1][0]])
        return None

    def forget(self, key: tuple) -> None:
        self.keys.pop(key, None)


class Followed:
    """One source as the follower holds it."""

    def __init__(self, source: reading.Source, config):
        self.source = source
        self.lock = reading.source_lock(config, source)
        self.held = False
        self.cursor: dict | None = None  # without the connections (added when saved)
        self.saved = True  # the cursor in state is this one
        self.tally = counting.Tally()
        self.compiled = None
        self.recent: deque = deque()
        self.recent_size = 0
        self.last_read = 0.0
        self.dirty = True
        self.proc: subprocess.Popen | None = None  # journal
        self.pending = b""  # journal: a line not complete yet
        self.restart_at = 0.0
        self.problem = ""  # the last one said (said once until it changes)
        self.history = False  # the next read is the first of a file: its history

    def keep(self, text: bytes) -> None:
        self.recent.append(text)
        self.recent_size += len(text)
        while self.recent_size > RECENT and len(self.recent) > 1:
            self.recent_size -= len(self.recent.popleft())

    def lines_naming(self, addr: str, limit: int) -> list[str]:
        raw = addr.encode()  # ::ffff:a.b.c.d holds it too
        out: list[bytes] = []
        for text in reversed(self.recent):  # newest first, a find per line wanted: never a split
            end = len(text)
            while len(out) < limit:
                at = text.rfind(raw, 0, end)
                if at < 0:
                    break
                start = text.rfind(b"\n", 0, at) + 1
                stop = text.find(b"\n", at)
                out.append(text[start : stop if stop >= 0 else len(text)])
                end = start
            if len(out) >= limit:
                break
        return [ln.decode("utf-8", "backslashreplace") for ln in reversed(out)]


class LogFollower(threading.Thread):
    """Follows every configured log source; see the module's docstring."""

    def __init__(self, config, make_blocks, send_alerts, dry_run: bool = False, send_mails=None):
        super().__init__(name="logs", daemon=True)
        self.config = config
        self.cfg = config.logins
        self.make_blocks = make_blocks  # called in this thread: sqlite and netlink are per thread
        self.send_alerts = send_alerts  # callback(list of alert field dicts), must not block
        self.send_mails = send_mails or (lambda mails: None)  # callback(list of (template, fields))
        self.dry_run = dry_run
        self.stopping = threading.Event()
        self.ready = threading.Event()  # set once every source was tried (tests, bench)
        windows = {svc: self.cfg.intervals.get(svc) or self.cfg.interval for svc in self.cfg.limits}
        self.windows = Windows(dict(self.cfg.limits), windows)
        self.longest = max([self.cfg.interval, *windows.values()])
        self.followed = [Followed(s, config) for s in reading.configured(config)]
        self._rows: list = []  # (service, address, time, n) not written yet
        self._cleared: list = []  # (service, address) blocked: their attempts are forgotten
        self._events: list = []  # (kind, address, fields)
        self._accounts: list = []  # rows for tracking.AccountStore
        self.tracking = tracking.wanted(config)
        self.users = bool(self.cfg.dist_attack)  # failures' accounts are kept
        self._recent_blocks: OrderedDict = OrderedDict()  # address -> monotonic time blocked
        self._said: set = set()

    # -- the thread ------------------------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.join(timeout)

    def run(self) -> None:
        background()  # the listener's receive loop comes first
        try:
            self.mgr = self.make_blocks(self.config)
            self.state = self.mgr.state
            self.store = AttemptStore(self.state)
            self.accounts = tracking.AccountStore(self.state) if self.tracking else None
            self.sel = selectors.DefaultSelector()
            self.ino = inotify.Inotify()
        except Exception as e:  # the listener goes on; the cron job reads the sources
            log.error("log following could not start (the cron job reads the logs): %s", e)
            self.ready.set()
            return
        self.sel.register(self.ino, selectors.EVENT_READ, None)
        self.watches: dict[int, str] = {}  # wd -> directory
        next_try = last_commit = 0.0
        try:
            self._load_windows()
            while not self.stopping.is_set():
                try:
                    next_try, last_commit = self._step(next_try, last_commit)
                except Exception as e:  # a bug or a broken database: said, and tried again
                    if not isinstance(e, (NightwardenError, OSError, sqlite3.Error)):
                        log.exception("log following: %s", e)
                    self._say_once(None, f"log following: {e.__class__.__name__}: {e} (tried again)")
                    self.stopping.wait(RETRY)
        finally:
            self._close()

    def _step(self, next_try: float, last_commit: float) -> tuple[float, float]:
        """One pass: locks and watches when due, the events, the reads, the blocks, the commit."""
        now = time.monotonic()
        if now >= next_try:
            next_try = now + RETRY
            self._take_locks()
            self._watch_dirs()
            self._restart_journals(now)
        dirty = any(f.held and f.dirty for f in self.followed)
        for key, _ in self.sel.select(timeout=MIN_GAP if dirty else 0.2):
            if key.data is None:
                self._inotify_events()
            else:
                self._read_journal(key.data)
        due = self._read_files(time.monotonic())
        if due:
            self._block(due)
        if time.monotonic() - last_commit >= COMMIT:
            last_commit = time.monotonic()
            self._commit()
        self.ready.set()  # every source was tried and read once
        return next_try, last_commit

    def _close(self) -> None:
        try:
            self._commit()
        except Exception as e:
            log.warning("log following: the last cursors were not saved: %s", e)
        for f in self.followed:
            if f.proc is not None:
                f.proc.kill()
                f.proc.wait()
            if f.held:
                f.lock.release()
                f.held = False
        self.ino.close()
        self.mgr.state.close()

    def _say_once(self, f: Followed | None, text: str, level=None) -> None:
        key = (f.source.name if f else "", text)
        if len(self._said) > 1000:
            self._said.clear()
        if key not in self._said:
            self._said.add(key)
            (level or log.warning)("%s", text)

    # -- locks, watches, journal processes -------------------------------------------------
    def _take_locks(self) -> None:
        taken = False
        for f in self.followed:
            if f.held:
                continue
            if not self.dry_run:  # a dry run writes no cursor: it need not keep the job off
                try:
                    f.lock.acquire()
                except NightwardenError as e:
                    self._say_once(f, f"{f.source.name}: waiting for the cron job: {e}", log.info)
                    continue
            f.held, taken = True, True
            f.cursor = self.state.get_cursor(f.source.key)
            # a file read from its start for the first time holds its history
            f.history = f.cursor is None and f.source.path is not None
            f.tally = counting.Tally(want_users=self.users)
            f.tally.restore((f.cursor or {}).pop("conns", None) if f.cursor else None)
            f.saved, f.dirty = True, True
            log.info("following %s", f.source.name)
        if taken and any(f.held for f in self.followed):
            self._load_windows()

    def _load_windows(self) -> None:
        """What the attempts table holds (the cron job's and ours), once written."""
        self._commit()
        self.windows.keys.clear()
        for service, addr, t, n in self.store.since(time.time() - self.longest):
            self.windows.add(service, addr, t, n)

    def _watch_dirs(self) -> None:
        wanted = {str(f.source.path.parent) for f in self.followed if f.source.path is not None}
        for d in wanted - set(self.watches.values()):
            try:
                self.watches[self.ino.add(d, DIR_EVENTS)] = d
            except OSError as e:
                self._say_once(None, f"{d}: not watched ({e.strerror}); looked at every {POLL:g} s")

    def _restart_journals(self, now: float) -> None:
        for f in self.followed:
            if f.source.path is None and f.held and f.proc is None and now >= f.restart_at:
                self._start_journal(f)

    def _start_journal(self, f: Followed) -> None:
        argv = list(self.cfg.journal_command) + ["--follow"]
        after = (f.cursor or {}).get("cursor")
        argv += ["--after-cursor", after] if after else [f"--since=-{self.cfg.interval}s"]
        try:
            f.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except OSError as e:
            f.restart_at = time.monotonic() + 30
            self._say_once(f, f"journal: {argv[0]}: {e.strerror}; tried again every 30 s")
            return
        os.set_blocking(f.proc.stdout.fileno(), False)
        self.sel.register(f.proc.stdout, selectors.EVENT_READ, f)

    # -- reading ------------------------------------------------------------------------------
    def _inotify_events(self) -> None:
        for ev in self.ino.read():
            if ev.mask & inotify.IN_Q_OVERFLOW:
                for f in self.followed:
                    f.dirty = True
                continue
            directory = self.watches.get(ev.wd)
            if directory is None:
                continue
            if ev.mask & inotify.IN_IGNORED:  # the directory went away: watched again when back
                del self.watches[ev.wd]
                continue
            name = os.fsdecode(ev.name)
            for f in self.followed:
                p = f.source.path
                if p is not None and str(p.parent) == directory and (not name or name.startswith(p.name)):
                    f.dirty = True

    def _read_files(self, now: float) -> list:
        due: list = []
        for f in self.followed:
            if f.source.path is None or not f.held:
                continue
            if not (f.dirty or now - f.last_read >= POLL) or now - f.last_read < MIN_GAP:
                continue
            f.dirty, f.last_read = False, now
            due += self._read_file(f)
        return due

    def _read_file(self, f: Followed) -> list:
        src = f.source
        try:
            plan = sources.plan(src.path, f.cursor)
            if plan.lost:
                log.warning("%s", plan.lost)
                self._events.append(("log_gap", None, {"source": src.name, "why": plan.lost}))
            if f.compiled is None:
                fmt = reading._format(src)
                f.compiled = rules.compile_rules(
                    fmt, src.services, known=False, users=self.users, ruleset=src.ruleset
                )
            before, rows = f.tally.lines, len(f.tally.rows)
            try:
                for i, part in enumerate(plan.parts):
                    counter = counting.AttemptCounter(f.compiled, f.tally, part.mtime, 1)
                    for text, offset in sources.read_part(part, CHUNK):
                        counter.scan(b"\n" + text, i, offset)
                        f.keep(text)
                    if part.overlong:
                        self._say_once(f, f"{src.name}: line(s) longer than {sources.MAX_LINE} bytes skipped")
                    if part.broken:
                        self._say_once(f, part.broken)
                        self._events.append(("log_gap", None, {"source": src.name, "why": part.broken}))
                cursor = sources.cursor_after(src.path, plan)
            except BaseException:
                # the cursor stays where it was and the next read scans these parts again:
                # what this one counted of them is dropped, or it would count twice
                del f.tally.rows[rows:]
                f.tally.lines = before
                raise
            finally:
                plan.close()
        except FileNotFoundError:  # a copy renamed between the plan and its read: again soon
            f.dirty = True
            return []
        except (NightwardenError, OSError) as e:
            problem = getattr(e, "message", None) or f"{src.path}: {e}"
            if problem != f.problem:
                f.problem = problem
                log.warning("%s (read again when it changes)", problem)
            return []
        f.problem = ""
        if f.tally.lines == before and cursor.get("offset") == (f.cursor or {}).get("offset"):
            if cursor.get("ino") == (f.cursor or {}).get("ino"):
                return []
        f.cursor, f.saved = cursor, False
        return self._counted(f)

    def _read_journal(self, f: Followed) -> None:
        chunks, size = [], 0
        ended = False
        while size < JOURNAL_READ:
            try:
                data = os.read(f.proc.stdout.fileno(), 256 << 10)
            except BlockingIOError:
                break
            if not data:
                ended = True
                break
            chunks.append(data)
            size += len(data)
        if ended:
            self.sel.unregister(f.proc.stdout)
            f.proc.stdout.close()
            code = f.proc.wait()
            f.proc = None
            f.restart_at = time.monotonic() + RETRY
            self._say_once(f, f"journal: {self.cfg.journal_command[0]} ended (exit {code}); started again")
        buf = f.pending + b"".join(chunks)
        cut = buf.rfind(b"\n") + 1
        f.pending = buf[cut:]
        if len(f.pending) > sources.MAX_LINE:
            f.pending = b""
        if not cut:
            return
        batch = sources.journal_lines(buf[:cut], None, self.config.hostname)
        if batch.forged:
            for line in batch.forged[:20]:
                log.warning("journal: forged entry: %s", line)
            self._events.append(
                (
                    "log_forged",
                    None,
                    {"source": "journal", "count": len(batch.forged), "sample": batch.forged[:5]},
                )
            )
        if batch.cursor:
            f.cursor, f.saved = {"cursor": batch.cursor}, False
        if batch.text:
            if f.compiled is None:
                f.compiled = rules.compile_rules(
                    "rfc3339", f.source.services, known=False, users=self.users, ruleset=f.source.ruleset
                )
            counting.AttemptCounter(f.compiled, f.tally, time.time(), 1).scan(b"\n" + batch.text)
            f.keep(batch.text)
            due = self._counted(f)
            if due:
                self._block(due)

    def _counted(self, f: Followed) -> list:
        """Takes what the tally gathered into the windows; the keys now over a limit."""
        tally = f.tally
        tally.bound(MAX_CONNECTIONS)
        rows = list(tally.series())
        if self.tracking:
            self._accounts += tracking.rows_of(tally, time.time(), history=f.history)
        f.history = False
        tally.users.clear()
        found = notify.notices(self.config, tally.successes, f.source.name, f.source.trusted)
        if found:
            self._events += [notify.event(n) for n in found]
            for n in found:
                log.info("%s: %s %s", n["kind"], n["user"], n.get("ip") or n.get("tty", ""))
            if not self.dry_run:
                self.send_mails(notify.mails(self.config, found))
        tally.rows.clear()
        tally.where.clear()
        tally.successes.clear()
        tally.local.clear()
        tally.lines = 0
        self._rows += rows
        touched = {(svc, addr) for svc, addr, t, n in rows if self.windows.add(svc, addr, t, n)}
        now = time.time()
        due = []
        for key in touched:
            hit = self.windows.over(key, now)
            if hit is not None:
                due.append((f, hit))
        return due

    # -- blocking ------------------------------------------------------------------------------
    def _block(self, due: list) -> None:
        cfg = self.cfg
        chosen = []
        for f, (service, addr, (failures, first, last)) in due:
            key = (service, addr)
            self.windows.forget(key)
            if addr in self._recent_blocks:
                continue
            if not cfg.block:
                self._say_once(None, f"not blocking {addr}: blocking is off (logins.block)", log.info)
                continue
            try:
                net = parse_network(addr)
                why = self.mgr.refusal(net)
            except NightwardenError as e:  # an unreadable allow or ignore list: fail closed, loudly
                log.error("refusing to block %s: %s", addr, e)
                continue
            except ValueError:
                continue
            reason = f"{service}: {failures} login failures in {int(last - first)} s"
            if why:
                log.info("not blocking %s: %s", addr, why)
                self._events.append(
                    ("login_ignored", addr, {"source": service, "failures": failures, "why": why})
                )
                self._cleared.append(key)
                continue
            if self.state.active_block(addr) is not None:
                self._cleared.append(key)
                continue
            chosen.append((f, service, addr, net, failures, first, last, reason))
        if not chosen:
            return
        if self.dry_run:
            for _, _, addr, _, _, _, _, reason in chosen:
                log.warning("dry run: would block %s (%s)", addr, reason)
            return
        backend = self.mgr.backend
        in_kernel = False
        if backend.fast_in_process and not self.mgr.off():
            try:
                backend.fast_block([c[3] for c in chosen], kernel_ttl(cfg.block_ttl))
                in_kernel = True
            except Exception as e:  # the block below puts the entry in place all the same
                log.warning("fast block path failed: %s", e)
        alerts = []
        for f, service, addr, net, failures, first, last, reason in chosen:
            self._recent_blocks[addr] = time.monotonic()
            try:
                result = self.mgr.block(
                    [net],
                    ttl=cfg.block_ttl,
                    reason=reason,
                    source="login-failures",
                    strict=False,
                    policy_checked=True,
                    in_kernel=in_kernel,
                )
            except NightwardenError as e:
                log.error("blocking %s: %s", addr, e)
                continue
            if not result.added:
                continue
            self._cleared.append((service, addr))
            self._events.append(
                ("login_block", addr, {"source": service, "failures": failures, "first": first, "last": last})
            )
            log.warning("blocked %s: %s", addr, reason)
            if cfg.alert:
                alerts.append(
                    alert_fields(
                        self.config,
                        service,
                        addr,
                        failures,
                        first,
                        last,
                        f.lines_naming(addr, cfg.alert_lines),
                    )
                )
        while len(self._recent_blocks) > MAX_KEYS:
            self._recent_blocks.popitem(last=False)
        if alerts:
            self.send_alerts(alerts)

    # -- state -----------------------------------------------------------------------------------
    def _commit(self) -> None:
        """The attempts, the cursors and the events in one transaction."""
        now = time.time()
        while self._recent_blocks and next(iter(self._recent_blocks.values())) < time.monotonic() - 60:
            self._recent_blocks.popitem(last=False)
        unsaved = [f for f in getattr(self, "followed", []) if f.held and not f.saved]
        if self.dry_run or not hasattr(self, "store"):
            self._rows, self._cleared, self._events, self._accounts = [], [], [], []
            return
        if not (self._rows or self._cleared or self._events or unsaved or self._accounts):
            return
        accounts, self._accounts = self._accounts, []
        from .job import _minutes

        cleared = set(self._cleared)
        rows = [r for r in _minutes(self._rows, now - self.longest) if (r[0], r[1]) not in cleared]
        with self.state:
            self.store.add(rows)
            self.store.prune(now - self.longest)
            for service, addr in cleared:
                self.store.clear(service, addr)
            for f in unsaved:
                cursor = dict(f.cursor or {})
                cursor["conns"] = f.tally.state(SAVED_CONNECTIONS)
                self.state.set_cursor(f.source.key, cursor)
                f.saved = True
            for kind, addr, fields in self._events:
                self.state.add_event(kind, addr, **fields)
            if accounts:
                self.accounts.add(accounts)
                self.accounts.prune(now - max(self.longest, self.cfg.dist_interval, tracking.HOUR))
        self._rows, self._cleared, self._events = [], [], []
        if accounts:
            self._track()

    def _track(self) -> None:
        """Distributed attacks and logins, login tracking, over what was just written."""
        actions = tracking.decide(self.config, self.state)
        mails = []
        for action, blocked in tracking.apply(self.config, self.state, self.mgr, actions, False):
            log.warning("%s: %s; blocked %s", action.kind, action.reason, ", ".join(blocked) or "nothing")
            if self.cfg.alert:
                mails.append((action.template, tracking.fields(self.config, action, blocked)))
        if mails:
            self.send_mails(mails)


def alert_fields(
    config, service: str, addr: str, failures: int, first: float, last: float, lines: list
) -> dict:
    """lfd's alert: IP, service, failures, interval, how it is blocked, the log lines."""
    cfg = config.logins
    clock = lambda t: time.strftime("%H:%M:%S", time.localtime(t))  # noqa: E731
    return {
        "ip": addr,
        "service": service,
        "count": failures,
        "text": f"{failures} failures from {clock(first)} to {clock(last)}",
        "interval": cfg.intervals.get(service) or cfg.interval,
        "block": (
            f"temporary, {cfg.block_ttl} s (escalates after {config.blocks.perm_block_count} blocks)"
            if cfg.block_ttl
            else "until purged"
        ),
        "loglines": "\n".join(lines[-cfg.alert_lines :]) or "(not available)",
    }
