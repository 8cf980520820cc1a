"""The one seam through which nightwarden runs external commands (nft, ipset, sendmail, ...).

Commands run by absolute path, without a tty, with a time limit, and never through a shell.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from .errors import UnavailableError

SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def error_line(self) -> str:
        text = (self.stderr or self.stdout).decode("utf-8", "replace").strip()
        return " ".join(text.split("\n")[:3])[:500] or f"exit status {self.returncode}"


def which(name: str) -> str | None:
    """Absolute path of a command, from the system's sbin and bin directories only."""
    if name.startswith("/"):
        return name if shutil.which(name) else None
    return shutil.which(name, path=SEARCH_PATH)


def need(name: str) -> str:
    path = which(name)
    if path is None:
        raise UnavailableError(f"{name}: command not found in {SEARCH_PATH}")
    return path


def run(
    argv: list[str], input: bytes | None = None, timeout: float = 60, env: dict | None = None
) -> Completed:
    """Run argv; return its status and output (it does not raise on a non-zero exit)."""
    import sh

    cmd = sh.Command(argv[0])
    # sh reads output line by line unless told otherwise: 20 times slower on 50k lines
    kwargs = {
        "_tty_out": False,
        "_timeout": timeout,
        "_return_cmd": True,
        "_out_bufsize": 1 << 20,
        "_err_bufsize": 1 << 16,
        "_internal_bufsize": 1 << 20,
        "_ok_code": list(range(256)),
        "_in": input if input is not None else b"",
    }
    if env is not None:
        kwargs["_env"] = env
    try:
        done = cmd(*argv[1:], **kwargs)
    except sh.TimeoutException:
        raise UnavailableError(f"{argv[0]}: no answer within {timeout:g} s") from None
    except sh.CommandNotFound:
        raise UnavailableError(f"{argv[0]}: command not found") from None
    return Completed(list(argv), done.exit_code, done.stdout, done.stderr)
