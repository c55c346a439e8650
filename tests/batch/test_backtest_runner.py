"""The backtest's two steps: arms per event (any runner), then accumulation (mergeable)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riskengine.batch.arms import ArmDecider
from riskengine.batch.backtest import RUNNERS, Backtest, BacktestRun, Hooks, decide_rows
from riskengine.batch.candidate import load_candidate
from riskengine.batch.metrics import ArmComparison
from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.engine import Engine
from riskengine.synth import generate_transfers

EXAMPLE_CANDIDATE = EXAMPLE_CONFIG_PATH.parent / "candidate-transfer.json"


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traffic") / "transfers.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for event in generate_transfers(3_000, 5):
            handle.write(json.dumps(event) + "\n")
    return path


def backtest_of(path: Path) -> Backtest:
    engine = Engine.from_config(None)
    return Backtest(engine, "transfer", path,
                    load_candidate(EXAMPLE_CANDIDATE, engine.scene("transfer")))


def test_partial_comparisons_merge_into_the_local_runners(traffic: Path) -> None:
    whole, run = RUNNERS["local"](backtest_of(traffic), Hooks())
    assert run.rows == 3_000 and whole.events == 3_000 and whole.transitions["candidate"]
    backtest = backtest_of(traffic)
    decider = backtest.decider()
    info = BacktestRun("transfer", str(traffic), "test", decider.versions())
    decided = list(decide_rows(decider, iter(backtest.reader()), info))
    parts = [backtest.comparison(decider) for _ in range(3)]
    for index, event in enumerate(decided):  # any split, as partitions would make
        parts[index * 7 % 3].add(event.event_id, event.timestamp, event.label, event.arms,
                                 amount=event.amount)
    merged = parts[2].merge(parts[0]).merge(parts[1])
    assert merged.to_dict() == whole.to_dict()


def test_candidate_arm_is_the_candidate_ruleset_on_the_live_features(traffic: Path) -> None:
    engine = Engine.from_config(None)
    candidate = load_candidate(EXAMPLE_CANDIDATE, engine.scene("transfer"))
    decider = ArmDecider(engine, "transfer", {"candidate": candidate})
    twin = Engine.from_config(None)
    twin.activate_ruleset("transfer", [r.to_dict() for r in candidate.rules],
                          candidate.policy.to_dict())
    with traffic.open(encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            event.pop("label")
            decision, arms = decider.decide(dict(event))
            alone = twin.evaluate("transfer", dict(event))
            assert arms["candidate"].decision == alone.decision
            assert arms["candidate"].score == alone.score
            assert list(arms["candidate"].hits) == alone.hit_ids
            assert arms["live"].decision == decision.decision


def test_an_arm_cannot_take_the_live_arms_name() -> None:
    engine = Engine.from_config(None)
    with pytest.raises(ValueError, match="live"):
        ArmDecider(engine, "transfer", {"live": engine.ruleset("transfer")})
    assert ArmComparison(["live"]).to_dict()["events"] == 0
