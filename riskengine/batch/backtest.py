"""Backtest: what a candidate ruleset would have decided on past events, beside live.

Two steps, kept apart so that any runner can do the first its own way:

1. *Arms per event* (`ArmDecider`, riskengine/batch/arms.py): each event is decided once
   by the engine (features and the live ruleset: the ``live`` arm) and then by the
   candidate on the same event and features (the ``candidate`` arm).
2. *Accumulate and report*: each event's arms go into an `ArmComparison`
   (riskengine/batch/metrics.py); partial comparisons merge.

The local runner reads the input with the replay's readers (riskengine/batch/io.py), in
file order (the LSN order), and reports bad rows as a replay does: counted by kind
(``input``: unreadable; ``event``: refused by the engine; ``internal``: an engine
failure, a bug), each given to `on_error` as the replay's error record. A runner is a
function of a `Backtest` and its hooks; `RUNNERS` names them (``local`` today).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from riskengine.batch.arms import CANDIDATE, ArmDecider
from riskengine.batch.candidate import describe_changes
from riskengine.batch.io import ParquetReader, Row, RowReader, open_reader
from riskengine.batch.metrics import AMOUNT_FIELD, ArmComparison, ArmResult, amount_of
from riskengine.batch.replay import (
    LABEL_COLUMN,
    check_parquet,
    error_record,
    field_types,
    pop_label,
)
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.rules.ruleset import Ruleset

__all__ = ["RUNNERS", "SAMPLES", "Backtest", "BacktestRun", "EventArms", "Hooks",
           "decide_rows", "run_local"]

SAMPLES = 5
"""Sample event ids kept per transition."""

PROGRESS_EVERY = 1024

ErrorHook = Callable[[dict[str, Any]], None]
ProgressHook = Callable[[int, int, int], None]


@dataclass(frozen=True)
class Backtest:
    """What to backtest, checked before anything runs: the engine (its config and live
    ruleset), the scene, the input file and the compiled candidate."""

    engine: Engine
    scene: str
    source: Path
    candidate: Ruleset
    candidate_path: Path | None = None
    label_column: str = LABEL_COLUMN
    limit: int | None = None
    samples: int = SAMPLES
    master: str | None = None
    """The Spark runner's master URL (None: local[2])."""
    partitions: int | None = None
    """The Spark runner's shuffle partitions (None: twice the cores)."""

    def decider(self) -> ArmDecider:
        return ArmDecider(self.engine, self.scene, {CANDIDATE: self.candidate})

    def reader(self) -> RowReader:
        """A reader of the input (`InputError` when it is missing, unreadable, of an
        unknown format, or Parquet whose columns cannot hold the scene's events)."""
        reader = open_reader(self.source, field_types(self.engine, self.scene))
        if isinstance(reader, ParquetReader):
            check_parquet(self.engine, self.scene, reader.file.schema_arrow,
                          repr(str(self.source)))
        return reader

    def run_info(self, runner: str, decider: ArmDecider) -> BacktestRun:
        """The record of a run by `runner`, before it starts."""
        return BacktestRun(
            self.scene, str(self.source), runner, decider.versions(),
            None if self.candidate_path is None else str(self.candidate_path),
            self.label_column,
            describe_changes(self.engine.ruleset(self.scene), self.candidate))

    def comparison(self, decider: ArmDecider) -> ArmComparison:
        """An empty accumulator for the arms of `decider`."""
        return ArmComparison(decider.arms, samples=self.samples, rules=decider.rules())


@dataclass
class Hooks:
    """`on_error` sees each bad row's error record; `on_progress(rows, done, total)` is
    called every few rows (`done` and `total` in the reader's units)."""

    on_error: ErrorHook | None = None
    on_progress: ProgressHook | None = None


@dataclass
class BacktestRun:
    """How a run went: rows read, errors by kind, each arm's ruleset version, time."""

    scene: str
    source: str
    runner: str
    versions: dict[str, str]
    candidate_path: str | None = None
    label_column: str = LABEL_COLUMN
    changes: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "input": self.source, "runner": self.runner,
                "candidate": self.candidate_path, "versions": dict(self.versions),
                "changes": self.changes,
                "label_column": self.label_column, "rows": self.rows,
                "errors": self.error_count, "errors_by_kind": dict(self.errors),
                "elapsed_s": self.elapsed_s}


class EventArms(NamedTuple):
    """One decided row: where it came from and every arm's result."""

    row: int
    event_id: str
    timestamp: int
    label: str | None
    arms: dict[str, ArmResult]
    amount: float | None = None


def decide_rows(decider: ArmDecider, rows: Iterator[Row], run: BacktestRun, *,
                label_column: str = LABEL_COLUMN, limit: int | None = None,
                on_error: ErrorHook | None = None) -> Iterator[EventArms]:
    """Every arm's result for each good row of `rows`, in order; bad rows are counted in
    `run.errors` and given to `on_error`. `limit` stops after that many rows (bad rows
    included); `run.rows` counts the rows taken."""
    decide = decider.decide

    def bad(row: Row, kind: str, message: str, field: str | None = None) -> None:
        run.errors[kind] += 1
        if on_error is not None:
            on_error(error_record(row, kind, message, field))

    for row in rows:
        if limit is not None and run.rows >= limit:
            return
        run.rows += 1
        event = row.event
        if event is None:
            bad(row, "input", row.error or "unreadable row")
            continue
        label = pop_label(event, label_column)
        try:
            decision, arms = decide(event)
        except RiskEngineError as exc:
            bad(row, "event", str(exc), getattr(exc, "field", None))
            continue
        except Exception as exc:  # the engine failed on this row: report it and go on
            bad(row, "internal", f"{type(exc).__name__}: {exc}")
            continue
        yield EventArms(row.number, decision.event_id, decision.timestamp, label, arms,
                        amount_of(event, AMOUNT_FIELD))


def run_local(backtest: Backtest, hooks: Hooks) -> tuple[ArmComparison, BacktestRun]:
    """Backtest in this process: the input read in file order, one engine."""
    decider = backtest.decider()
    reader = backtest.reader()
    comparison = backtest.comparison(decider)
    run = backtest.run_info("local", decider)
    add = comparison.add
    progress = hooks.on_progress
    started = time.perf_counter()
    for decided in decide_rows(decider, iter(reader), run, label_column=backtest.label_column,
                               limit=backtest.limit, on_error=hooks.on_error):
        add(decided.event_id, decided.timestamp, decided.label, decided.arms,
            amount=decided.amount)
        if progress is not None and run.rows % PROGRESS_EVERY == 0:
            progress(run.rows, reader.done, reader.total)
    run.elapsed_s = time.perf_counter() - started
    if progress is not None:
        progress(run.rows, reader.done, reader.total)
    return comparison, run


Runner = Callable[[Backtest, Hooks], tuple[ArmComparison, BacktestRun]]

def run_spark(backtest: Backtest, hooks: Hooks) -> tuple[ArmComparison, BacktestRun]:
    """Backtest on Spark (riskengine/spark/backtest.py; needs riskengine[spark])."""
    from riskengine.spark.backtest import run_spark as on_spark

    return on_spark(backtest, hooks)


RUNNERS: dict[str, Runner] = {"local": run_local, "spark": run_spark}
"""The runners by the name `--runner` takes."""
