"""Backtest on Spark: the Spark replay's plan (riskengine/spark/replay.py), each decided
row given to the candidate's ruleset on its features (`RulesetArms`, as the local runner
does) and counted into an `ArmComparison` per partition; the partitions' comparisons are
merged here (riskengine/batch/metrics.py). Features are computed once, by key."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from riskengine.batch.arms import CANDIDATE, RulesetArms
from riskengine.batch.backtest import Backtest, BacktestRun, Hooks
from riskengine.batch.io import InputError
from riskengine.batch.metrics import AMOUNT_FIELD, ArmComparison, amount_of
from riskengine.decision import Decision
from riskengine.rules.ruleset import Ruleset
from riskengine.spark.replay import (
    SparkReplay,
    _dumps,
    _join_rows,
    _spark_schema,
    input_format,
    prepare,
    write_errors,
)
from riskengine.spark.session import spark_session

__all__ = ["run_spark"]

_COMPARED = pa.schema([("events", pa.int64()), ("comparison", pa.binary())])


def _compare(job: SparkReplay, empty: bytes, candidate: dict[str, Any]
             ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        engine = job.engine()
        runtime = engine.scene(job.scene)
        ruleset = Ruleset.build(job.scene, candidate["rules"], candidate["policy"],
                                runtime.names, candidate["version"])
        arms = RulesetArms({CANDIDATE: ruleset}, engine.lists)
        comparison: ArmComparison = pickle.loads(empty)
        events = 0

        def sink(_row: int, label: str | None, event: dict[str, Any],
                 decision: Decision) -> None:
            nonlocal events
            events += 1
            comparison.add(decision.event_id, decision.timestamp, label,
                           arms.of(event, decision), amount=amount_of(event, AMOUNT_FIELD))

        for _ in _join_rows(job, batches, sink):
            pass
        yield pa.RecordBatch.from_pylist([{"events": events,
                                           "comparison": _dumps(comparison)}],
                                         schema=_COMPARED)
    return run


def run_spark(backtest: Backtest, hooks: Hooks) -> tuple[ArmComparison, BacktestRun]:
    """Backtest on Spark (`backtest.master`, `backtest.partitions`): the same comparison as
    the local runner's."""
    source = str(backtest.source.resolve())
    fmt = input_format(source)
    if fmt is None:
        raise InputError("the Spark runner reads JSON Lines or Parquet; use --runner local "
                         "for CSV")
    started = time.perf_counter()
    spark = spark_session(backtest.master, shuffle_partitions=backtest.partitions)
    partitions = backtest.partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    decider = backtest.decider()
    run = backtest.run_info("spark", decider)
    comparison = backtest.comparison(decider)
    job = SparkReplay.of(backtest.engine.config, backtest.scene,
                         label_column=backtest.label_column)
    candidate = backtest.candidate
    body = {"rules": [rule.to_dict() for rule in candidate.rules],
            "policy": candidate.policy.to_dict(), "version": candidate.version}
    prepared = prepare(spark, job, source, fmt, partitions, backtest.limit)
    try:
        parts = prepared.joined.mapInArrow(
            _compare(job, pickle.dumps(backtest.comparison(decider)), body),
            _spark_schema(spark, _COMPARED)).collect()
        events = 0
        for part in parts:
            events += part["events"]
            comparison.merge(pickle.loads(part["comparison"]))
        write_errors(prepared.rows, run.errors, hooks.on_error)
    finally:
        prepared.release()
    run.rows = events + run.error_count
    run.elapsed_s = time.perf_counter() - started
    return comparison, run
