"""The cost of experiment arms per event: ``python -m benchmarks.bench_arms``.

The example config's transfer scene decides the same labelled demo traffic
(`riskengine.synth`) with no experiment, then with 1, 2 and 3 shadow arms (each a copy of
the champion's rules under another name, so an arm costs what the live ruleset costs),
and with a 70/15/15 split plus one shadow arm (`--without-models`: the example without
its model and the two rules reading it, so each arm's share of a cheaper event shows).
Each variant is a fresh in-memory `Engine`; the variants run in turn, several rounds, in
one process, and each round times `Engine.decide_parsed` over the stream in chunks of
1,000 events (parsed beforehand; each chunk's decisions dropped, as a service drops them
once answered), so the figures are the engine's own per-event time: features, lists,
every arm's rules, the decision. Reported: the best round per variant, as µs per event
and as the ratio to no experiment. Writes ``benchmarks/results/arms.json``
(``arms-without-models.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.procs import cpu_model
from riskengine import Engine
from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.synth import generate_transfers

RESULTS = Path(__file__).resolve().parent / "results"
SCENE = "transfer"
CHUNK = 1000


def variants(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    def shadows(n: int) -> dict[str, Any]:
        return {f"shadow{i}": {"mode": "shadow", "rules": rules} for i in range(n)}

    split = {"key": "pay_account", "salt": "bench",
             "split": {"champion": 70, "strict": 15, "loose": 15},
             "challengers": {"strict": {"rules": rules, "policy": {"review_at": 40,
                                                                    "reject_at": 70}},
                             "loose": {"rules": rules, "policy": {"review_at": 60,
                                                                   "reject_at": 90}},
                             **shadows(1)}}
    return {
        "no experiment": None,
        "1 shadow arm": {"key": "pay_account", "challengers": shadows(1)},
        "2 shadow arms": {"key": "pay_account", "challengers": shadows(2)},
        "3 shadow arms": {"key": "pay_account", "challengers": shadows(3)},
        "70/15/15 + 1 shadow": split,
    }


def run(events: int, rounds: int, models: bool = True) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG_PATH.read_text())
    scene = raw["scenes"][SCENE]
    names = list(scene.get("models", {}))
    if models:
        for model in scene.get("models", {}).values():  # read from anywhere
            model["uri"] = str(EXAMPLE_CONFIG_PATH.parent / model["uri"])
    else:  # the example without its model and the rules reading it
        scene.pop("models", None)
        scene["rules"] = [r for r in scene["rules"]
                          if not any(f'model("{name}")' in r["when"] for name in names)]
    rules = scene["rules"]
    stream = [{k: v for k, v in e.items() if k != "label"}
              for e in generate_transfers(events, seed=11)]
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, experiment in variants(rules).items():
            raw["scenes"][SCENE]["experiment"] = experiment
            engine = Engine.from_config(raw)
            parse = engine.scene(SCENE).parse
            parsed = [parse(e) for e in stream]
            gc.collect()
            gc.disable()
            started = time.perf_counter()
            for start in range(0, len(parsed), CHUNK):
                engine.decide_parsed(SCENE, parsed[start:start + CHUNK])
            seconds = time.perf_counter() - started
            gc.enable()
            per_event = seconds / len(parsed) * 1e6
            best[name] = min(best.get(name, per_event), per_event)
    base = best["no experiment"]
    return {"events": events, "rounds": rounds, "models": models, "machine": {
                "cpu": cpu_model(), "python": platform.python_version()},
            "us_per_event": best,
            "ratio": {name: value / base for name, value in best.items()},
            "added_per_arm": {name: (value - base) / base for name, value in best.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--without-models", action="store_true",
                        help="the example config without its model and the rules reading it")
    args = parser.parse_args(argv)
    result = run(args.events, args.rounds, not args.without_models)
    RESULTS.mkdir(exist_ok=True)
    name = "arms-without-models.json" if args.without_models else "arms.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print("| variant | µs per event (best) | × no experiment |")
    print("|---|---:|---:|")
    for name, value in result["us_per_event"].items():
        print(f"| {name} | {value:.2f} | {result['ratio'][name]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
