"""The job runner: everything around a job's run(ctx) (config, lock, logging, dry-run,
timing, the row in the state database, mail, the exit code). A job never exits itself."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from types import ModuleType

from .errors import EXIT_SOFTWARE, NightwardenError, translate
from .lock import LockFile
from .logsetup import get

log = get("runner")


@dataclass
class Result:
    """What a job returns: its exit code (0, or 1-63 for findings) and a one-line summary."""

    exit_code: int = 0
    summary: str = ""
    details: dict = field(default_factory=dict)


def silence_stdout() -> None:
    """Standard output's reader went away: what is still printed goes nowhere (and Python's
    flush at exit does not fail either)."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


class Context:
    """What a job gets: config, arguments, dry-run flag, and lazily opened shared services."""

    def __init__(self, config, args=None, dry_run: bool = False, job: str = ""):
        self.config = config
        self.args = args
        self.dry_run = dry_run
        self.job = job
        self.log = get(job or "cli")
        self._state = self._firewall = self._blocks = self._mailer = None
        self.defer_mail = False  # a job's mail waits in the outbox until its work is done
        self.output_closed = False

    @property
    def state(self):
        if self._state is None:
            from .state import State

            self._state = State(self.config.db_path, dry_run=self.dry_run)
        return self._state

    @property
    def firewall(self):
        if self._firewall is None:
            from .firewall import open_backend

            self._firewall = open_backend(self.config, dry_run=self.dry_run)
        return self._firewall

    @property
    def blocks(self):
        if self._blocks is None:
            from .blocks import BlockManager

            self._blocks = BlockManager(self.config, self.state, self.firewall, notify=self._escalation_alert)
        return self._blocks

    def _escalation_alert(self, escalation) -> None:
        what = "blocked permanently" if escalation.kind == "permanent" else "network blocked"
        self.mailer.alert(
            "permblock",
            {
                "ip": escalation.address,
                "what": what,
                "count": escalation.count,
                "interval": escalation.interval,
                "reason": (
                    f"{escalation.count} temporary blocks within {escalation.interval} s"
                    if escalation.kind == "permanent"
                    else f"{escalation.count} addresses of {escalation.network} blocked within "
                    f"{escalation.interval} s"
                ),
            },
        )

    @property
    def mailer(self):
        if self._mailer is None:
            from .mail import Mailer

            self._mailer = Mailer(self.config, dry_run=self.dry_run, deferred=self.defer_mail)
        return self._mailer

    def say(self, text: str) -> None:
        """Terse console output for a person; silent with -q. A reader that went away
        (`| head`) is not the job's failure: the output stops, the work goes on."""
        if getattr(self.args, "verbosity", 0) >= 0 and not self.output_closed:
            try:
                print(text, flush=True)
            except BrokenPipeError:
                silence_stdout()
                self.output_closed = True

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None


def run_job(module: ModuleType, config, args=None, dry_run: bool = False, done=None) -> int:
    """Run one job under its lock; record the run; return the exit code. done(code, summary,
    seconds) is called once the job finished (the daily run's one line per job)."""
    name = module.NAME
    ctx = Context(config, args, dry_run, name)
    ctx.defer_mail = True
    lock = LockFile(config.run_dir / f"{name}.lock", f"job {name}")
    started = time.monotonic()
    try:
        lock.acquire()
    except NightwardenError as e:
        log.error("%s", e)
        if done is not None:
            done(e.exit_code, str(e), 0.0)
        return e.exit_code
    run_id = None
    try:
        # a dry run writes nothing; an action that only looks (quarantine list) is no run of the job
        counted = getattr(module, "is_run", lambda args: True)(args)
        run_id = None if (dry_run or not counted) else ctx.state.start_run(name, dry_run)
        said = True  # an error line was printed: the closing line need not repeat it
        try:
            result = module.run(ctx)
            code, summary = result.exit_code, result.summary
            said = False
        except NightwardenError as e:
            log.error("%s: %s", name, e)
            code, summary = e.exit_code, str(e)
        except Exception as e:
            known = translate(e)
            if known is not None:  # the disk, the state database: one line, its exit code
                log.error("%s: %s", name, known)
                code, summary = known.exit_code, str(known)
            else:  # a bug: one line on stderr, the traceback in the log file
                log.exception("%s: internal error: %s: %s", name, e.__class__.__name__, e)
                code, summary = EXIT_SOFTWARE, f"internal error: {e.__class__.__name__}: {e}"
        elapsed = time.monotonic() - started
        if run_id is not None:
            ctx.state.end_run(run_id, code, summary)
        level = logging.INFO if code < 64 or said else logging.WARNING
        log.log(level, "%s finished in %.2f s, exit %d: %s", name, elapsed, code, summary)
        if done is not None:
            done(code, summary, elapsed)
        if run_id is not None:
            _metrics(ctx)
        if not dry_run:
            _flush_outbox(ctx)
        return code
    except NightwardenError as e:
        log.error("%s", e)
        return e.exit_code
    finally:
        ctx.close()
        lock.release()


def _metrics(ctx: Context) -> None:
    """The textfile-collector file, when configured; its trouble is said, never the job's."""
    if not ctx.config.metrics.textfile_dir:
        return
    from . import metrics

    try:
        metrics.write(ctx.config, ctx.state)
    except NightwardenError as e:
        log.warning("metrics: %s", e)
    except OSError as e:
        log.warning("metrics: %s: %s", metrics.textfile(ctx.config), e.strerror)


def _flush_outbox(ctx: Context) -> None:
    from .mail import Outbox

    if not Outbox(ctx.config.outbox_dir).pending():
        return
    try:  # one connection, and no longer than one mail-server timeout
        sent, left = ctx.mailer.flush(budget=ctx.config.mail.smtp_timeout)
        if sent:
            log.info("delivered %d message(s) from the outbox", sent)
    except NightwardenError as e:
        log.warning("outbox still undeliverable: %s", e)
