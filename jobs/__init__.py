"""The job registry. A job module is imported only when that job runs.

A job module exposes NAME, add_arguments(parser) and run(ctx) -> Result.
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
    schedule: str
    daily: bool       # part of `nightwarden daily`


JOBS: dict[str, JobInfo] = {j.name: j for j in [
    JobInfo("expire", "nightwarden.jobs.expire",
            "end blocks whose time is up; restore the base rules if they vanished",
            "*/5 * * * *", True),
    JobInfo("login-failures", "nightwarden.jobs.login_failures.job",
            "count login failures in the auth logs or the journal; block brute-force sources",
            "* * * * *", True),
    JobInfo("quarantine", "nightwarden.jobs.quarantine.job",
            "sweep /tmp, /dev/shm, /var/tmp for suspicious files into a restorable tar archive",
            "*/5 * * * *", True),
    JobInfo("integrity", "nightwarden.jobs.integrity.job",
            "compare the watched files with the signed database (init, check, update, show, keygen)",
            "15 4 * * *", True),
    JobInfo("scan-history", "nightwarden.jobs.scan_history.job",
            "the scan history analysed: top sources, ports, subnets, trends, recommendations",
            "10 6 * * *", True),
    JobInfo("purge", "nightwarden.jobs.purge",
            "weekly: remove dynamic blocks, keep permanent ones, reconcile kernel and state",
            "30 3 * * sun", False),
    JobInfo("report", "nightwarden.jobs.report.job",
            "the daily report: auth failures and logins, blocks, scans, integrity, files; mailed",
            "0 6 * * *", True),
]}


def load(name: str) -> ModuleType:
    return importlib.import_module(JOBS[name].module)


def daily_order() -> list[str]:
    """Jobs of the daily run in order; the report comes last so it sees the others' results."""
    names = [j.name for j in JOBS.values() if j.daily and j.name != "report"]
    return names + (["report"] if "report" in JOBS else [])
