"""Small file-system helpers with security habits: atomic writes, private directories."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import CantCreateError


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
