"""Replay on Spark: the fork and join of riskengine/batch/fork.py over a cluster.

Stages (each a Spark stage; the Python steps run the engine's own code in the workers):

1. **read** — JSON Lines through Hadoop's text reader, numbered by line (`zipWithIndex`:
   line order within and across the file's splits), or Parquet with each row numbered
   by (file, row index). Each row is parsed and validated by the scene's parser, as the
   local replay does, and its ``label`` taken out of the event. Kept for the next stages.
2. **sequence** — the one ordered pass (`Sequencer`): an id and a time per event, in row
   order, in one task: LSN, the scene clock G before the event, late, or the LSN it
   duplicates.
3. **fork** — each new event to one task row per key group it has a key in, shuffled by
   (group, key) into `partitions` partitions and sorted by LSN within each: every key of a
   partition computed in LSN order by `GroupRunner` (the engine's feature and pattern code
   with G from stage 2).
4. **join** — the groups' values and the event, shuffled by LSN, merged, and decided by
   `SceneRuntime.decide` (lists, rules, policy). Duplicates take the decision they
   duplicate (with their own row and label).
5. **write** — the decisions in row order, as Parquet, to a temporary directory beside
   OUTPUT, renamed to OUTPUT once complete (nothing half-written at OUTPUT); errors to a
   JSON Lines file; the summary counted per partition of the written decisions.

The decision records equal `riskengine replay --runner local` on the same input (every
field; latency is not in a record). Differences a user can meet, by design: the Spark
runner applies no `max_entities` cap (see fork.py), so `degraded` is never set; Hadoop's
text reader splits lines at ``\\r`` as well as ``\\n`` and replaces bytes that are not
UTF-8, so a line the local replay reports as "not UTF-8 text" is read with U+FFFD there.
"""

from __future__ import annotations

import functools
import os
import pickle
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from riskengine.batch.fork import GroupRunner, KeyGroups, Sequencer, join, key_hash
from riskengine.batch.io import (
    MAX_LINE_BYTES,
    InputError,
    JsonlReader,
    Row,
    open_writer,
    parquet_records,
    with_id,
)
from riskengine.batch.replay import (
    DECISION_SCHEMA,
    ERROR_FIELDS,
    LABEL_COLUMN,
    check_parquet,
    decision_record,
    pop_label,
)
from riskengine.batch.report import ReplayStats
from riskengine.config import ProjectConfig
from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.scene import SceneRuntime

__all__ = ["Prepared", "SparkReplay", "prepare", "spark_replay", "write_errors"]

_ROWS = pa.schema([
    ("row", pa.int64()), ("event_id", pa.string()), ("t", pa.int64()),
    ("label", pa.string()), ("event", pa.binary()), ("kind", pa.string()),
    ("error", pa.string()), ("field", pa.string()), ("excerpt", pa.string()),
])
_STEPS = pa.schema([
    ("row", pa.int64()), ("lsn", pa.int64()), ("clock", pa.int64()), ("late", pa.bool_()),
    ("duplicate_of", pa.int64()), ("tail", pa.binary()),
])
_TAIL_ROW = -1
"""The ordered pass's last row: its final LSN and clock, and in `tail` the remembered ids
and counts (`SequencerTail`); no input row has this number, so joins drop it."""
_TASKS = pa.schema([
    ("part", pa.int64()), ("grp", pa.int32()), ("lsn", pa.int64()), ("clock", pa.int64()),
    ("late", pa.bool_()), ("event", pa.binary()),
])
_PARTS = pa.schema([
    ("lsn", pa.int64()), ("grp", pa.int32()), ("row", pa.int64()), ("late", pa.bool_()),
    ("label", pa.string()), ("payload", pa.binary()), ("degraded", pa.bool_()),
])
_EVENT_GROUP = -1  # the join's row holding the event itself (sorts before its groups)
_DUPLICATE_GROUP = 1 << 30  # rows repeating the LSN's decision (sort after its groups)
_STATE_GROUP = (1 << 31) - 1  # a partition's final group states (`keep_state` jobs)
_BATCH = 4096


@dataclass(frozen=True)
class SparkReplay:
    """What a Spark replay needs in every worker: the project config (pickled; its list
    files are read by their paths, which every worker must be able to read) and the
    scene. Workers build the engine once per process (`engine`)."""

    config: bytes
    scene: str
    first_lsn: int = 0
    """The LSN before the first event (a backfill numbers history after a decision log)."""
    keep_state: bool = False
    """Each compute partition also gives its final key states (a backfill's)."""
    label_column: str = LABEL_COLUMN
    """The column taken out of each event as its ground truth."""

    @classmethod
    def of(cls, config: ProjectConfig, scene: str, **options: Any) -> SparkReplay:
        return cls(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL), scene, **options)

    def engine(self) -> Engine:
        return _engine(self.config)


