"""Helpers for the listener's threads."""

from __future__ import annotations

import os
import threading


def background() -> None:
    """The calling thread yields the CPU to the listener's receive loop: a nicer scheduling
    priority for it alone (Linux schedules threads; lowering one needs no privilege)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except OSError:
        pass
