"""A run of events scored by the models at once (`Engine.decide_parsed`, `evaluate_many`:
the stream worker's batches) decides exactly as each event alone: same scores, same
failures, same remembered decisions; a model whose number for a row depends on the other
rows of a run is scored row by row."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from riskengine import Engine
from riskengine.decision import Decision
from riskengine.models.onnx import OnnxScorer
from riskengine.stream.base import PoisonMessage
from riskengine.stream.worker import Decided, StreamWorker
from riskengine.synth import generate_transfers
from tests.models.onnx_files import batchwise, linear, logistic, lookup

T0 = 1_767_571_200_000
RULES = [{"id": "risky", "when": 'model("m") >= 0.6', "score": 60},
         {"id": "busy", "when": "n_1h >= 3", "score": 30}]


def config(model: Path, output: str = "probability",
           inputs: tuple[str, ...] = ("n_1h", "amount")) -> dict[str, Any]:
    return {"scenes": {"pay": {
        "schema": {"acct": "str", "amount": "float"},
        "features": [{"name": "n_1h", "func": "count", "by": ["acct"], "window": "1h"},
                     {"name": "sum_1h", "func": "sum", "target": "amount", "by": ["acct"],
                      "window": "1h"}],
        "models": {"m": {"uri": str(model), "inputs": list(inputs), "output": output}},
        "rules": RULES, "policy": {"review_at": 50, "reject_at": 80}}}}


def events(seed: int, n: int, amounts: tuple[float, ...]) -> list[dict[str, Any]]:
    """Repeat accounts, disorder, and duplicate ids (some within a batch, some far)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        if out and rng.random() < 0.1:
            out.append(dict(rng.choice(out[-5:] if rng.random() < 0.5 else out)))
            continue
        out.append({"event_id": f"e{i}", "acct": rng.choice("ABCDE"),
                    "timestamp": T0 + i * 20_000 + rng.choice([0, 0, -90_000, -400_000]),
                    "amount": rng.choice(amounts)})
    return out


def view(d: Decision) -> dict[str, Any]:
    out = d.to_dict()
    del out["latency_ms"]
    return out


def one_by_one(cfg: dict[str, Any], stream: list[dict[str, Any]]) -> tuple[Any, ...]:
    engine = Engine.from_config(cfg)
    views = [view(engine.evaluate("pay", dict(e))) for e in stream]
    models = engine.scene("pay").models
    assert models is not None
    return views, engine.stats(), dict(models.failures)  # type: ignore[attr-defined]


def in_runs(cfg: dict[str, Any], stream: list[dict[str, Any]], size: int
            ) -> tuple[Any, ...]:
    engine = Engine.from_config(cfg)
    parse = engine.scene("pay").parse
    views: list[dict[str, Any]] = []
    for start in range(0, len(stream), size):
        batch = [parse(dict(e)) for e in stream[start:start + size]]
        views += [view(d) for d in engine.decide_parsed("pay", batch)]
    models = engine.scene("pay").models
    assert models is not None
    return views, engine.stats(), dict(models.failures)  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [1, 2, 7, 97, 1000])
def test_runs_decide_as_each_event_alone(tmp_path: Path, size: int) -> None:
    cfg = config(logistic(tmp_path / "m.onnx", [0.5, -0.01]))
    stream = events(1, 600, (1.0, 10.0, 55.5, 300.0))
    expected = one_by_one(cfg, stream)
    assert in_runs(cfg, stream, size) == expected
    assert any(v["duplicate"] for v in expected[0]) and any(v["late"] for v in expected[0])
    assert {v["decision"] for v in expected[0]} >= {"accept", "review"}


def test_rows_a_model_refuses_fail_alone_in_a_run(tmp_path: Path) -> None:
    # 0 and 1 are fine, 7 is outside the table: those rows fail, the others score
    cfg = config(lookup(tmp_path / "m.onnx", 1), output="value", inputs=("amount",))
    stream = events(2, 300, (0.0, 1.0, 7.0))
    expected = one_by_one(cfg, stream)
    assert expected[2]["m"] > 0  # some rows failed
    assert in_runs(cfg, stream, 50) == expected


def test_a_model_that_reads_the_whole_run_is_scored_row_by_row(tmp_path: Path) -> None:
    path = batchwise(tmp_path / "m.onnx", [1.0, 0.01])
    cfg = config(path, output="value")
    stream = events(3, 300, (1.0, 2.0, 300.0))
    expected = one_by_one(cfg, stream)
    assert {v["features"]["model:m"] for v in expected[0]} == {0.5}
    assert in_runs(cfg, stream, 100) == expected


@pytest.mark.parametrize(("make", "output", "batch_exact"), [
    (logistic, "probability", True),
    (linear, "value", True),
    (batchwise, "value", False),
    (lambda p, w: lookup(p, len(w)), "value", False),  # refuses the probe rows
])
def test_the_load_probe_finds_which_models_score_rows_alone(
        tmp_path: Path, make: Any, output: str, batch_exact: bool) -> None:
    path = make(tmp_path / "m.onnx", [0.5, -1.25, 2.0])
    assert OnnxScorer(path.read_bytes(), 3, output, "m").batch_exact is batch_exact


def test_the_example_model_is_scored_a_run_at_a_time() -> None:
    engine = Engine.from_config(None)
    models = engine.scene("transfer").models
    assert models is not None
    scorer = models.models["fraud_gbm"].scorer  # type: ignore[attr-defined]
    assert scorer.batch_exact
    runs = []
    run = scorer._run
    scorer._run = lambda *args: runs.append(1) or run(*args)
    try:
        parse = engine.scene("transfer").parse
        batch = [parse({k: v for k, v in e.items() if k != "label"})
                 for e in generate_transfers(200, 4)]
        engine.decide_parsed("transfer", batch)
    finally:
        scorer._run = run
    assert len(runs) == 1


def test_an_event_that_breaks_the_loop_leaves_the_run_before_it_remembered(
        tmp_path: Path) -> None:
    cfg = config(logistic(tmp_path / "m.onnx", [0.5, -0.01]))
    # a key field the schema leaves open: an unhashable value breaks the engine's loop
    cfg["scenes"]["pay"]["features"].append(
        {"name": "n_dev", "func": "count", "by": ["dev"], "window": "1h"})
    good = events(4, 40, (1.0, 10.0))
    good = list({e["event_id"]: e for e in good}.values())
    poison = {"event_id": "bad", "timestamp": T0, "acct": "A", "dev": ["not", "a", "key"],
              "amount": 1.0}
    stream = [*good[:20], poison, *good[20:]]
    worker = StreamWorker(Engine.from_config(cfg), "pay")
    outcomes = worker.decide_batch([orjson.dumps(e) for e in stream], str)
    assert isinstance(outcomes[20], PoisonMessage) and outcomes[20].kind == "engine-error"
    decided = [o for o in outcomes if isinstance(o, Decided)]
    alone = Engine.from_config(cfg)
    expected = [view(alone.evaluate("pay", dict(e))) for e in good]

    def same(v: dict[str, Any]) -> dict[str, Any]:  # the poison took LSNs: they move on
        return {k: x for k, x in v.items() if k not in ("lsn", "duplicate")}

    assert [same(view(o.decision)) for o in decided] == [same(v) for v in expected]
    assert worker.engine.stats() == alone.stats()
