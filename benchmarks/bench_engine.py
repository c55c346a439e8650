"""riskengine against the seed's algorithm, on one core, in one process.

Runs the same deterministic transfer workload through

- the seed transcription (``benchmarks.seed_transcription``),
- ``Engine.evaluate`` one event at a time, and
- ``Engine.evaluate_many`` over chunks,

each with and without the seed schema, several times (best and median reported). Then,
untimed: how many events the transcription gets wrong, a brute-force check of
riskengine on a sample, and the engine's bytes of state per retained event (tracemalloc).
Writes ``benchmarks/results/engine.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.procs import cpu_model
from benchmarks.reference import COUNT, DISTINCT, SUM, exact_features
from benchmarks.seed_transcription import SEED_FEATURES, SeedPipeline, truncated_events
from benchmarks.workload import HOUR_MS, WorkloadSpec, describe, generate

RESULTS = Path(__file__).resolve().parent / "results"
SCENE = "transfer"
LATENESS_MS = 5 * 60_000
TARGET_EPS = 100_000
TARGET_RATIO = 4.0
BLOCK = 10_000
RULE = (
    'features["count(pay_account.history,1h)"] > 5'
    ' and features["sum(amount#rcv_account.history,1h)"] > 5000'
    ' and features["count_distinct(rcv_account#pay_account.history,1h)"] <= 2'
)
SEED_SCHEMA = {"pay_account": "str", "rcv_account": "str", "amount": "float"}

Event = dict[str, Any]
console = Console(stderr=True)


def engine_config(schema: bool) -> dict[str, Any]:
    """The seed as a riskengine config: its three features and its rule, nothing else."""
    scene: dict[str, Any] = {
        "lateness": "5m",
        "features": list(SEED_FEATURES),
        "rules": [{"id": "mule_drain", "when": RULE, "action": "reject", "score": 100,
                   "reason": "mule"}],
        "policy": {"review_at": 50, "reject_at": 80},
    }
    if schema:
        scene["schema"] = dict(SEED_SCHEMA)
    return {"scenes": {SCENE: scene}}


def load_engine() -> Any | None:
    try:
        from riskengine import Engine
    except ImportError as exc:
        console.print(f"[yellow]riskengine Engine not importable ({exc}); "
                      "running the transcription only[/]")
        return None
    return Engine


def machine() -> dict[str, Any]:
    model = cpu_model()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "pinned_to_cpu": affinity[0] if len(affinity) == 1 else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and whether riskengine/ had uncommitted changes (read-only git)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "riskengine")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "riskengine_uncommitted_changes": None if changed is None else bool(changed)}


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  refresh_per_second=2) as progress:
        yield progress


def fresh(events: Sequence[Event]) -> list[Event]:
    """A new dict per event, as a JSON decoder would hand them over."""
    return [dict(e) for e in events]


def blocks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# Runners: each gets fresh events and returns (wall seconds, main-thread CPU seconds) of
# the processing loop. CPU time is what the loop itself used; wall time also holds whatever
# else the machine was doing.

def run_seed(events: list[Event], progress: Progress | None,
             label: str) -> tuple[float, float]:
    pipeline = SeedPipeline()
    process = pipeline.process
    parts = blocks(events, BLOCK)
    task = progress.add_task(label, total=len(events)) if progress else None
    start, cpu = time.perf_counter(), time.thread_time()
    for part in parts:
        for e in part:
            process(e)
        if progress is not None and task is not None:
            progress.advance(task, len(part))
    elapsed = time.perf_counter() - start, time.thread_time() - cpu
    if progress is not None and task is not None:
        progress.remove_task(task)
    return elapsed


def make_engine_runner(engine_cls: Any, schema: bool,
                       chunk: int | None) -> Callable[..., tuple[float, float]]:
    def run(events: list[Event], progress: Progress | None,
            label: str) -> tuple[float, float]:
        engine = engine_cls.from_config(engine_config(schema))
        task = progress.add_task(label, total=len(events)) if progress else None
        if chunk is None:
            evaluate = engine.evaluate
            parts = blocks(events, BLOCK)
            start, cpu = time.perf_counter(), time.thread_time()
            for part in parts:
                for e in part:
                    evaluate(SCENE, e)
                if progress is not None and task is not None:
                    progress.advance(task, len(part))
        else:
            evaluate_many = engine.evaluate_many
            chunks = blocks(events, chunk)
            per_block = max(1, BLOCK // chunk)
            start, cpu = time.perf_counter(), time.thread_time()
            for i, c in enumerate(chunks):
                evaluate_many(SCENE, c)
                if progress is not None and task is not None and i % per_block == 0:
                    progress.advance(task, per_block * chunk)
        elapsed = time.perf_counter() - start, time.thread_time() - cpu
        if progress is not None and task is not None:
            progress.remove_task(task)
        return elapsed
    return run


def timed(runners: dict[str, Callable[..., tuple[float, float]]], events: list[Event],
          reps: int, warmup: int, progress: Progress | None) -> dict[str, dict[str, Any]]:
    """Interleave repetitions of every runner; report best and median events/s."""
    for name, run in runners.items():
        run(fresh(events[:warmup]), progress, f"warm-up {name}")
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(reps):
        for name, run in runners.items():
            batch = fresh(events)
            gc.collect()
            w, c = run(batch, progress, f"{name} {rep + 1}/{reps}")
            wall[name].append(w)
            cpu[name].append(c)
            del batch
    n = len(events)
    return {name: {
        "wall_seconds": [round(s, 4) for s in wall[name]],
        "cpu_seconds": [round(s, 4) for s in cpu[name]],
        "best_eps": round(n / min(cpu[name])),
        "median_eps": round(n / statistics.median(cpu[name])),
        "wall_best_eps": round(n / min(wall[name])),
        "wall_median_eps": round(n / statistics.median(wall[name])),
    } for name in runners}


# Correctness (untimed).

def engine_outputs(engine_cls: Any, events: list[Event],
                   chunk: int | None) -> list[tuple[Any, ...]]:
    engine = engine_cls.from_config(engine_config(False))
    if chunk is None:
        decisions = [engine.evaluate(SCENE, e) for e in events]
    else:
        decisions = []
        for c in blocks(events, chunk):
            decisions.extend(engine.evaluate_many(SCENE, c))
    return [(d.features[COUNT], d.features[SUM], d.features[DISTINCT],
             any(h.rule_id == "mule_drain" for h in d.hits), d.decision) for d in decisions]


def seed_outputs(events: list[Event]) -> list[tuple[Any, ...]]:
    pipeline = SeedPipeline()
    out = []
    for e in events:
        r = pipeline.process(e)
        if r is None:
            raise RuntimeError(f"the transcription produced no result for {e['event_id']}")
        f = r["features"]
        out.append((f[COUNT], f[SUM], f[DISTINCT], r["isAnomaly"]))
    return out


def same_features(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Counts equal; sums equal up to float rounding (the seed adds doubles)."""
    if a[0] != b[0] or a[2] != b[2]:
        return False
    if a[1] is None or b[1] is None:
        return a[1] is None and b[1] is None
    return math.isclose(a[1], b[1], rel_tol=1e-12, abs_tol=1e-6)


