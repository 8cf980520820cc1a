"""Lock files (flock). A job's lock is taken without waiting: a busy job exits 75."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import BusyError, CantCreateError
from .fsutil import ensure_dir


class LockFile:
    """An exclusive flock on a file; the file keeps the holder's pid for `nightwarden` to show."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self.what = what
        self.fd: int | None = None

    def acquire(self, wait: float = 0) -> LockFile:
        ensure_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        except OSError as e:
            raise CantCreateError(f"{self.path}: cannot open the lock file: {e.strerror}") from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    who = f" (pid {holder})" if holder.isdigit() else ""
                    raise BusyError(f"{self.what} is already running{who}; lock {self.path}") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def holder(self) -> int | None:
        """The pid holding this lock, or None: read from /proc/locks, so that looking never
        takes the lock (a job trying it in the same instant would find it busy)."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
            with open("/proc/locks") as f:
                table = f.read(1 << 20)
        except OSError:
            return None
        ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in table.splitlines():
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 4242 fd:00:2147669 0 EOF" (a waiter's line has "->")
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == ident and fields[4].isdigit():
                return int(fields[4])
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> LockFile:
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
