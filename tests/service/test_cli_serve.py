"""`riskengine serve` refuses what it cannot do, clearly, before starting."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from riskengine.cli import app


def test_several_workers_need_shared_state(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--workers", "2", "--state-dir",
                                      str(tmp_path)])
    assert result.exit_code == 2
    assert "needs state shared by the workers" in result.output


def test_missing_config_and_bad_log_level(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["serve", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    level = CliRunner().invoke(app, ["serve", "--log-level", "loud"])
    assert level.exit_code == 2 and "--log-level" in level.output
