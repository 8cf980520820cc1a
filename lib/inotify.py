"""Linux inotify through the C library: a descriptor to select on, watches, and the events
read from it. (The calls are four; a library for them would be more code than this.)"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import NamedTuple

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
_NONBLOCK = os.O_NONBLOCK
_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
READ_SIZE = 256 << 10  # one read takes at most this much of the queue

_libc = ctypes.CDLL(None, use_errno=True)


class Event(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: bytes  # b"" for an event on the watched object itself


class Inotify:
    """One inotify instance (non-blocking, close-on-exec). Watches never follow a symlink."""

    def __init__(self):
        fd = _libc.inotify_init1(_NONBLOCK | _CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify: {os.strerror(err)}")
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def add(self, path: str | bytes | os.PathLike, mask: int) -> int:
        """A watch on path (IN_DONT_FOLLOW always); its descriptor. OSError when refused."""
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), mask | IN_DONT_FOLLOW)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fsdecode(path))
        return wd

    def remove(self, wd: int) -> None:
        _libc.inotify_rm_watch(self.fd, wd)  # a watch the kernel already dropped: nothing to do

    def read(self, rounds: int = 16) -> list[Event]:
        """The events waiting now (at most `rounds` reads of READ_SIZE: bounded work)."""
        out: list[Event] = []
        for _ in range(rounds):
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            pos = 0
            while pos + _HEADER.size <= len(data):
                wd, mask, cookie, length = _HEADER.unpack_from(data, pos)
                pos += _HEADER.size
                name = data[pos : pos + length].rstrip(b"\0")
                pos += length
                out.append(Event(wd, mask, cookie, name))
            if len(data) < READ_SIZE // 2:
                break
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
