"""One schedule, three ways to run it: cron.d lines, APScheduler 3.x in the foreground (or
inside the listener), and systemd timer units. Every scheduled job runs as its own process,
so a crash or a leak in one never touches the scheduler or another job."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from nightwarden.lib.config import SYSTEM_CONFIG
from nightwarden.lib.logsetup import get

from .cron import Cron, parse

log = get("schedule")

DEFAULT_COMMAND = "/usr/local/sbin/nightwarden"


@dataclass(frozen=True)
class ScheduledJob:
    job: str
    cron: Cron
    summary: str


def entries(config) -> list[ScheduledJob]:
    """The scheduled jobs in registry order; a job whose schedule is "" or "off" is left out."""
    out = []
    for name, text in config.schedule.jobs.items():
        if text.strip() in ("", "off"):
            continue
        out.append(ScheduledJob(name, parse(text), config.schema.summaries.get(name, "")))
    return out


def command(config) -> str:
    """The nightwarden program cron, timers and the scheduler start: absolute, no lookup."""
    configured = config.schedule.command
    if configured:
        return configured
    here = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if here is not None and here.name == "nightwarden" and here.is_file():
        return str(here)
    beside = Path(sys.executable).parent / "nightwarden"  # the same virtualenv
    if beside.is_file():
        return str(beside)
    found = shutil.which("nightwarden")
    return str(Path(found).resolve()) if found else DEFAULT_COMMAND


def config_args(config) -> list[str]:
    """Arguments that make a child read the same configuration as this process."""
    if config.sandbox is not None:
        return ["--sandbox", str(config.sandbox)]
    if config.files and config.files[0] != SYSTEM_CONFIG:
        return ["--config", str(config.files[0])]
    return []


def job_argv(config, job: str) -> list[str]:
    """argv of a quiet nightwarden command (a job, or `listen`) on this configuration."""
    return [command(config), *config_args(config), "-q", job]


def command_line(config, job: str) -> str:
    """job_argv as one shell-quoted line, for cron.d and unit files."""
    return " ".join(_sh(a) for a in job_argv(config, job))


def lock_dir(config) -> Path:
    return config.state_dir / "cron"


def render_cron(config) -> str:
    """The cron.d file: valid for Debian's cron (user field, no dot in the file name)."""
    sch = config.schedule
    mailto = sch.mailto or config.mail.to
    lines = [
        "# nightwarden's jobs for /etc/cron.d/nightwarden (no dot in the name: cron skips",
        "# dotted names). Made by `nightwarden schedule cron` from the schedule in the",
        "# configuration ([schedule.jobs]); `nightwarden install` puts it in place.",
        "# flock -n -o: a run still busy is skipped, and a child of the job does not keep the lock.",
        "SHELL=/bin/sh",
        f"PATH={sch.path}",
        f"MAILTO={mailto}",
        "",
    ]
    locks = lock_dir(config)
    for e in entries(config):
        argv = command_line(config, e.job)
        lines.append(f"# {e.job}: {e.summary}")
        lines.append(
            f"{' '.join(e.cron.fields):<14} {sch.user}  flock -n -o "
            f"{_sh(str(locks / (e.job + '.lock')))} {argv}"
        )
    return "\n".join(lines) + "\n"


