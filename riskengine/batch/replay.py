"""Replay: run every row of an event file through the engine, in file order.

The row order is the LSN order, so a replay reproduces exactly what the engine would have
decided had the events arrived in that order. Rows that cannot be read or that the
engine refuses are written to the errors file and counted; they never stop the run.
Decisions are written as they are made, one record per row that was decided.

Each decision record holds `row` (the input row number), `event_id`, `lsn`, `timestamp`,
`decision`, `score`, `hits` and `shadow_hits` (rule ids), `list_hits`, `late`,
`degraded`, `ruleset_version`, `arm` (the experiment arm that answered; ``champion``
without an experiment), `rule_errors`, `features`, `arms` when the scene runs an
experiment (every other arm's decision, score and hits: riskengine/experiment.py), and
`label` when the input row had one. The label is ground truth for the summary: it is
taken out of the event before the engine sees it, so no rule can read it. In Parquet,
`features` is a JSON object in a string column (feature values mix numbers, text and
nulls), and so is `arms`.

Each error record holds `row`, `event_id` (when known), `kind` (``input``: unreadable
row; ``event``: refused by the engine; ``internal``: an engine failure, a bug to report),
`error`, `field` (when the engine named one) and `excerpt` (the start of the raw line).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from riskengine.batch.columns import check_columns
from riskengine.batch.fastjson import float_writes_alike, writes_alike
from riskengine.batch.io import RecordWriter, Row, RowReader
from riskengine.batch.report import ReplayStats
from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.features.dsl import NUMERIC_FUNCTIONS

__all__ = ["DECISION_FIELDS", "DECISION_SCHEMA", "ERROR_FIELDS", "LABEL_COLUMN",
           "check_parquet", "decision_record", "decision_writes_alike", "error_record",
           "field_types", "pop_label", "replay_rows", "required_fields"]

DECISION_FIELDS = ("row", "event_id", "lsn", "timestamp", "decision", "score", "hits",
                   "shadow_hits", "list_hits", "late", "degraded", "ruleset_version",
                   "arm", "rule_errors", "label", "features", "arms")

DECISION_SCHEMA = pa.schema([
    ("row", pa.int64()),
    ("event_id", pa.string()),
    ("lsn", pa.int64()),
    ("timestamp", pa.int64()),
    ("decision", pa.string()),
    ("score", pa.float64()),
    ("hits", pa.list_(pa.string())),
    ("shadow_hits", pa.list_(pa.string())),
    ("list_hits", pa.list_(pa.string())),
    ("late", pa.bool_()),
    ("degraded", pa.bool_()),
    ("ruleset_version", pa.string()),
    ("arm", pa.string()),
    ("rule_errors", pa.list_(pa.string())),
    ("label", pa.string()),
    ("features", pa.string()),
    ("arms", pa.string()),
])
"""Parquet layout of decision records (`features` and `arms` hold JSON objects)."""

ERROR_FIELDS = ("row", "event_id", "kind", "error", "field", "excerpt")

LABEL_COLUMN = "label"

PROGRESS_EVERY = 1024

ErrorHook = Callable[[dict[str, Any]], None]
ProgressHook = Callable[[int, int, int], None]


def field_types(engine: Engine, scene: str) -> dict[str, str]:
    """Field → schema type of a scene, plus ``number`` for the targets of numeric features
    (the fields the engine requires to be numbers even when the schema is silent)."""
    config = engine.config.scenes[scene]
    types = {spec.target: "number" for spec in config.features
             if spec.func in NUMERIC_FUNCTIONS}
    types.update({spec.name: spec.type for spec in config.schema})
    return types


def required_fields(engine: Engine, scene: str) -> list[str]:
    """The fields every event of a scene must have: ``timestamp`` and the schema's
    non-optional fields."""
    return ["timestamp", *(spec.name for spec in engine.config.scenes[scene].schema
                           if spec.required)]


def check_parquet(engine: Engine, scene: str, schema: pa.Schema, source: str) -> None:
    """Refuse a Parquet input whose columns cannot hold the scene's events (see
    riskengine/batch/columns.py), naming the column."""
    check_columns(schema, field_types(engine, scene), required_fields(engine, scene),
                  source, scene)


def decision_record(row: int, decision: Decision, label: str | None,
                    *, features_as_json: bool = False) -> dict[str, Any]:
    """The output record of one decision (see the module docstring)."""
    features: Any = decision.features
    if features_as_json:
        features = json.dumps(features, ensure_ascii=False, default=str)
    hits, shadow_hits = decision.hits, decision.shadow_hits
    record: dict[str, Any] = {
        "row": row,
        "event_id": decision.event_id,
        "lsn": decision.lsn,
        "timestamp": decision.timestamp,
        "decision": decision.decision,
        "score": decision.score,
        "hits": [h.rule_id for h in hits] if hits else [],
        "shadow_hits": [h.rule_id for h in shadow_hits] if shadow_hits else [],
        "list_hits": [*decision.list_hits],
        "late": decision.late,
        "degraded": decision.degraded,
        "ruleset_version": decision.ruleset_version,
        "arm": decision.arm,
        "rule_errors": [*decision.rule_errors],
    }
    if label is not None:
        record["label"] = label
    record["features"] = features
    if decision.arms:
        arms: Any = {a.arm: a.to_dict() for a in decision.arms}
        record["arms"] = json.dumps(arms, ensure_ascii=False) if features_as_json else arms
    return record


def decision_writes_alike(record: Mapping[str, Any]) -> bool:
    """orjson writes this decision record as json does (riskengine/batch/fastjson.py).
    Only the scores (the arms' too) and the feature values can hold floats or values
    taken from the input;
    the other fields are ints, bools and strings (and lists of them) by construction."""
    features = record["features"]
    arms = record.get("arms")
    return float_writes_alike(record["score"]) and (
        writes_alike(features.values()) if features.__class__ is dict
        else writes_alike((features,))) and (
        arms is None or arms.__class__ is not dict
        or all(float_writes_alike(arm["score"]) for arm in arms.values()))


def pop_label(event: dict[str, Any], column: str = LABEL_COLUMN) -> str | None:
    """Take the ground-truth label out of `event` (so no rule can read it), as text."""
    label = event.pop(column, None)
    if label is None or isinstance(label, str):
        return label
    return str(label)


def replay_rows(engine: Engine, scene: str, reader: RowReader, output: RecordWriter,
           errors: RecordWriter, *, limit: int | None = None, source: str = "",
           features_as_json: bool = False, on_error: ErrorHook | None = None,
           on_progress: ProgressHook | None = None) -> ReplayStats:
    """Evaluate the rows of `reader` in order; write decisions and errors as they come.

    `limit` stops after that many rows (error rows included). `on_error` sees each error
    record; `on_progress(rows, done, total)` is called every few rows (`done` and `total`
    in the reader's units: bytes for text files, rows for Parquet).
    Raises `UnknownSceneError` before reading anything if the scene does not exist.
    """
    engine.scene(scene)
    stats = ReplayStats(scene=scene, source=source,
                        rules=[(rule.id, rule.mode) for rule in engine.ruleset(scene).rules])
    evaluate = engine.evaluate
    write = output.write
    count = stats.add
    last = limit if limit is not None else -1
    rows = 0
    started = time.perf_counter()
    row: Row
    for row in reader:
        if rows == last:
            break
        rows += 1
        if on_progress is not None and not rows % PROGRESS_EVERY:
            stats.rows = rows
            on_progress(rows, reader.done, reader.total)
        event = row.event
        if event is None:
            _error(stats, errors, on_error, row, "input", row.error or "unreadable row")
            continue
        label = pop_label(event)
        try:
            decision = evaluate(scene, event)
        except RiskEngineError as exc:
            _error(stats, errors, on_error, row, "event", str(exc),
                   getattr(exc, "field", None))
            continue
        except Exception as exc:  # the engine failed on this row: report it and go on
            _error(stats, errors, on_error, row, "internal", f"{type(exc).__name__}: {exc}")
            continue
        write(decision_record(row.number, decision, label, features_as_json=features_as_json))
        count(decision, label)
    stats.rows = rows
    stats.elapsed_s = time.perf_counter() - started
    if on_progress is not None:
        on_progress(stats.rows, reader.done, reader.total)
    return stats


def _error(stats: ReplayStats, errors: RecordWriter, hook: ErrorHook | None, row: Row,
           kind: str, message: str, field: str | None = None) -> None:
    stats.errors[kind] += 1
    record = error_record(row, kind, message, field)
    errors.write(record)
    if hook is not None:
        hook(record)


def error_record(row: Row, kind: str, message: str, field: str | None = None
                 ) -> dict[str, Any]:
    """The error record of a row (see the module docstring)."""
    event_id = row.event.get("event_id") if row.event is not None else None
    return {"row": row.number, "event_id": event_id if isinstance(event_id, str) else None,
            "kind": kind, "error": message, "field": field, "excerpt": row.excerpt}
