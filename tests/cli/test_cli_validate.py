"""`riskengine validate` and `riskengine demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.cli.clitools import run
from tests.example_config import example_config


def example() -> dict[str, Any]:
    return example_config()


def test_validate_lists_scenes_features_rules_and_lists() -> None:
    result = run("validate")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "config OK" in out
    for text in ("scene transfer", "scene login", "count(pay_account.history,1h)",
                 "avg_amount_24h", "failed_logins_5m", "mule_drain", "brute_force",
                 "shadow", "version r", "blocked_devices", "blocked_ips", "review_at",
                 "fraud_gbm version m", 'model("fraud_gbm") >= 0.3'):
        assert text in out, text


def test_validate_refuses_an_invalid_rule_naming_it(tmp_path: Path) -> None:
    raw = example()
    raw["scenes"]["transfer"]["rules"][3]["when"] = "amount >= 500 and __import__('os')"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = run("validate", "--config", path)
    assert result.exit_code == 1
    assert "new_receiver_large" in result.stderr
    assert "column" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_validate_refuses_broken_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("scenes: [unclosed\n", encoding="utf-8")
    unknown_feature = tmp_path / "feature.yaml"
    raw = example()
    raw["scenes"]["login"]["features"].append("median(amount.history,1h)")
    unknown_feature.write_text(yaml.safe_dump(raw), encoding="utf-8")
    for path, message in ((broken, "not valid YAML"), (tmp_path / "missing.yaml", "missing"),
                          (unknown_feature, "median")):
        result = run("validate", "-c", path)
        assert result.exit_code == 1, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output


def test_demo_generates_replays_and_summarises(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    result = run("demo", "--offline", "--events", 3_000, "--seed", 2, "--keep", keep)
    assert result.exit_code == 0, result.output
    assert "generated 3,000 transfers" in result.stdout
    assert "precision" in result.stdout and "mule_drain" in result.stdout
    assert (keep / "transfers.jsonl").exists()
    assert len((keep / "decisions.jsonl").read_text(encoding="utf-8").splitlines()) == 3_000