def _sh(word: str) -> str:
    if word and all(c.isalnum() or c in "/._-+=:@%," for c in word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


DOC = "/usr/share/doc/nightwarden/nightwarden.txt"  # written by `nightwarden install`


def render_doc() -> str:
    """What the units' Documentation= points at: the commands and where to read more."""
    import io
    from contextlib import redirect_stdout

    from nightwarden.lib.cli import build_parser

    buf = io.StringIO()
    with redirect_stdout(buf):
        build_parser().print_help()
    return (
        "nightwarden: host defence (login-failure blocking, a port-scan listener, suspicious\n"
        "files, file integrity), run from cron or systemd timers and one resident listener.\n\n"
        + buf.getvalue()
        + "\nEach command has --help. `nightwarden status` shows what runs and any problem;\n"
        "`nightwarden config show` the settings in force.\n"
    )


def render_timers(config) -> dict[str, str]:
    """systemd units: nightwarden-<job>.service (oneshot) and .timer for every scheduled job."""
    out = {}
    for e in entries(config):
        argv = command_line(config, e.job)
        frequent = e.cron.fields[0] in ("*", "*/1", "*/2", "*/5", "*/10", "*/15")
        out[f"nightwarden-{e.job}.service"] = (
            f"[Unit]\nDescription=nightwarden {e.job}: {e.summary}\n"
            f"Documentation=file://{DOC}\nAfter=network-online.target\n"
            f"OnFailure=nightwarden-failed@%n.service\n\n"
            f"[Service]\nType=oneshot\nExecStart={argv}\nNice=10\nIOSchedulingClass=idle\n"
            f"StateDirectory=nightwarden\nLogsDirectory=nightwarden\n"
        )
        out[f"nightwarden-{e.job}.timer"] = (
            f"[Unit]\nDescription=nightwarden {e.job} ({' '.join(e.cron.fields)})\n\n"
            f"[Timer]\nOnCalendar={e.cron.on_calendar()}\n"
            + ("AccuracySec=1s\n" if frequent else "Persistent=true\nRandomizedDelaySec=60\n")
            + "\n[Install]\nWantedBy=timers.target\n"
        )
    # cron mails a failing job's output (MAILTO); a timer's unit says it through this one
    out["nightwarden-failed@.service"] = (
        "[Unit]\nDescription=nightwarden: mail that %i failed\n"
        f"Documentation=file://{DOC}\n\n"
        f"[Service]\nType=oneshot\nExecStart={command(config)} -q mail failed %i\n"
    )
    return out


# what quarantine on arrival needs that the listener's unit otherwise withholds: the real
# /tmp (not a private one), the swept directories writable, and the rights of the sweep (read
# and move other users' files, change their mode)
SWEEP_CAPS = "CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_CHOWN"


def render_authority_unit(config) -> str:
    """The fleet authority's unit (installed where fleet.signing_key is set)."""
    template = (Path(__file__).parent / "systemd" / "nightwarden-fleet-authority.service").read_text()
    argv = " ".join(_sh(a) for a in [command(config), *config_args(config), "-q", "fleet", "authority"])
    lines = template.splitlines()
    return "\n".join(f"ExecStart={argv}" if line.startswith("ExecStart=") else line for line in lines) + "\n"


def render_listener_unit(config) -> str:
    template = (Path(__file__).parent / "systemd" / "nightwarden-listener.service").read_text()
    argv = command_line(config, "listen")
    follow = config.quarantine.follow
    dirs = " ".join(dict.fromkeys(["/tmp", "/var/tmp", "/dev/shm", *config.quarantine.dirs]))
    lines = []
    for line in template.splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={argv}"
        elif follow and line.startswith("CapabilityBoundingSet="):
            line = f"{line} {SWEEP_CAPS}"
        elif follow and line in ("PrivateTmp=yes", "PrivateDevices=yes"):
            lines.append("# quarantine.follow watches the real ones")
            line = line.replace("=yes", "=no")
        lines.append(line)
        if follow and line.startswith("RuntimeDirectoryPreserve="):
            lines.append(f"ReadWritePaths={dirs}")
    return "\n".join(lines) + "\n"


def render_logrotate(config) -> str:
    template = (Path(__file__).parent / "systemd" / "logrotate.conf").read_text()
    return template.replace("@LOG_DIR@", str(config.log_dir)).replace("@STATE_DIR@", str(config.state_dir))


# -- APScheduler ------------------------------------------------------------------------------


def trigger(entry: ScheduledJob, timezone=None):
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(timezone=timezone, **entry.cron.apscheduler_kwargs())


def spawn_job(argv: list[str], job: str) -> int:
    """One scheduled run: the job as its own process; its output goes to our log."""
    env = {k: v for k, v in os.environ.items() if k != "NIGHTWARDEN_SANDBOX"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=6 * 3600)
    except subprocess.TimeoutExpired:
        log.error("%s: still running after 6 h; stopped", job)
        return -1
    for line in (done.stdout + done.stderr).splitlines()[-20:]:
        log.info("%s: %s", job, line)
    (log.warning if done.returncode >= 64 else log.info)("%s exited %d", job, done.returncode)
    return done.returncode


def scheduler(config):
    """An APScheduler 3.x scheduler (in a thread of its own) with every entry; not started."""
    from apscheduler.schedulers.background import BackgroundScheduler

    sch = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
    for e in entries(config):
        sch.add_job(
            spawn_job,
            trigger(e),
            args=[job_argv(config, e.job), e.job],
            id=e.job,
            name=f"nightwarden {e.job}",
        )
    return sch
