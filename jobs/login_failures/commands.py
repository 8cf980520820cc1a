"""The login-failure job's own commands: `nightwarden logs test` (explain.py)."""

from __future__ import annotations

from nightwarden.lib.cli.command import Command


def _logs(args) -> int:
    from . import explain

    return explain.run(args)


def _arguments(parser) -> None:
    from . import explain

    explain.arguments(parser)


COMMANDS = [
    Command(
        "logs",
        "test the login-failure rules on a log: what each line matched (logs test FILE)",
        _logs,
        _arguments,
        read_only=True,
        needs_config=False,
    )
]
