"""Progress of long work on a terminal: one line on standard error, rewritten at most five
times a second, and nothing at all when standard error is not a terminal (cron, systemd)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, unit: str, total: int | None = None, enabled: bool | None = None):
        self.label = label  # what works: "quarantine"
        self.unit = unit  # what is counted: "entries examined"
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.last = 0.0
        self.shown = False

    def update(self, done: int) -> None:
        if not self.enabled or time.monotonic() - self.last < 0.2:
            return
        self.last = time.monotonic()
        of = f" of {self.total:,}" if self.total else ""
        print(f"\r{self.label}: {done:,}{of} {self.unit}", end="", file=sys.stderr, flush=True)
        self.shown = True

    def done(self, text: str = "") -> None:
        """End the line (with a last figure), if anything was shown."""
        if self.enabled and self.shown:
            print(f"\r{self.label}: {text}".ljust(40), file=sys.stderr, flush=True)
