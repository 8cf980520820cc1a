"""A command of the command line that is not a job: its name, what it does, its arguments and
its handler. Each group of commands lives in one module (blocks_cmd, firewall_cmd, jobs_cmd,
schedule_cmd) with its parsers beside its handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _no_arguments(parser) -> None:
    pass


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    handler: Callable  # handler(ctx) -> exit code
    arguments: Callable = _no_arguments
    dry_run: bool = False  # takes --dry-run
    read_only: bool = False  # only looks: nothing is written to the log file
    read_only_actions: tuple[str, ...] = ()  # or only these of its `action`s look
    needs_config: bool = True  # False: handler(args), no configuration, state or sandbox
