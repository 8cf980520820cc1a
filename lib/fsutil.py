"""Small file-system helpers with security habits: atomic writes, private directories, and
bounded reads of files that must be regular files."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import CantCreateError, DataError, NoInputError


def ensure_dir(path: Path, mode: int = 0o750) -> Path:
    """Create a directory (and parents) if missing. Refuses a symlink in its place."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as e:
        raise CantCreateError(f"{path}: cannot create directory: {e.strerror}") from None
    if path.is_symlink():
        raise CantCreateError(f"{path}: is a symbolic link; refusing to use it")
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write data to path so that readers see either the old or the new file, never half."""
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise CantCreateError(f"{path}: cannot write: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def open_regular(path: Path | str, what: str = "file", follow: bool = False) -> tuple[int, os.stat_result]:
    """Open a file for reading that must be a regular file: a symbolic link is not followed
    (unless `follow`: root's own configuration may be links), a FIFO or a device never blocks
    the open (O_NONBLOCK) and is refused after it, as is a directory. FileNotFoundError passes
    through; every other refusal is a DataError (NoInputError when permission is denied)
    naming the file. Returns (descriptor, its fstat)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{path}: the {what} is a symbolic link; not followed") from None
        if e.errno == errno.EACCES:
            raise NoInputError(f"{path}: cannot read the {what}: {e.strerror}") from None
        raise DataError(f"{path}: cannot open the {what}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise DataError(f"{path}: the {what} is {kind}; refused")
    return fd, st


def read_regular(path: Path | str, limit: int, what: str = "file", follow: bool = False) -> bytes:
    """The whole content of a regular file (see open_regular) of at most `limit` bytes: a
    larger one is refused, and the read stops at the limit whatever the file does meanwhile."""
    fd, st = open_regular(path, what, follow)
    try:
        if st.st_size > limit:
            raise DataError(f"{path}: the {what} is {st.st_size:,} bytes, more than the {limit:,} allowed")
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - len(data)))
            if not chunk:
                return data
            data += chunk
        raise DataError(f"{path}: the {what} grew past the {limit:,} bytes allowed while being read")
    finally:
        os.close(fd)


def read_private(path: Path | str, limit: int, what: str = "file") -> bytes:
    """read_regular for a secret (a key, credentials): the file must also be ours and readable
    by no one else (mode 0600 or stricter); a missing one is NoInputError."""
    try:
        fd, st = open_regular(path, what)
    except FileNotFoundError:
        raise NoInputError(f"{path}: the {what} does not exist") from None
    try:
        if st.st_mode & 0o077 or st.st_uid != os.geteuid():
            raise DataError(f"{path}: the {what} must be ours and mode 0600 (it is {st.st_mode & 0o777:04o})")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise DataError(f"{path}: the {what} is larger than {limit:,} bytes")
        return data
    finally:
        os.close(fd)
