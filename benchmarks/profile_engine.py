"""Where riskengine spends its time on the seed workload (pyinstrument, sampling).

``python -m benchmarks.profile_engine [--events N] [--chunk C]`` runs ``Engine.evaluate``
(or ``evaluate_many`` with ``--chunk``) over the benchmark workload under pyinstrument and
writes ``benchmarks/results/profile_engine.txt`` (call tree) and ``profile_engine.json``
(functions by self time and by total time, in % of the run). Needs
``pip install pyinstrument``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from benchmarks.bench_engine import RESULTS, SCENE, blocks, engine_config, fresh, pin_one_core
from benchmarks.workload import WorkloadSpec, generate


def flatten(root: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Self time and total time per function (total counted once per call stack)."""
    own: dict[str, float] = defaultdict(float)
    total: dict[str, float] = defaultdict(float)

    def walk(frame: Any, on_stack: frozenset[str]) -> None:
        if frame.is_synthetic:
            return
        where = re.sub(r" object at 0x[0-9a-f]+", "", str(frame.file_path_short))
        name = f"{frame.function} ({where}:{frame.line_no})"
        own[name] += frame.total_self_time
        if name not in on_stack:
            total[name] += frame.time
        for child in frame.children:
            walk(child, on_stack | {name})

    walk(root, frozenset())
    return own, total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_engine")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=0, help="use evaluate_many(chunk)")
    parser.add_argument("--schema", action="store_true", help="with the seed schema")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is missing: .venv/bin/pip install pyinstrument", file=sys.stderr)
        return 2
    from riskengine import Engine

    pin_one_core()
    events = fresh(generate(WorkloadSpec(events=args.events, seed=args.seed)))
    engine = Engine.from_config(engine_config(args.schema))
    profiler = Profiler(interval=0.0005)
    profiler.start()
    if args.chunk:
        for chunk in blocks(events, args.chunk):
            engine.evaluate_many(SCENE, chunk)
    else:
        evaluate = engine.evaluate
        for e in events:
            evaluate(SCENE, e)
    profiler.stop()

    session = profiler.last_session
    root = session.root_frame() if session else None
    if root is None:
        print("no samples", file=sys.stderr)
        return 1
    own, total = flatten(root)
    run = root.time
    mode = f"evaluate_many({args.chunk})" if args.chunk else "evaluate"

    def top(table: dict[str, float]) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[: args.top]
        return [{"function": k, "seconds": round(v, 3), "percent": round(100 * v / run, 1)}
                for k, v in ranked]

    RESULTS.mkdir(parents=True, exist_ok=True)
    tree = profiler.output_text(unicode=True, color=False, show_all=False)
    (RESULTS / "profile_engine.txt").write_text(tree)
    result = {"events": args.events, "mode": mode, "schema": args.schema,
              "seconds": round(run, 3), "events_per_second_under_profiler": round(
                  args.events / run) if run else None,
              "self_time": top(own), "total_time": top(total)}
    (RESULTS / "profile_engine.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{mode}: {args.events:,} events in {run:.2f}s under the profiler")
    print("\nself time")
    for row in result["self_time"]:
        print(f"{row['percent']:5.1f}%  {row['function']}")
    print("\ntotal time")
    for row in result["total_time"]:
        print(f"{row['percent']:5.1f}%  {row['function']}")
    print(f"\nwritten {RESULTS / 'profile_engine.txt'} and profile_engine.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
