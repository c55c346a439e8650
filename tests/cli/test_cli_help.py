"""Every command's --help renders (option texts are rich markup: a stray bracket breaks
the help of the whole command)."""

from __future__ import annotations

import pytest

from riskengine.cli import app
from tests.cli.clitools import run

COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands
                  if c.callback is not None)


def test_every_command_is_listed() -> None:
    assert {"generate", "replay", "backfill", "backtest", "validate", "serve", "demo",
            "worker"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_renders(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--help" in result.output
