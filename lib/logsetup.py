"""Logging: terse on stderr, detailed in a log file that follows logrotate, syslog if present."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

LOGGER = "nightwarden"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return f"nightwarden: {text}"


def setup(
    verbosity: int = 0,
    log_dir: Path | None = None,
    file_level: str = "info",
    use_syslog: bool = True,
    job: str = "",
) -> logging.Logger:
    """Configure the 'nightwarden' logger. verbosity: -1 quiet, 0 normal, 1 -v, 2 -vv."""
    log = logging.getLogger(LOGGER)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.setLevel(logging.DEBUG)
    log.propagate = False

    console = logging.StreamHandler()
    console.setLevel({-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    console.setFormatter(_StderrFormatter())
    log.addHandler(console)

    if log_dir is not None:
        try:
            log_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            handler = logging.handlers.WatchedFileHandler(log_dir / "nightwarden.log")
            os.fchmod(handler.stream.fileno(), 0o640)  # whatever the umask made it
            handler.setLevel(LEVELS.get(file_level, logging.INFO))
            handler.setFormatter(
                logging.Formatter(
                    "%(asctime)s %(process)d " + (f"{job}: " if job else "") + "%(levelname)s %(message)s"
                )
            )
            log.addHandler(handler)
        except OSError as e:
            log.warning("cannot write the log file in %s: %s", log_dir, e.strerror)

    # Without /dev/log, SysLogHandler prints a traceback on every record: check first.
    if use_syslog and os.path.exists("/dev/log"):
        try:
            handler = logging.handlers.SysLogHandler(
                address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
            handler.setLevel(logging.WARNING)
            handler.setFormatter(
                logging.Formatter("nightwarden[%(process)d]: " + (f"{job}: " if job else "") + "%(message)s")
            )
            log.addHandler(handler)
        except OSError:
            pass
    return log


def get(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{name}" if name else LOGGER)
