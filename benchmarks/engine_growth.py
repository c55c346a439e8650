"""The engine's CPU time per event as its state grows, with controls for the collector
and for the heap's size.

    .venv/bin/python -m benchmarks.engine_growth                       # example config
    .venv/bin/python -m benchmarks.engine_growth --workload seed --events 400000

Feeds the worker benchmark's workload (`bench_worker.workload_events`:
``example``, the synthetic transfers on the example config; ``seed``, the seed's three
features; ``example-nine``, the example events on `benchmarks/configs/example_nine.yaml`)
to `Engine.evaluate_many` in runs of ``--batch`` events, on one core, and
prints the CPU time per event of each slice of ``--slice`` events (the example workload
has 100,000 events a day: 200,000 are two days). Each arm runs in a process of its own,
``--reps`` times:

- ``frozen``: the collector as the stream worker and the replay set it
  (`settled_memory(BATCH_YOUNG_THRESHOLD)`: survivors frozen, young threshold 50,000);
- ``off``: the collector off (`gc.disable`): what the collector costs, slice by slice;
- ``ballast``: as ``frozen``, after ``--ballast-mb`` of unrelated live objects were made
  (frozen with the rest, never walked by the collector nor touched by the engine): what
  a big heap the engine does not use costs it. It does not tell a state that outgrew
  the caches from windows that hold more entries.

Results: ``benchmarks/results/engine_growth_<workload>.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_worker import WORKLOADS

ARMS = ("frozen", "off", "ballast")
RESULTS = Path(__file__).parent / "results"


def run_arm(arm: str, workload: str, events: int, slice_: int, batch: int, seed: int,
            ballast_mb: int) -> dict[str, Any]:
    """One arm in this process: CPU µs per event of each slice, and the peak RSS."""
    import resource

    from benchmarks.bench_engine import pin_one_core
    from benchmarks.bench_worker import workload_engine, workload_events
    from riskengine.longlived import BATCH_YOUNG_THRESHOLD, settled_memory

    pin_one_core()
    stream = list(workload_events(workload, events, seed))
    engine = workload_engine(workload)
    ballast: list[Any] = []
    if arm == "ballast":
        ballast = [(random.random(), str(i), [i]) for i in range(ballast_mb * 4000)]
        random.shuffle(ballast)  # ~250 B per item; only the list's order is shuffled
    evaluate = engine.evaluate_many
    slices: list[float] = []
    if arm == "off":
        gc.disable()
    with settled_memory(None if arm == "off" else BATCH_YOUNG_THRESHOLD):
        for start in range(0, events, slice_):
            began = time.process_time()
            end = min(start + slice_, events)
            for at in range(start, end, batch):
                evaluate("transfer", stream[at:min(at + batch, end)])
            done = end - start
            slices.append((time.process_time() - began) / done * 1e6)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"arm": arm, "us_per_event": [round(s, 2) for s in slices],
            "mean_us": round(statistics.fmean(slices), 2), "peak_rss_mb": round(peak_mb, 1),
            "ballast_items": len(ballast)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine_growth",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=WORKLOADS, default="example")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--slice", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per evaluate_many")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--arms", nargs="*", choices=ARMS, default=list(ARMS))
    parser.add_argument("--ballast-mb", type=int, default=400)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm, here
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if min(args.events, args.slice, args.batch, args.reps) < 1:
        parser.error("--events, --slice, --batch and --reps must be positive")
    if args.ballast_mb < 0:
        parser.error("--ballast-mb must not be negative")
    args.arms = list(dict.fromkeys(args.arms))
    if not args.arms:
        parser.error("--arms needs at least one arm")
    if args.arm is not None:
        print(json.dumps(run_arm(args.arm, args.workload, args.events, args.slice,
                                 args.batch, args.seed, args.ballast_mb)))
        return 0
    from benchmarks.bench_engine import machine

    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for arm in args.arms:  # in turn, so drift on the machine touches every arm alike
            out = subprocess.run(  # the exit code is checked below, with its stderr
                [sys.executable, "-m", "benchmarks.engine_growth", "--arm", arm,
                 "--workload", args.workload, "--events", str(args.events), "--slice",
                 str(args.slice), "--batch", str(args.batch), "--seed", str(args.seed),
                 "--ballast-mb", str(args.ballast_mb)],
                capture_output=True, text=True, cwd=Path(__file__).parent.parent)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                print(f"the {arm} arm failed (exit {out.returncode})", file=sys.stderr)
                return 1
            run = {"rep": rep + 1, **json.loads(out.stdout)}
            runs.append(run)
            print(f"{arm:<8} rep {rep + 1}: " + " ".join(f"{s:5.1f}" for s in
                                                         run["us_per_event"])
                  + f"  | mean {run['mean_us']:.1f} µs, peak RSS {run['peak_rss_mb']:.0f} MB",
                  flush=True)
    print(f"\nCPU µs per event by slice of {args.slice:,} events (median of "
          f"{args.reps} runs), {args.workload} workload")
    summary = {}
    for arm in args.arms:
        mine = [r["us_per_event"] for r in runs if r["arm"] == arm]
        medians = [round(statistics.median(col), 2) for col in zip(*mine, strict=True)]
        summary[arm] = {"us_per_event": medians,
                        "mean_us": round(statistics.fmean(medians), 2),
                        "last_over_first": round(medians[-1] / medians[0], 2)}
        print(f"{arm:<8} " + " ".join(f"{s:5.1f}" for s in medians)
              + f"  | mean {summary[arm]['mean_us']:.1f}, last/first "
                f"{summary[arm]['last_over_first']:.2f}×")
    output = args.output or RESULTS / f"engine_growth_{args.workload}.json"
    output.write_text(json.dumps({
        "command": "python -m benchmarks.engine_growth " + " ".join(argv or sys.argv[1:]),
        "machine": machine(), "settings": {k: v for k, v in vars(args).items()
                                           if k not in ("arm", "output")},
        "summary": summary, "runs": runs}, indent=2, default=str) + "\n")
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
