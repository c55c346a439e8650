"""Backfill on Spark: the state a replay of history leaves, computed by key on Spark and
assembled into an in-memory engine (which riskengine/batch/state_targets.py then writes as
the snapshot a service's state dir restores).

The Spark replay's plan (riskengine/spark/replay.py `prepare`) with two additions: the
ordered pass ends with its remembered ids, final LSN and scene clock; each compute
partition ends with its keys' states. The decisions of the remembered ids are decided
again in the join (only those: a duplicate arriving live must get them back), and the
pieces become one `MemoryPart` dump: the key tables of every partition side by side (a
key lives in one partition), the pattern keys likewise, the ids in arrival order.

By the contract (docs/semantics.md) this state answers every later event as the state of
a replay of the same history does. It reads the config's lists; list changes made
through the service's API (the state dir's list journal) are not seen by the executors.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from riskengine.batch.fork import KeyGroups
from riskengine.batch.report import ReplayStats
from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.spark.replay import (
    _STATE_GROUP,
    _TAIL_ROW,
    SparkReplay,
    _dumps,
    _join_rows,
    _spark_schema,
    prepare,
    write_errors,
)
from riskengine.state.memory import MemoryState, record_of

__all__ = ["spark_backfill"]

_RECORDS = pa.schema([("lsn", pa.int64()), ("record", pa.binary())])


def _remembered(job: SparkReplay, held: Any) -> Callable[[Iterator[pa.RecordBatch]],
                                                         Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        keep = held.value
        out: list[dict[str, Any]] = []

        def sink(_row: int, _label: str | None, _event: dict[str, Any],
                 decision: Decision) -> None:
            if not decision.duplicate and decision.lsn in keep:
                out.append({"lsn": decision.lsn, "record": _dumps(record_of(decision))})

        for _ in _join_rows(job, batches, sink):
            if out:
                yield pa.RecordBatch.from_pylist(out, schema=_RECORDS)
                out = []
    return run


def spark_backfill(spark: Any, job: SparkReplay, engine: Engine, source: str, fmt: str,
                   partitions: int, *, limit: int | None = None,
                   on_error: Callable[[dict[str, Any]], None] | None = None) -> ReplayStats:
    """Fill `engine` (in-memory state; its LSN is where history's numbering starts) with
    the state of scene `job.scene` after `source`; returns what was read (rows, events,
    late, errors by kind; each bad row given to `on_error`)."""
    from pyspark.sql import functions as F

    if not isinstance(engine.state, MemoryState):
        raise TypeError("a Spark backfill fills an in-memory engine")
    job = replace(job, first_lsn=engine.state.lsn, keep_state=True)
    prepared = prepare(spark, job, source, fmt, partitions, limit)
    try:
        (tail_row,) = prepared.steps.where(F.col("row") == _TAIL_ROW).collect()
        tail = pickle.loads(tail_row["tail"])
        held = spark.sparkContext.broadcast({lsn for _, (_, lsn) in tail.ids})
        records = dict(prepared.joined.mapInArrow(_remembered(job, held),
                                                  _spark_schema(spark, _RECORDS)).collect())
        states = [pickle.loads(r["payload"]) for r in prepared.parts.where(
            F.col("grp") == _STATE_GROUP).select("payload").collect()]
        held.destroy()
        part = _assemble(KeyGroups(engine.scene(job.scene)), tail_row["clock"], states,
                         [(event_id, pickle.loads(records[lsn])) for event_id, (_, lsn)
                          in tail.ids])
        engine.state.load_scene(job.scene, [(None, part)])
        engine.state.lsn = tail_row["lsn"]
        stats = ReplayStats(scene=job.scene, source=source)
        write_errors(prepared.rows, stats.errors, on_error)
        stats.decisions["taken"] = tail.events
        stats.late = tail.late
        stats.rows = tail.events + stats.error_count
    finally:
        prepared.release()
    return stats


def _assemble(groups: KeyGroups, clock: int, states: list[dict[int, Any]],
              seen: list[tuple[str, tuple[Any, ...]]]) -> dict[str, Any]:
    """One `MemoryPart.dump()` from the partitions' group states."""
    tables: dict[str, list[Any]] = {}
    patterns: dict[str, list[Any]] = {}
    features = len(groups.features)
    for state in states:
        for group, dump in state.items():
            if group < features:
                for name, rows in dump["tables"].items():
                    tables.setdefault(name, []).extend(rows)
            else:
                for name, rows in dump.items():
                    patterns.setdefault(name, []).extend(rows)
    return {"features": {"global_max": clock, "tables": tables, "partial_until": {}},
            "seen": seen, "patterns": patterns}
