"""Quarantine on arrival (quarantine.follow = true): the resident listener watches the swept
directories with inotify (a file closed after writing, moved in, created, or its mode or owner
changed; a new directory is watched at once) and sweeps the top-level entries that changed,
after `follow_delay` seconds of quiet (at most half a second after the first event). The sweep
is the job's own, race-free walk with its bounds (files, sizes, time) per burst, under the job's
lock: while the scheduled sweep runs, what arrived waits for it. An overflowing inotify queue,
or more directories than can be watched, falls back to a whole sweep. Alert mails: at most one
a minute, with every finding since the last one.
"""

from __future__ import annotations

import argparse
import errno
import os
import selectors
import threading
import time
from pathlib import Path

from nightwarden.lib import inotify
from nightwarden.lib.errors import NightwardenError
from nightwarden.lib.logsetup import get
from nightwarden.lib.threads import background

log = get("quarantine")
EVENTS = (
    inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_CREATE | inotify.IN_ATTRIB | inotify.IN_ONLYDIR
)
MAX_WATCHES = 8192  # directories watched; beyond, a burst anywhere sweeps everything
LONGEST_WAIT = 0.5  # seconds from the first event of a burst to its sweep, at most
MAIL_EVERY = 60.0  # seconds between two alert mails


class QuarantineFollower(threading.Thread):
    def __init__(self, config, dry_run: bool = False, mail: bool = True):
        super().__init__(name="quarantine", daemon=True)
        self.config = config
        self.dry_run = dry_run
        self.mail = mail
        self.stopping = threading.Event()
        self.ready = threading.Event()  # the watches are in place (tests, bench)
        self.watches: dict[int, tuple[Path, Path]] = {}  # wd -> (root, directory)
        self.pending: dict[Path, set[str]] = {}  # root -> top-level names that changed
        self.everything = False  # an overflow, or a directory not watched: sweep it all
        self.first = self.last = 0.0
        self.sweeps = 0
        self.findings: list[str] = []  # not mailed yet
        self.archive = "-"
        self.last_mail = 0.0
        self.full_warned = False
        self.said: set[str] = set()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.join(timeout)

    def run(self) -> None:
        from .settings import watched_dirs

        background()  # the listener's receive loop comes first

        self.ino = inotify.Inotify()
        sel = selectors.DefaultSelector()
        sel.register(self.ino, selectors.EVENT_READ)
        try:
            for root in watched_dirs(self.config):
                self._watch_tree(root, root)
            self.ready.set()
            while not self.stopping.is_set():
                try:
                    self._step(sel)
                except Exception as e:  # a bug, a full disk: said once, and tried again
                    if str(e) not in self.said:
                        self.said.add(str(e))
                        log.exception("quarantine on arrival: %s (tried again)", e)
                    self.stopping.wait(1.0)
        finally:
            if self.findings:
                self._mail()
            self.ino.close()

    def _step(self, sel) -> None:
        wait = 0.2
        if self.pending or self.everything:
            quiet = self.last + self.config.quarantine.follow_delay
            wait = max(0.0, min(quiet, self.first + LONGEST_WAIT) - time.monotonic())
        if sel.select(timeout=wait):
            self._events()
            return
        if (self.pending or self.everything) and not self._sweep():
            time.sleep(0.2)  # the scheduled sweep holds the lock: after it
        if self.findings and time.monotonic() - self.last_mail >= MAIL_EVERY:
            self._mail()

    # -- watches ---------------------------------------------------------------------------
    def _watch_tree(self, root: Path, top: Path) -> None:
        """A watch on `top` and every directory under it (never through a link, never onto
        another file system), while there is room."""
        try:
            dev = os.stat(root, follow_symlinks=False).st_dev
        except OSError:
            return
        stack = [top]
        while stack:
            d = stack.pop()
            if len(self.watches) >= MAX_WATCHES:
                if not self.full_warned:
                    self.full_warned = True
                    log.warning(
                        "more than %d directories under %s: a burst sweeps them all", MAX_WATCHES, root
                    )
                self.everything = True
                return
            try:
                wd = self.ino.add(d, EVENTS)
            except OSError as e:
                if e.errno == errno.ENOSPC:  # fs.inotify.max_user_watches reached
                    if not self.full_warned:
                        self.full_warned = True
                        log.warning(
                            "%s: no more inotify watches (%s): a burst sweeps everything", d, e.strerror
                        )
                    self.everything = True
                    return
                continue  # gone, or swapped for a link: the sweep deals with it
            self.watches[wd] = (root, d)
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_dev == dev:
                            stack.append(Path(e.path))
            except OSError:
                continue

    def _events(self) -> None:
        now = time.monotonic()
        events = self.ino.read()
        if not events:
            return
        if not (self.pending or self.everything):
            self.first = now
        self.last = now
        for ev in events:
            if ev.mask & inotify.IN_Q_OVERFLOW:
                self.everything = True
                continue
            where = self.watches.get(ev.wd)
            if where is None:
                continue
            if ev.mask & inotify.IN_IGNORED:
                del self.watches[ev.wd]
                continue
            root, d = where
            name = os.fsdecode(ev.name)
            path = d / name if name else d
            try:
                top = path.relative_to(root).parts[0]
            except (ValueError, IndexError):
                continue  # the root itself
            self.pending.setdefault(root, set()).add(top)
            if ev.mask & inotify.IN_ISDIR and ev.mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
                self._watch_tree(root, path)

    # -- the sweep ---------------------------------------------------------------------------
    def _sweep(self) -> bool:
        """The job's sweep of what changed, under the job's lock; False while it is busy."""
        from nightwarden.lib.lock import LockFile
        from nightwarden.lib.runner import Context

        from . import job

        lock = LockFile(self.config.run_dir / f"{job.NAME}.lock", f"job {job.NAME}")
        try:
            lock.acquire()
        except NightwardenError:
            return False
        only = None if self.everything else self.pending
        self.pending, self.everything = {}, False
        args = argparse.Namespace(action="sweep", report_only=False, no_mail=True, verbosity=-1)
        ctx = Context(self.config, args, self.dry_run, job.NAME)
        try:
            result = job.sweep(ctx, only)
        except Exception as e:  # one bad sweep does not end the watching
            log.error("sweep on arrival failed: %s", e)
            return True
        finally:
            ctx.close()
            lock.release()
        self.sweeps += 1
        found = result.details.get("findings", [])
        if found:
            log.warning("quarantine on arrival: %s", result.summary)
            self.findings += found
            self.archive = result.details.get("archive", "-")
            if time.monotonic() - self.last_mail >= MAIL_EVERY:
                self._mail()
        return True

    def _mail(self) -> None:
        found, self.findings = self.findings, []
        self.last_mail = time.monotonic()
        if not self.mail or self.dry_run:
            return
        from nightwarden.lib.mail import Mailer

        report_only = self.config.quarantine.mode == "report"
        try:
            Mailer(self.config).alert(
                "filealert",
                {
                    "count": len(found),
                    "action": "report only" if report_only else "quarantined into the archive (on arrival)",
                    "archive": self.archive,
                    "files": "\n".join(found[:500]),
                },
            )
        except Exception as e:  # mail must never stop the watching
            log.warning("quarantine alert not sent: %s", e)
