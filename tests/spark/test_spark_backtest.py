"""`riskengine backtest --runner spark` reports what `--runner local` reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.engine import Engine
from tests.cli.clitools import run
from tests.hostile import hostile_config, hostile_stream

EXAMPLE_CANDIDATE = EXAMPLE_CONFIG_PATH.parent / "candidate-transfer.json"


def reported(report: Path) -> dict[str, Any]:
    doc = json.loads((report / "report.json").read_text(encoding="utf-8"))
    run_info = doc.pop("run")
    run_info.pop("elapsed_s")
    assert run_info.pop("runner") in ("local", "spark")
    return {"run": run_info, **doc}


def test_demo_traffic_backtested_on_spark_reports_as_local(spark: Any, tmp_path: Path
                                                           ) -> None:
    source = tmp_path / "t.jsonl"
    assert run("generate", "--events", 3_000, "--seed", 21, "--output", source).exit_code == 0
    with source.open("a", encoding="utf-8") as handle:
        handle.write("{broken\n")
    for runner in ("local", "spark"):
        result = run("backtest", source, "--candidate", EXAMPLE_CANDIDATE, "--report",
                     tmp_path / runner, "--runner", runner)
        assert result.exit_code == 0, result.output
    local = reported(tmp_path / "local")
    assert local["run"]["errors"] == 1 and local["run"]["rows"] == 3_001
    assert reported(tmp_path / "spark") == local
    assert (tmp_path / "spark" / "errors.jsonl").read_text() == (
        tmp_path / "local" / "errors.jsonl").read_text()
    assert sum(t["count"] for t in local["transitions"]["candidate"]) > 0


def test_hostile_stream_with_duplicates_backtested_on_spark(spark: Any, tmp_path: Path
                                                            ) -> None:
    events, _ = hostile_stream(202, 1_500, prefix="b")
    source = tmp_path / "h.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    config = tmp_path / "h.yaml"
    config.write_text(json.dumps(hostile_config()), encoding="utf-8")
    live = Engine.from_config(config).ruleset("s").to_dict()
    live["policy"]["review_at"] = 20  # more reviews
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({"rules": live["rules"], "policy": live["policy"]}),
                         encoding="utf-8")
    for runner in ("local", "spark"):
        result = run("backtest", source, "--candidate", candidate, "-c", config, "-s", "s",
                     "--report", tmp_path / runner, "--runner", runner)
        assert result.exit_code == 0, result.output
    local = reported(tmp_path / "local")
    assert reported(tmp_path / "spark") == local
    assert sum(t["count"] for t in local["transitions"]["candidate"]) > 0
