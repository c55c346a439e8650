"""Where the Spark replay's Python time goes, stage by stage, without Spark.

Runs the functions each Spark stage runs in its Python workers (riskengine/spark/replay.py)
one after another in this process on the same JSON Lines file — read and validate, the
ordered pass, fork, compute by key, join and decide — with the shuffles done by Arrow
sorts here, and times each; then the local replay's loop on the same file for the
comparison. What Spark adds on top (JVM, Arrow transfer to the workers, shuffle files,
task scheduling) is the difference to the end-to-end figures of bench_replay.

    .venv/bin/python -m benchmarks.spark_stages FILE.jsonl [--config C] [--scene S]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from riskengine.batch.io import JsonlReader
from riskengine.batch.replay import replay_rows
from riskengine.config import load_config
from riskengine.engine import Engine
from riskengine.spark import replay as stages


class _Discard:
    """A record writer that keeps nothing (the local loop's output, not timed here)."""

    def write(self, record: Any) -> None:
        pass


def run(path: Path, config: str | None, scene: str) -> dict[str, float]:
    job = stages.SparkReplay.of(load_config(config), scene)
    job.engine()  # built once per worker process in Spark too
    times: dict[str, float] = {}
    lines = [(line.rstrip("\n"), i) for i, line in enumerate(path.open(encoding="utf-8"))]

    started = time.perf_counter()
    rows = [dict(zip(stages._ROWS.names, r, strict=True))
            for r in stages._jsonl_rows(job)(iter(lines))]
    times["read and validate"] = time.perf_counter() - started

    batches = list(stages._batches(iter(rows), stages._ROWS))
    started = time.perf_counter()
    steps = list(stages._sequence(job)(iter(b.select(["row", "event_id", "t"])
                                            for b in batches)))
    times["ordered pass"] = time.perf_counter() - started

    by_row = {r["row"]: r for r in rows}
    new = [{"lsn": s["lsn"], "clock": s["clock"], "late": s["late"],
            "event": by_row[s["row"]]["event"], "row": s["row"],
            "label": by_row[s["row"]]["label"]}
           for s in pa.Table.from_batches(steps).to_pylist()
           if s["row"] > 0 and not s["duplicate_of"]]
    forked_in = pa.Table.from_pylist([{k: n[k] for k in ("lsn", "clock", "late", "event")}
                                      for n in new]).to_batches(4096)
    started = time.perf_counter()
    tasks = list(stages._fork(job)(iter(forked_in)))
    times["fork"] = time.perf_counter() - started

    by_key = pa.Table.from_batches(tasks).sort_by([("part", "ascending"),
                                                    ("lsn", "ascending")]).to_batches(4096)
    started = time.perf_counter()
    parts = list(stages._compute(job)(iter(by_key)))
    times["compute by key"] = time.perf_counter() - started

    events = pa.Table.from_pylist(
        [{"lsn": n["lsn"], "grp": stages._EVENT_GROUP, "row": n["row"], "late": n["late"],
          "label": n["label"], "payload": n["event"], "degraded": False} for n in new],
        schema=stages._PARTS)
    joined = pa.concat_tables([events, pa.Table.from_batches(parts, schema=stages._PARTS)])
    joined_batches = joined.sort_by([("lsn", "ascending"), ("grp", "ascending")]
                                    ).to_batches(4096)
    started = time.perf_counter()
    decided = sum(b.num_rows for b in stages._decide(job)(iter(joined_batches)))
    times["join and decide"] = time.perf_counter() - started
    times["stages total"] = sum(times.values())

    engine = Engine(load_config(config))
    started = time.perf_counter()

    stats = replay_rows(engine, scene, JsonlReader(path), _Discard(),  # type: ignore[arg-type]
                        _Discard())  # type: ignore[arg-type]
    times["local replay loop"] = time.perf_counter() - started
    assert stats.evaluated == decided, (stats.evaluated, decided)
    times["events"] = decided
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--config", default=None)
    parser.add_argument("--scene", default="transfer")
    args = parser.parse_args()
    times = run(args.path, args.config, args.scene)
    events = times.pop("events")
    print(f"{int(events):,} events")
    print("| stage | s | µs/event |\n|---|---:|---:|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.2f} | {seconds / events * 1e6:.1f} |")
    print(json.dumps({"events": events, **times}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