@functools.cache
def _engine(config: bytes) -> Engine:
    return Engine(pickle.loads(config))


def _runtime(job: SparkReplay) -> SceneRuntime:
    return job.engine().scene(job.scene)


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


# -- stage 1: rows -------------------------------------------------------------------------

def _row_record(job: SparkReplay, row: Row) -> dict[str, Any]:
    """One input row as a stage-1 record: the parsed event, or why it is an error."""
    record: dict[str, Any] = {"row": row.number}
    event = row.event
    if event is None:
        record.update(kind="input", error=row.error or "unreadable row", excerpt=row.excerpt)
        return record
    record["label"] = pop_label(event, job.label_column)
    event_id = event.get("event_id")
    record["event_id"] = event_id if isinstance(event_id, str) else None
    try:
        parsed = _runtime(job).parse(event)
    except RiskEngineError as exc:
        record.update(kind="event", error=str(exc), field=getattr(exc, "field", None))
        return record
    except Exception as exc:  # the engine failed on this row: report it and go on
        record.update(kind="internal", error=f"{type(exc).__name__}: {exc}")
        return record
    record.update(event_id=parsed["event_id"], t=parsed["timestamp"], event=_dumps(parsed))
    return record


def _batches(records: Iterator[dict[str, Any]], schema: pa.Schema
             ) -> Iterator[pa.RecordBatch]:
    chunk: list[dict[str, Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= _BATCH:
            yield pa.RecordBatch.from_pylist(chunk, schema=schema)
            chunk = []
    if chunk:
        yield pa.RecordBatch.from_pylist(chunk, schema=schema)


def _jsonl_rows(job: SparkReplay) -> Callable[[Iterator[tuple[str, int]]],
                                              Iterator[tuple[Any, ...]]]:
    names = _ROWS.names

    def parse(lines: Iterator[tuple[str, int]]) -> Iterator[tuple[Any, ...]]:
        for line, index in lines:
            number = index + 1
            data = line.encode("utf-8", "surrogatepass")
            if len(data) > MAX_LINE_BYTES:
                row = Row(number, None, f"line is longer than {MAX_LINE_BYTES} bytes")
            elif not data.strip():
                continue
            else:
                row = JsonlReader._parse(number, data)
            record = _row_record(job, row)
            yield tuple(record.get(name) for name in names)
    return parse


def _parquet_rows(job: SparkReplay, offsets: dict[str, int]
                  ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            files = batch.column("_file").to_pylist()
            indexes = batch.column("_index").to_pylist()
            data = batch.drop_columns(["_file", "_index"])
            out = []
            for record, file, index in zip(parquet_records(data), files, indexes,
                                           strict=True):
                number = offsets[file] + index + 1
                out.append(_row_record(job, Row(number, with_id(record, number))))
            if out:
                yield pa.RecordBatch.from_pylist(out, schema=_ROWS)
    return parse


# -- stage 2: the ordered pass -------------------------------------------------------------

def _sequence(job: SparkReplay) -> Callable[[Iterator[pa.RecordBatch]],
                                            Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sequencer = Sequencer(_runtime(job), lsn=job.first_lsn)
        step = sequencer.step
        events = late_events = 0
        for batch in batches:
            rows, ids, times = (batch.column(n).to_pylist() for n in ("row", "event_id", "t"))
            lsns, clocks, lates, dups = [], [], [], []
            for event_id, t in zip(ids, times, strict=True):
                s = step(event_id, t)
                lsns.append(s.lsn)
                clocks.append(s.clock)
                lates.append(s.late)
                dups.append(s.duplicate_of)
            events += len(rows)
            late_events += sum(lates)
            yield pa.RecordBatch.from_arrays(
                [pa.array(rows, pa.int64()), pa.array(lsns, pa.int64()),
                 pa.array(clocks, pa.int64()), pa.array(lates, pa.bool_()),
                 pa.array(dups, pa.int64()), pa.nulls(len(rows), pa.binary())],
                schema=_STEPS)
        tail = SequencerTail(sequencer.ids.dump(), events, late_events)
        yield pa.RecordBatch.from_pylist(
            [{"row": _TAIL_ROW, "lsn": sequencer.lsn, "clock": sequencer.clock, "late": False,
              "duplicate_of": 0, "tail": _dumps(tail)}], schema=_STEPS)
    return run


@dataclass(frozen=True)
class SequencerTail:
    """What the ordered pass holds at its end: the remembered ids ((id, (t, lsn)) in
    arrival order) and how many events and late events it took."""

    ids: list[tuple[str, tuple[Any, ...]]]
    events: int
    late: int


# -- stage 3: fork and compute ---------------------------------------------------------------

def _fork(job: SparkReplay) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        groups = KeyGroups(_runtime(job))
        for batch in batches:
            columns = [batch.column(n).to_pylist()
                       for n in ("lsn", "clock", "late", "event")]
            parts, grps, lsns, clocks, lates, events = [], [], [], [], [], []
            for lsn, clock, late, blob in zip(*columns, strict=True):
                event = pickle.loads(blob)
                for group, key in groups.fork(event):
                    parts.append((group << 32) | key_hash(key))
                    grps.append(group)
                    lsns.append(lsn)
                    clocks.append(clock)
                    lates.append(late)
                    events.append(blob)
            yield pa.RecordBatch.from_arrays(
                [pa.array(parts, pa.int64()), pa.array(grps, pa.int32()),
                 pa.array(lsns, pa.int64()), pa.array(clocks, pa.int64()),
                 pa.array(lates, pa.bool_()), pa.array(events, pa.binary())],
                schema=_TASKS)
    return run


def _compute(job: SparkReplay) -> Callable[[Iterator[pa.RecordBatch]],
                                           Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        engine = job.engine()
        runner = GroupRunner(KeyGroups(engine.scene(job.scene)), engine.lists)
        compute = runner.run
        for batch in batches:
            columns = [batch.column(n).to_pylist()
                       for n in ("grp", "lsn", "clock", "late", "event")]
            payloads, degraded = [], []
            last_lsn: int | None = None
            event: dict[str, Any] = {}
            for group, lsn, clock, late, blob in zip(*columns, strict=True):
                if lsn != last_lsn:  # an event's groups are adjacent here more often than not
                    last_lsn, event = lsn, pickle.loads(blob)
                values, is_degraded = compute(group, event, lsn, clock, late)
                payloads.append(_dumps(values))
                degraded.append(is_degraded)
            n = len(payloads)
            yield pa.RecordBatch.from_arrays(
                [batch.column("lsn"), batch.column("grp"), pa.nulls(n, pa.int64()),
                 batch.column("late"), pa.nulls(n, pa.string()),
                 pa.array(payloads, pa.binary()), pa.array(degraded, pa.bool_())],
                schema=_PARTS)
        if job.keep_state:
            yield pa.RecordBatch.from_pylist(
                [{"lsn": _TAIL_ROW, "grp": _STATE_GROUP, "payload": _dumps(runner.dump())}],
                schema=_PARTS)
    return run


# -- stage 4: join and decide ------------------------------------------------------------------

_OUT_NAMES = DECISION_SCHEMA.names


DecisionSink = Callable[[int, str | None, dict[str, Any], Decision], None]
"""Gets each decided row: its row number, label, parsed event and decision."""


def _join_rows(job: SparkReplay, batches: Iterator[pa.RecordBatch], sink: DecisionSink
               ) -> Iterator[None]:
    """Merge the rows of each LSN (sorted by LSN, then group: the event, its groups'
    values, the duplicates that repeat it), decide, and give every row to `sink`; yields
    after each input batch so that the caller can flush."""
    engine = job.engine()
    runtime = engine.scene(job.scene)
    template = KeyGroups(runtime).template
    lists = engine.lists
    current: list[Any] | None = None  # [lsn, row, late, label, event, parts, duplicates]

    def finish(item: list[Any]) -> None:
        lsn, row, late, label, event, parts, duplicates = item
        if event is None:  # cannot happen: every LSN has its event row
            raise AssertionError(f"no event for LSN {lsn}")
        decision = join(runtime, template, event, lsn, late, parts, lists, perf_counter())
        sink(row, label, event, decision)
        if duplicates:
            repeated = replace(decision, duplicate=True)
            for dup_row, dup_label, dup_event in duplicates:
                sink(dup_row, dup_label, dup_event, repeated)

    for batch in batches:
        columns = [batch.column(n).to_pylist() for n in _PARTS.names]
        for lsn, group, row, late, label, payload, degraded in zip(*columns, strict=True):
            if current is None or current[0] != lsn:
                if current is not None:
                    finish(current)
                current = [lsn, None, late, None, None, [], []]
            if group == _EVENT_GROUP:
                current[1], current[3], current[4] = row, label, pickle.loads(payload)
            elif group == _DUPLICATE_GROUP:
                current[6].append((row, label, pickle.loads(payload)))
            else:
                current[5].append((pickle.loads(payload), degraded))
        yield None
    if current is not None:
        finish(current)
    yield None


def _decide(job: SparkReplay) -> Callable[[Iterator[pa.RecordBatch]],
                                          Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        out: list[dict[str, Any]] = []

        def sink(row: int, label: str | None, _: dict[str, Any], decision: Decision) -> None:
            out.append(decision_record(row, decision, label, features_as_json=True))

        for _ in _join_rows(job, batches, sink):
            if len(out) >= _BATCH:
                yield pa.RecordBatch.from_pylist(out, schema=DECISION_SCHEMA)
                out = []
        if out:
            yield pa.RecordBatch.from_pylist(out, schema=DECISION_SCHEMA)
    return run


# -- the job ---------------------------------------------------------------------------------

@dataclass
class SparkResult:
    """What a Spark replay did: the summary and where it wrote."""

    stats: ReplayStats
    output: str
    errors: str


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def _hadoop_fs(spark: Any, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def _read_rows(spark: Any, job: SparkReplay, engine: Engine, source: str, fmt: str,
               partitions: int) -> Any:
    from pyspark.sql import functions as F

    if fmt == "jsonl":
        lines = spark.sparkContext.textFile(source, minPartitions=partitions).zipWithIndex()
        return spark.createDataFrame(lines.mapPartitions(_jsonl_rows(job)), _spark_schema(
            spark, _ROWS))
    try:
        frame = spark.read.parquet(source)
        schema = frame.limit(0).toArrow().schema
    except Exception as exc:
        raise InputError(f"{source!r} is not readable Parquet: {_first_line(exc)}") from None
    check_parquet(engine, job.scene, schema, repr(source))
    frame = frame.select("*", F.col("_metadata.file_path").alias("_file"),
                         F.col("_metadata.row_index").alias("_index"))
    counts = sorted(frame.groupBy("_file").count().collect())
    offsets, total = {}, 0
    for file, count in counts:
        offsets[file] = total
        total += count
    return frame.mapInArrow(_parquet_rows(job, offsets), _spark_schema(spark, _ROWS))


def _spark_schema(spark: Any, schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def spark_replay(spark: Any, job: SparkReplay, source: str, fmt: str, output: str,
                 errors: str, *, partitions: int | None = None, limit: int | None = None,
                 on_stage: Callable[[str], None] | None = None) -> SparkResult:
    """Replay `source` (``jsonl`` or ``parquet``; any Spark path) on `spark` into the
    Parquet directory `output`, errors into the JSON Lines file `errors` (a local path).
    Raises `InputError` for an unreadable input or an output that exists."""

    say = on_stage or (lambda _: None)
    started = time.perf_counter()
    engine = job.engine()
    engine.scene(job.scene)  # UnknownSceneError before anything runs
    partitions = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    fs, out_path = _hadoop_fs(spark, output)
    if fs.exists(out_path):
        raise InputError(f"output {output!r} exists; choose a new path (nothing is "
                         "overwritten)")
    say("reading, sequencing, forking")
    prepared = prepare(spark, job, source, fmt, partitions, limit)
    rows = prepared.rows
    try:
        decisions = prepared.joined.mapInArrow(
            _decide(job), _spark_schema(spark, DECISION_SCHEMA)).orderBy("row")
        say("deciding and writing")
        temporary = f"{output.rstrip('/')}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            decisions.write.parquet(temporary)
            _, tmp_path = _hadoop_fs(spark, temporary)
            if not fs.rename(tmp_path, out_path):
                raise InputError(f"cannot move the decisions into {output!r}")
        except BaseException:
            _, tmp_path = _hadoop_fs(spark, temporary)
            fs.delete(tmp_path, True)
            raise
        say("summarising")
        stats = _summary(spark, job, output, errors, rows, source)
    finally:
        prepared.release()
    stats.elapsed_s = time.perf_counter() - started
    return SparkResult(stats, output, errors)


@dataclass
class Prepared:
    """A replay's plan up to the join: the numbered rows (errors included) and the join's
    input (see `_join_rows`); `release` frees what it cached."""

    rows: Any
    joined: Any
    cached: list[Any]
    steps: Any
    parts: Any

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def prepare(spark: Any, job: SparkReplay, source: str, fmt: str, partitions: int,
            limit: int | None) -> Prepared:
    """Stages 1–3 and the join's shuffle (nothing runs until an action)."""
    from pyspark.sql import functions as F
    from pyspark.storagelevel import StorageLevel

    rows = _read_rows(spark, job, job.engine(), source, fmt, partitions)
    if limit is not None:
        rows = rows.where(F.col("row") <= limit)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    valid = rows.where(F.col("event").isNotNull())
    steps = (valid.select("row", "event_id", "t").repartition(1).sortWithinPartitions("row")
             .mapInArrow(_sequence(job), _spark_schema(spark, _STEPS))
             .persist(StorageLevel.MEMORY_AND_DISK))
    new = (steps.where(F.col("duplicate_of") == 0)
           .join(valid.select("row", "label", "event"), "row"))
    tasks = (new.select("lsn", "clock", "late", "event")
             .mapInArrow(_fork(job), _spark_schema(spark, _TASKS))
             .repartition(partitions, "part").sortWithinPartitions("lsn"))
    parts = tasks.mapInArrow(_compute(job), _spark_schema(spark, _PARTS))
    cached = [rows, steps]
    if job.keep_state:
        parts = parts.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(parts)
    computed = parts.where(F.col("grp") != _STATE_GROUP) if job.keep_state else parts
    return Prepared(rows, _joined(steps, rows, new, computed, partitions), cached, steps,
                    parts)


def _joined(steps: Any, rows: Any, new: Any, parts: Any, partitions: int) -> Any:
    """The join's input: per LSN its event, its groups' values and its duplicates, in
    `partitions` partitions by LSN, sorted by LSN then group."""
    from pyspark.sql import functions as F

    events = new.select(
        "lsn", F.lit(_EVENT_GROUP).cast("int").alias("grp"), "row", "late", "label",
        F.col("event").alias("payload"), F.lit(False).alias("degraded"))
    duplicates = (steps.where(F.col("duplicate_of") != 0)
                  .join(rows.select("row", "label", "event"), "row")
                  .select(F.col("duplicate_of").alias("lsn"),
                          F.lit(_DUPLICATE_GROUP).cast("int").alias("grp"), "row",
                          F.lit(False).alias("late"), "label",
                          F.col("event").alias("payload"), F.lit(False).alias("degraded")))
    return (events.unionByName(parts).unionByName(duplicates)
            .repartition(partitions, "lsn").sortWithinPartitions("lsn", "grp"))


def write_errors(rows: Any, counts: Counter[str],
                 on_error: Callable[[dict[str, Any]], None] | None) -> None:
    """Count the error records (in row order) by kind in `counts`, giving each to
    `on_error`."""
    from pyspark.sql import functions as F

    bad = rows.where(F.col("event").isNull()).select(*ERROR_FIELDS).orderBy("row")
    for item in bad.toLocalIterator():
        record = item.asDict()
        counts[record["kind"]] += 1
        if on_error is not None:
            on_error(record)


_STATS_COLUMNS = ("decision", "late", "degraded", "rule_errors", "hits", "shadow_hits",
                  "label")
_STATS = pa.schema([("stats", pa.binary())])


def _count(job: SparkReplay) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        stats = ReplayStats(scene=job.scene)
        for batch in batches:
            for record in batch.to_pylist():
                stats.add_record(record)
        yield pa.RecordBatch.from_pylist([{"stats": _dumps(stats)}], schema=_STATS)
    return run


def _summary(spark: Any, job: SparkReplay, output: str, errors: str, rows: Any,
             source: str) -> ReplayStats:
    """The replay summary: the written decisions counted per partition, merged here; the
    errors counted as they are written."""
    stats = ReplayStats(scene=job.scene, source=source,
                        rules=[(r.id, r.mode) for r in job.engine().ruleset(job.scene).rules])
    parts = (spark.read.parquet(output).select(*_STATS_COLUMNS)
             .mapInArrow(_count(job), _spark_schema(spark, _STATS)).collect())
    for (blob,) in parts:
        stats.merge(pickle.loads(blob))
    with open_writer(_local(errors), ERROR_FIELDS) as out:
        write_errors(rows, stats.errors, out.write)
    stats.rows = stats.evaluated + stats.error_count
    return stats


def input_format(source: str) -> str | None:
    """``jsonl`` for a .jsonl/.ndjson path, None for CSV (the Spark runner does not read
    it), else ``parquet`` (a file or a directory)."""
    name = source.rstrip("/").lower()
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return None if name.endswith(".csv") else "parquet"


def default_errors_path(output: str) -> str:
    """Beside OUTPUT for a local output (``<stem>.errors.jsonl``), else in the current
    directory."""
    name = os.path.basename(output.rstrip("/")) or "decisions"
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if _is_local(output):
        return str(_local(output.rstrip("/")).with_name(f"{stem}.errors.jsonl"))
    return f"{stem}.errors.jsonl"