def correctness(engine_cls: Any, events: list[Event], chunk: int, sample_size: int,
                seed: int) -> dict[str, Any]:
    console.print("correctness: transcription, engine (both APIs), brute force sample")
    seed_out = seed_outputs(fresh(events))
    flags = truncated_events(events)
    result: dict[str, Any] = {
        "events_where_truncation_cuts_the_window": sum(flags),
        "seed_anomalies": sum(o[3] for o in seed_out),
    }
    rng = random.Random(seed)
    truncated_idx = [i for i, f in enumerate(flags) if f]
    sample = sorted(set(rng.sample(range(len(events)), min(sample_size, len(events)))
                        + rng.sample(truncated_idx, min(sample_size // 2, len(truncated_idx)))))
    exact = exact_features(events, sample)
    exact_t = {i: (v[COUNT], v[SUM], v[DISTINCT]) for i, v in exact.items()}
    result["brute_force_sample"] = len(sample)
    result["seed_wrong_in_sample"] = sum(
        not same_features(seed_out[i], exact_t[i]) for i in sample)
    if engine_cls is None:
        return result

    ours = engine_outputs(engine_cls, fresh(events), None)
    ours_many = engine_outputs(engine_cls, fresh(events), chunk)
    diff = [i for i in range(len(events)) if not same_features(seed_out[i], ours[i])]
    result.update({
        "engine_anomalies": sum(o[3] for o in ours),
        "events_where_seed_features_differ": len(diff),
        "differing_events_not_explained_by_truncation": sum(not flags[i] for i in diff),
        "decision_differs": sum(seed_out[i][3] != ours[i][3] for i in range(len(events))),
        "seed_flags_engine_does_not": sum(seed_out[i][3] and not ours[i][3]
                                          for i in range(len(events))),
        "engine_flags_seed_does_not": sum(ours[i][3] and not seed_out[i][3]
                                          for i in range(len(events))),
        "evaluate_many_differs_from_evaluate": sum(
            a != b for a, b in zip(ours, ours_many, strict=True)),
        "engine_wrong_in_sample": sum(ours[i][:3] != exact_t[i] for i in sample),
    })
    return result


# Memory (untimed, under tracemalloc).

def retained_in_horizon(events: Sequence[Event], window_ms: int = HOUR_MS) -> int:
    """Events inside the retention horizon ``t > G - L - W`` at the end of the run."""
    g = max(e["timestamp"] for e in events)
    return sum(1 for e in events if e["timestamp"] > g - LATENESS_MS - window_ms)


def engine_memory(engine_cls: Any, events: list[Event]) -> dict[str, Any]:
    console.print("memory: engine state under tracemalloc")
    rows = [tuple(e.items()) for e in events]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    first = tracemalloc.take_snapshot()
    engine = engine_cls.from_config(engine_config(False))
    for row in rows:
        engine.evaluate(SCENE, dict(row))
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    last = tracemalloc.take_snapshot()
    tracemalloc.stop()
    where = [{"line": re.sub(r" object at 0x[0-9a-f]+", "",
                            str(d.traceback[0]).removeprefix(str(Path.cwd()) + "/")),
              "bytes": d.size_diff, "blocks": d.count_diff}
             for d in last.compare_to(first, "lineno")[:10] if d.size_diff > 0]
    stats = engine.stats() if hasattr(engine, "stats") else None
    scene_stats = stats.get(SCENE) if isinstance(stats, dict) else None
    horizon = retained_in_horizon(events)
    retained, source = horizon, "events inside the retention horizon (t > G - 5m - 1h)"
    entries = None
    if isinstance(scene_stats, dict):
        if isinstance(scene_stats.get("remembered_ids"), int) and scene_stats["remembered_ids"]:
            retained = scene_stats["remembered_ids"]
            source = "engine.stats()['transfer']['remembered_ids'] (distinct events held)"
        entries = scene_stats.get("retained_entries")
    state = after - before
    del engine
    return {
        "state_bytes": state,
        "peak_bytes": peak - before,
        "retained_events": retained,
        "retained_source": source,
        "events_in_horizon": horizon,
        "bytes_per_retained_event": round(state / retained, 1) if retained else None,
        "retained_key_entries": entries,
        "bytes_per_key_entry": round(state / entries, 1) if entries else None,
        "engine_stats": stats if isinstance(stats, dict) else None,
        "top_lines": where,
    }


def state_over_time(engine_cls: Any, events: list[Event], every_ms: int = 2 * HOUR_MS
                    ) -> list[dict[str, int]]:
    """`engine.stats()` of the scene each `every_ms` of event time across the workload (a
    day): after the first L + W, entities and retained entries should level off, not
    grow with the stream (idle keys and old entries go as the scene clock moves)."""
    engine = engine_cls.from_config(engine_config(False))
    start = events[0]["timestamp"]
    next_at = start + every_ms
    out = []
    for e in events:
        if e["timestamp"] >= next_at:
            stats = engine.stats()[SCENE]
            out.append({"hours": (next_at - start) // HOUR_MS,
                        "entities": stats["entities"],
                        "retained_entries": stats["retained_entries"],
                        "remembered_ids": stats["remembered_ids"]})
            next_at += every_ms
        engine.evaluate(SCENE, dict(e))
    return out


def seed_memory(events: list[Event]) -> dict[str, Any]:
    rows = [tuple(e.items()) for e in events]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pipeline = SeedPipeline()
    for row in rows:
        pipeline.process(dict(row))
    gc.collect()
    state = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    held = sum(len(h) for h in pipeline.state.values())
    return {"state_bytes": state, "histories": len(pipeline.state), "shadows_held": held,
            "bytes_per_shadow": round(state / held, 1) if held else None}


# Report.

def summary_table(report: dict[str, Any]) -> str:
    """Markdown: events/s from CPU time (best, median), wall best, ratio to the seed."""
    runs = report["runs"]
    seed = runs["seed transcription"]
    lines = ["| run | best ev/s (CPU) | median ev/s (CPU) | best ev/s (wall) "
             "| × seed (best) | × seed (median) | target met |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in runs.items():
        met = report["targets"].get(name, {}).get("met")
        lines.append(
            f"| {name} | {r['best_eps']:,} | {r['median_eps']:,} | {r['wall_best_eps']:,} | "
            f"{r['best_eps'] / seed['best_eps']:.2f} | "
            f"{r['median_eps'] / seed['median_eps']:.2f} | "
            f"{'' if met is None else ('yes' if met else 'no')} |")
    return "\n".join(lines)


def print_report(report: dict[str, Any]) -> None:
    out = Console()
    m = report["machine"]
    out.print(f"[bold]machine[/]: {m['cpu']}, {m['cores']} cores "
              f"(pinned to cpu {m['pinned_to_cpu']}), {m['python']}")
    out.print(f"[bold]code[/]: {report['code']}")
    out.print(f"[bold]workload[/]: {report['workload']}")
    table = Table(title=f"{report['events']:,} events, {report['reps']} repetitions "
                        "(events/s from main-thread CPU time)")
    for col in ("run", "best ev/s", "median ev/s", "wall best ev/s", "× seed (best)",
                "target met"):
        table.add_column(col, justify="left" if col == "run" else "right")
    seed = report["runs"]["seed transcription"]["best_eps"]
    for name, r in report["runs"].items():
        met = report["targets"].get(name, {}).get("met")
        table.add_row(name, f"{r['best_eps']:,}", f"{r['median_eps']:,}",
                      f"{r['wall_best_eps']:,}", f"{r['best_eps'] / seed:.2f}",
                      "" if met is None else ("yes" if met else "[red]no[/]"))
    out.print(table)
    out.print({"correctness": report["correctness"]})
    out.print({"seed_memory": report["seed_memory"]})
    if report.get("memory"):
        out.print({"memory": report["memory"]})
    if report.get("state_over_time"):
        over = Table(title="engine.stats() across the day (event time)")
        for col in ("hours", "entities", "retained_entries", "remembered_ids"):
            over.add_column(col, justify="right")
        for row in report["state_over_time"]:
            over.add_row(*(f"{row[c]:,}" for c in ("hours", "entities", "retained_entries",
                                                    "remembered_ids")))
        out.print(over)
    print()
    print(summary_table(report))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=1_000, help="evaluate_many chunk size")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--sample", type=int, default=2_000, help="brute-force sample size")
    parser.add_argument("--no-schema-variants", action="store_true",
                        help="skip the runs with the seed schema")
    parser.add_argument("--seed-only", action="store_true", help="skip riskengine")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS / "engine.json")
    args = parser.parse_args(argv)

    pin_one_core()
    info = machine()
    console.print(f"generating {args.events:,} events (seed {args.seed})")
    events = generate(WorkloadSpec(events=args.events, seed=args.seed))
    engine_cls = None if args.seed_only else load_engine()

    runners: dict[str, Callable[..., tuple[float, float]]] = {"seed transcription": run_seed}
    if engine_cls is not None:
        runners["riskengine evaluate"] = make_engine_runner(engine_cls, False, None)
        runners[f"riskengine evaluate_many({args.chunk})"] = make_engine_runner(
            engine_cls, False, args.chunk)
        if not args.no_schema_variants:
            runners["riskengine evaluate, schema"] = make_engine_runner(engine_cls, True, None)
            runners[f"riskengine evaluate_many({args.chunk}), schema"] = make_engine_runner(
                engine_cls, True, args.chunk)

    clock = time.perf_counter()
    with progress_bar(not args.no_progress) as progress:
        runs = timed(runners, events, args.reps, min(args.warmup, len(events)), progress)
    console.print(f"timed runs: {time.perf_counter() - clock:.0f}s")

    seed_best = runs["seed transcription"]["best_eps"]
    targets = {}
    for name, r in runs.items():
        if name == "seed transcription":
            continue
        ratio = r["best_eps"] / seed_best
        targets[name] = {"eps": r["best_eps"], "ratio": round(ratio, 2),
                         "met": r["best_eps"] >= TARGET_EPS and ratio >= TARGET_RATIO}

    report: dict[str, Any] = {
        "machine": info,
        "code": code_version(),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "events": len(events),
        "reps": args.reps,
        "warmup_events": args.warmup,
        "chunk": args.chunk,
        "workload": describe(events),
        "runs": runs,
        "targets": targets,
        "target": {"events_per_second": TARGET_EPS, "ratio_to_seed": TARGET_RATIO},
    }
    clock = time.perf_counter()
    report["correctness"] = correctness(engine_cls, events, args.chunk, args.sample, args.seed)
    console.print(f"correctness: {time.perf_counter() - clock:.0f}s")
    clock = time.perf_counter()
    report["seed_memory"] = seed_memory(events)
    report["memory"] = engine_memory(engine_cls, events) if engine_cls is not None else None
    if engine_cls is not None:
        report["state_over_time"] = state_over_time(engine_cls, events)
    console.print(f"memory: {time.perf_counter() - clock:.0f}s")
    if engine_cls is not None:
        c = report["correctness"]
        report["exact"] = (c["engine_wrong_in_sample"] == 0
                           and c["differing_events_not_explained_by_truncation"] == 0
                           and c["evaluate_many_differs_from_evaluate"] == 0)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    console.print(f"written {args.output}")
    return 0
