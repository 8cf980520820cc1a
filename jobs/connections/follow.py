"""The listener's connection tracking: a thread that counts every `interval` seconds (the cron
job then leaves it alone: this thread holds its lock) and blocks through the block manager."""

from __future__ import annotations

import threading

from nightwarden.lib.errors import NightwardenError
from nightwarden.lib.logsetup import get
from nightwarden.lib.threads import background

log = get("listener")


class ConnectionWatcher(threading.Thread):
    def __init__(self, config, make_blocks, send_mails, dry_run: bool = False):
        super().__init__(name="connections", daemon=True)
        self.config = config
        self.make_blocks = make_blocks
        self.send_mails = send_mails
        self.dry_run = dry_run
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.join(timeout)

    def run(self) -> None:
        from .job import alert_fields, check, watch_lock

        background()
        lock = watch_lock(self.config)
        held = False
        mgr = None
        try:
            mgr = self.make_blocks(self.config)
            while not self.stopping.is_set():
                if not held and not self.dry_run:
                    try:
                        lock.acquire()
                        held = True
                    except NightwardenError:  # the cron job is counting: next time
                        pass
                if held or self.dry_run:
                    try:
                        found = check(self.config, mgr.state, mgr, self.dry_run, log.warning)
                    except Exception as e:  # said; the listener goes on
                        log.warning("connection tracking: %s", e)
                        found = []
                    for o in found:
                        log.warning(
                            "%s: %d connections, %s", o.address, o.count, "blocked" if o.blocked else o.why
                        )
                    if found and not self.dry_run and self.config.connections.alert:
                        self.send_mails([("connectiontracking", alert_fields(self.config, found))])
                self.ready.set()
                self.stopping.wait(max(1, self.config.connections.interval))
        except Exception as e:
            log.error("connection tracking stopped: %s", e)
        finally:
            self.ready.set()
            if held:
                lock.release()
            if mgr is not None:
                mgr.state.close()
