"""`riskengine backfill --runner spark --state-dir D`: the snapshot a service restores,
computed by key on Spark; live events after it are decided as in a replay of history +
live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from riskengine.engine import Engine
from riskengine.service.persistence import SNAPSHOT_FILE
from tests.backfilling import comparable, demo_case, hostile_case, replayed, write_jsonl
from tests.cli.clitools import run
from tests.hostile import HOSTILE_SEEDS


def live_after(config: Path, scene: str, state_dir: Path, live: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """What the service does on start with a fresh decision log: restore the snapshot."""
    engine = Engine.from_config(config).restore(state_dir / SNAPSHOT_FILE)
    return [comparable(engine.evaluate(scene, event).to_dict()) for event in live]


@pytest.mark.parametrize("seed", HOSTILE_SEEDS[:2])
def test_hostile_history_backfilled_on_spark_then_live(spark: Any, tmp_path: Path,
                                                       seed: int) -> None:
    config, scene, history, live = hostile_case(tmp_path, seed, 1_500, 1_100)
    state_dir = tmp_path / "state"
    result = run("backfill", write_jsonl(tmp_path / "history.jsonl", history), "--state-dir",
                 state_dir, "-c", config, "-s", scene, "--runner", "spark")
    assert result.exit_code == 0, result.output
    got = live_after(config, scene, state_dir, live)
    assert got == replayed(config, scene, history, live)
    assert any(d["late"] for d in got) and any(d["duplicate"] for d in got)
    restored = Engine.from_config(config).restore(state_dir / SNAPSHOT_FILE).stats()[scene]
    assert restored["pattern_keys"] > 0 and restored["remembered_ids"] > 0


def test_demo_traffic_backfilled_on_spark_equals_the_local_backfill(spark: Any,
                                                                    tmp_path: Path) -> None:
    config, scene, history, live = demo_case(2_400, 2_000)
    source = write_jsonl(tmp_path / "history.jsonl", history)
    for runner in ("local", "spark"):
        result = run("backfill", source, "--state-dir", tmp_path / runner, "--runner", runner)
        assert result.exit_code == 0, result.output
        assert "2,000" in result.stdout
    by_spark = live_after(config, scene, tmp_path / "spark", live)
    assert by_spark == live_after(config, scene, tmp_path / "local", live)
    assert by_spark == replayed(config, scene, history, live)
    assert [d["lsn"] for d in by_spark] == list(range(2_001, 2_401))


def test_spark_backfill_refuses_redis_csv_and_a_dir_that_holds_state(spark: Any,
                                                                     tmp_path: Path) -> None:
    _, _, history, _ = demo_case(300, 200)
    source = write_jsonl(tmp_path / "history.jsonl", history)
    result = run("backfill", source, "--state", "redis://127.0.0.1:1/0", "--runner", "spark")
    assert result.exit_code == 2 and "--state-dir" in result.output
    csv = tmp_path / "h.csv"
    csv.write_text("timestamp\n1\n", encoding="utf-8")
    result = run("backfill", csv, "--state-dir", tmp_path / "s", "--runner", "spark")
    assert result.exit_code == 2 and "CSV" in result.output
    assert not (tmp_path / "s").exists()
    state_dir = tmp_path / "state"
    assert run("backfill", source, "--state-dir", state_dir, "--runner", "spark"
               ).exit_code == 0
    result = run("backfill", source, "--state-dir", state_dir, "--runner", "spark")
    assert result.exit_code == 2 and "already holds state" in result.output
