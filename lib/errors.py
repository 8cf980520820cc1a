"""One error hierarchy. Each error carries its message and its exit code; only the CLI exits.

Exit codes follow sysexits(3) where one fits. Codes 1 to 63 are left to jobs, which use
them to say what they found; the job registry lists each job's (`nightwarden --help`).
"""

EXIT_OK = 0
EXIT_USAGE = 64  # bad command line
EXIT_DATAERR = 65  # bad input: an invalid address, a malformed list line, a corrupt file
EXIT_NOINPUT = 66  # an input file does not exist or cannot be read
EXIT_UNAVAILABLE = 69  # a needed tool or service is missing (firewall backend, mail server)
EXIT_SOFTWARE = 70  # an internal error: a bug, with a traceback in the log file
EXIT_CANTCREAT = 73  # an output file cannot be created
EXIT_IOERR = 74  # an input/output error
EXIT_BUSY = 75  # another run of the same job holds the lock; try again later
EXIT_NOPERM = 77  # not permitted (for example: firewall changes without root)
EXIT_CONFIG = 78  # the configuration is invalid; nothing was changed
EXIT_REFUSED = 79  # refused by policy: the address is allowed, ignored or protected
EXIT_TAMPERED = 80  # a signed database failed verification: tampered, another host, replayed


class NightwardenError(Exception):
    """Base class: a message for the user and the exit code that goes with it."""

    exit_code = EXIT_SOFTWARE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class UsageError(NightwardenError):
    exit_code = EXIT_USAGE


class DataError(NightwardenError):
    exit_code = EXIT_DATAERR


class NoInputError(NightwardenError):
    exit_code = EXIT_NOINPUT


class UnavailableError(NightwardenError):
    exit_code = EXIT_UNAVAILABLE


class CantCreateError(NightwardenError):
    exit_code = EXIT_CANTCREAT


class BusyError(NightwardenError):
    exit_code = EXIT_BUSY


class PermissionDenied(NightwardenError):
    exit_code = EXIT_NOPERM


class ConfigError(NightwardenError):
    exit_code = EXIT_CONFIG


class RefusedError(NightwardenError):
    exit_code = EXIT_REFUSED


class TamperedError(NightwardenError):
    exit_code = EXIT_TAMPERED


class FirewallError(NightwardenError):
    """The kernel refused a change; the batch was not applied."""

    exit_code = EXIT_UNAVAILABLE


EXIT_CODES = [
    (EXIT_OK, "success"),
    ("1-63", "a job found something to report: see the job's own codes below"),
    (EXIT_USAGE, "bad command line"),
    (EXIT_DATAERR, "bad input: invalid address, malformed list line, corrupt file"),
    (EXIT_NOINPUT, "an input file is missing or unreadable"),
    (EXIT_UNAVAILABLE, "a needed tool or service is unavailable (firewall, mail server)"),
    (EXIT_SOFTWARE, "internal error (traceback in the log file)"),
    (EXIT_CANTCREAT, "an output file cannot be created"),
    (EXIT_IOERR, "input/output error"),
    (EXIT_BUSY, "another run of this job holds its lock"),
    (EXIT_NOPERM, "not permitted (firewall changes need root)"),
    (EXIT_CONFIG, "invalid configuration; nothing was changed"),
    (EXIT_REFUSED, "refused: the address is allowed, ignored or protected"),
    (EXIT_TAMPERED, "a signed database failed verification (tampered, other host, replayed)"),
]


class IOFailure(NightwardenError):
    exit_code = EXIT_IOERR


def translate(exc: BaseException) -> NightwardenError | None:
    """What an error from below (the state database, the disk, a closed output) means to the
    user: one line and its exit code. None for a bug."""
    import errno

    name = type(exc).__module__ + "." + type(exc).__name__
    text = str(exc)
    if name == "sqlite3.OperationalError" and "locked" in text:
        return BusyError(
            f"the state database is busy (locked by another process for 30 s): {text}; try again later"
        )
    if name.startswith("sqlite3.") and ("disk" in text or "full" in text):
        return IOFailure(f"the state database cannot be written: {text}")
    if name in ("sqlite3.DatabaseError", "sqlite3.OperationalError") and "malformed" in text:
        return DataError(
            f"the state database is corrupt ({text}); move it aside and run "
            f"`nightwarden firewall start` to rebuild from the lists"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return IOFailure(f"{where}{exc.strerror}")
    return None
