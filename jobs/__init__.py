"""The job registry: every job's name, module, summary, default schedule, whether it is part
of the daily run, whether it is resident, and its settings section. A job's module is imported
only when that job runs; its settings schema when the configuration is loaded.

A job module exposes NAME, add_arguments(parser) and run(ctx) -> Result. A job that says
what it found through its exit code (1-63) lists those codes here, for `--help` and README.
Schedules are cron expressions with day names (never numbers: APScheduler 3.x reads a
numeric day of week with 0 = Monday, cron with 0 = Sunday).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class JobInfo:
    name: str
    module: str
    summary: str
    schedule: str  # "off": not scheduled (the resident listener runs under systemd)
    daily: bool  # part of `nightwarden daily`
    section: str = ""  # its settings section, if it has one
    settings: str = ""  # "module:Class" of that section's schema
    resident: bool = False
    exit_codes: tuple[tuple[str, str], ...] = ()  # its findings codes and what they mean
    commands: tuple[str, ...] = ()  # modules with COMMANDS of its own (lib.cli.command.Command)
    status: str = ""  # "module:function(config, state) -> dict": its lines in `nightwarden status`


JOBS: dict[str, JobInfo] = {
    j.name: j
    for j in [
        JobInfo(
            "expire",
            "nightwarden.jobs.expire",
            "end blocks whose time is up; restore the base rules if they vanished",
            "*/5 * * * *",
            True,
        ),
        JobInfo(
            "login-failures",
            "nightwarden.jobs.login_failures.job",
            "count login failures in the auth logs or the journal; block brute-force sources",
            "* * * * *",
            True,
            "logins",
            "nightwarden.jobs.login_failures.settings:LoginSettings",
            exit_codes=(("1", "an address reached its limit and was blocked"),),
            commands=("nightwarden.jobs.login_failures.commands",),
            status="nightwarden.jobs.login_failures.job:status",
        ),
        JobInfo(
            "connections",
            "nightwarden.jobs.connections.job",
            "count connections per address; block those over connections.limit (csf's CT_LIMIT)",
            "* * * * *",
            False,
            "connections",
            "nightwarden.jobs.connections.settings:ConnectionSettings",
            exit_codes=(("1", "an address over the connection limit was blocked"),),
            status="nightwarden.jobs.connections.job:status",
        ),
        JobInfo(
            "watch",
            "nightwarden.jobs.watch.job",
            "compare the watched files and directories with the last look (csf's LF_DIRWATCH_FILE)",
            "*/5 * * * *",
            False,
            "watch",
            "nightwarden.jobs.watch.settings:WatchSettings",
            exit_codes=(("1", "a watched file or directory changed"),),
            status="nightwarden.jobs.watch.job:status",
        ),
        JobInfo(
            "mailwatch",
            "nightwarden.jobs.mailwatch.job",
            "the mail queue's length and the mails each script sent (csf's LF_QUEUE_ALERT, LF_SCRIPT_ALERT)",
            "*/5 * * * *",
            False,
            "mailwatch",
            "nightwarden.jobs.mailwatch.settings:MailWatchSettings",
            exit_codes=(("1", "the mail queue or a script went over its limit"),),
            status="nightwarden.jobs.mailwatch.job:status",
        ),
        JobInfo(
            "audit",
            "nightwarden.jobs.audit.job",
            "the server security check: sshd, accounts, cleartext and new services, modes, the firewall",
            "0 5 * * sun",
            False,
            "audit",
            "nightwarden.jobs.audit.settings:AuditSettings",
            exit_codes=(("1-7", "bits, added together: 1 low, 2 medium, 4 high findings"),),
            status="nightwarden.jobs.audit.job:status",
        ),
        JobInfo(
            "processes",
            "nightwarden.jobs.processes.job",
            "running processes: suspicious executables and names, unexpected listeners, hogs, load",
            "* * * * *",
            False,
            "processes",
            "nightwarden.jobs.processes.settings:ProcessSettings",
            exit_codes=(("1", "a suspicious process was reported for the first time"),),
        ),
        JobInfo(
            "quarantine",
            "nightwarden.jobs.quarantine.job",
            "sweep /tmp, /dev/shm, /var/tmp for suspicious files into a restorable tar archive",
            "*/5 * * * *",
            True,
            "quarantine",
            "nightwarden.jobs.quarantine.settings:QuarantineSettings",
            exit_codes=(("1", "suspicious files were found (and handled as configured)"),),
        ),
        JobInfo(
            "integrity",
            "nightwarden.jobs.integrity.job",
            "compare the watched files with the signed database (init, check, update, show, keygen)",
            "15 4 * * *",
            True,
            "integrity",
            "nightwarden.jobs.integrity.settings:IntegritySettings",
            exit_codes=(
                (
                    "1-15",
                    "bits, added together: 1 files added, 2 removed, 4 changed "
                    "(unexplained), 8 some could not be read",
                ),
            ),
            status="nightwarden.jobs.integrity.trust:status",
        ),
        JobInfo(
            "scan-history",
            "nightwarden.jobs.scan_history.job",
            "the scan history analysed: top sources, ports, subnets, trends, recommendations",
            "10 6 * * *",
            True,
            "history",
            "nightwarden.jobs.scan_history.settings:HistorySettings",
        ),
        JobInfo(
            "purge",
            "nightwarden.jobs.purge",
            "weekly: remove dynamic blocks, keep permanent ones, reconcile kernel and state",
            "30 3 * * sun",
            False,
        ),
        JobInfo(
            "prune",
            "nightwarden.jobs.prune",
            "retention: forget old job runs, events, scan history, ended blocks, reports and mail",
            "45 5 * * *",
            True,
            "retention",
            "nightwarden.jobs.prune:RetentionSettings",
        ),
        JobInfo(
            "report",
            "nightwarden.jobs.report.job",
            "the daily report: auth failures and logins, blocks, scans, integrity, files; mailed",
            "0 6 * * *",
            True,
            "report",
            "nightwarden.jobs.report.settings:ReportSettings",
        ),
        JobInfo(
            "fleet-report",
            "nightwarden.jobs.fleet.report",
            "the fleet's morning digest, read from the broker (on the authority's host; `fleet report`)",
            "off",
            False,
            "fleet",
            "nightwarden.jobs.fleet.settings:FleetSettings",
            commands=("nightwarden.jobs.fleet.commands",),
            status="nightwarden.jobs.fleet.store:status",
        ),
        JobInfo(
            "listen",
            "nightwarden.jobs.listener.job",
            "the resident port-scan listener (PortSentry's job), in the foreground",
            "off",
            False,
            "listener",
            "nightwarden.jobs.listener.settings:ListenerSettings",
            resident=True,
            status="nightwarden.jobs.listener.job:status",
        ),
    ]
}


def load_job(name: str) -> ModuleType:
    return importlib.import_module(JOBS[name].module)


def daily_order() -> list[str]:
    """Jobs of the daily run in order; the report comes last so it sees the others' results."""
    names = [j.name for j in JOBS.values() if j.daily and j.name != "report"]
    return names + (["report"] if "report" in JOBS else [])


def schema():
    """The whole configuration's schema: the shared sections and every job's."""
    from nightwarden.lib.config import Schema
    from nightwarden.lib.settings import SHARED

    sections = dict(SHARED)
    for job in JOBS.values():
        if job.settings:
            module, _, name = job.settings.partition(":")
            sections[job.section] = getattr(importlib.import_module(module), name)
    scheduled = [j for j in JOBS.values() if not j.resident]
    return Schema(sections, {j.name: j.schedule for j in scheduled}, {j.name: j.summary for j in scheduled})


def load_config(explicit: str | None = None, sandbox=None):
    """The configuration, validated against every section's schema."""
    from nightwarden.lib import config

    return config.load(explicit, sandbox, schema=schema())
