"""The cost of a model score per event: the example engine with and without its model.

    .venv/bin/python -m benchmarks.bench_models                  # 100,000 events, 5 rounds
    .venv/bin/python -m benchmarks.bench_models --events 30000 --reps 3

Both engines load the example config; "without" leaves out the ``models:`` section and the
rules that read the model (the features stay), so the difference is the model: reading
its 13 inputs into a float32 row, one onnxruntime run, the rules reading the score. Each
round decides the same demo traffic (`riskengine.synth`, seed 7) with a fresh engine of
each kind, in alternating order, and records the engine's time per event; a third timing
is `ModelSet.score` alone on every (event, features) pair of the round (the best of three
passes), which the other jobs on a shared machine disturb least. Prints the median and the
best of the rounds. Results: ``benchmarks/results/models.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_engine import code_version, machine
from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.engine import Engine
from riskengine.longlived import BATCH_YOUNG_THRESHOLD, settled_memory
from riskengine.models import ModelSet
from riskengine.synth import generate_transfers

SCENE = "transfer"
RESULTS = Path(__file__).parent / "results" / "models.json"


def configs() -> dict[str, Any]:
    with_model = yaml.safe_load(EXAMPLE_CONFIG_PATH.read_text(encoding="utf-8"))
    without = copy.deepcopy(with_model)
    scene = without["scenes"][SCENE]
    scene.pop("models")
    scene["rules"] = [r for r in scene["rules"] if "model(" not in r["when"]]
    with_model["scenes"][SCENE]["models"]["fraud_gbm"]["uri"] = str(
        EXAMPLE_CONFIG_PATH.parent / with_model["scenes"][SCENE]["models"]["fraud_gbm"]["uri"])
    return {"with": with_model, "without": without}


def engine_us(config: dict[str, Any], events: list[dict[str, Any]]
              ) -> tuple[float, list[tuple[dict[str, Any], dict[str, Any]]]]:
    engine = Engine.from_config(copy.deepcopy(config))
    evaluate = engine.evaluate
    decided = []
    with settled_memory(BATCH_YOUNG_THRESHOLD):
        started = time.perf_counter()
        for event in events:
            decided.append(evaluate(SCENE, event))
        elapsed = time.perf_counter() - started
    pairs = [(e, d.features) for e, d in zip(events, decided, strict=True)]
    return elapsed / len(events) * 1e6, pairs


def score_us(models: ModelSet, pairs: list[tuple[dict[str, Any], dict[str, Any]]],
             passes: int = 3) -> float:
    """`ModelSet.score` per event, the best of `passes` passes over the round's pairs."""
    best = float("inf")
    for _ in range(passes):
        features = [dict(f) for _, f in pairs]
        score = models.score
        started = time.perf_counter()
        for (event, _), values in zip(pairs, features, strict=True):
            score(event, values)
        best = min(best, time.perf_counter() - started)
    return best / len(pairs) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    events = []
    for event in generate_transfers(args.events, args.seed):
        event.pop("label")
        events.append(event)
    kinds = configs()
    models = Engine.from_config(copy.deepcopy(kinds["with"])).scene(SCENE).models
    assert isinstance(models, ModelSet)
    rounds: list[dict[str, float]] = []
    for rep in range(args.reps):
        order = ("without", "with") if rep % 2 == 0 else ("with", "without")
        row: dict[str, float] = {}
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for kind in order:
            row[kind], got = engine_us(kinds[kind], events)
            if kind == "with":
                pairs = got
        row["score_alone"] = score_us(models, pairs)
        row["difference"] = row["with"] - row["without"]
        rounds.append(row)
        print(f"round {rep + 1}: without {row['without']:.1f} µs/event, with "
              f"{row['with']:.1f}, difference {row['difference']:.1f}; score alone "
              f"{row['score_alone']:.1f} µs", flush=True)
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    bests = {k: min(r[k] for r in rounds) for k in ("without", "with", "score_alone")}
    bests["difference"] = bests["with"] - bests["without"]
    for what, row in (("median", medians), ("best", bests)):
        print(f"{what}: without {row['without']:.1f} µs/event, with {row['with']:.1f} "
              f"({row['with'] / row['without']:.3f}x), difference {row['difference']:.1f} µs; "
              f"score alone {row['score_alone']:.1f} µs")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "events": args.events, "seed": args.seed, "rounds": rounds, "median": medians,
        "best": bests,
        "machine": machine(), "code": code_version(),
        "load_average": list(os.getloadavg())}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
