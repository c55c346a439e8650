"""The `riskengine` command line: generate traffic, replay it, backtest rules, backfill a
state, validate a config, demo; import labels and report a live experiment from the
decision log.

Exit codes: 0 success; 1 the work ran but failed (an invalid config for `validate`, an
engine failure during a replay, a file that became unreadable or unwritable midway);
2 a usage mistake found before any work (missing input, bad config, unknown scene,
unknown file format). User mistakes print one clear message on stderr, never a
traceback. Results go to stdout; progress bars and per-row errors go to stderr.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import pyarrow as pa  # type: ignore[import-untyped]
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from riskengine.batch.io import (
    InputError,
    ParquetReader,
    RowReader,
    file_format,
    open_reader,
    open_writer,
)
from riskengine.batch.replay import (
    DECISION_FIELDS,
    DECISION_SCHEMA,
    ERROR_FIELDS,
    check_parquet,
    decision_writes_alike,
    field_types,
    replay_rows,
)
from riskengine.batch.report import ReplayStats, render_summary
from riskengine.config import ProjectConfig, load_config
from riskengine.engine import Engine
from riskengine.exceptions import ConfigError, RiskEngineError
from riskengine.longlived import BATCH_YOUNG_THRESHOLD, settled_memory
from riskengine.synth import DEFAULT_START, FIELDS, generate_transfers, parse_start

if TYPE_CHECKING:
    from riskengine.batch.backfill import Compute
    from riskengine.stream.base import WorkerStats

__all__ = ["app"]

SHOWN_ERRORS = 10
"""How many bad rows a replay prints on stderr; all of them go to the errors file."""

_TRANSFER_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("timestamp", pa.int64()), ("type", pa.string()),
    ("pay_account", pa.string()), ("rcv_account", pa.string()), ("amount", pa.float64()),
    ("device_id", pa.string()), ("ip", pa.string()), ("label", pa.string()),
])

app = typer.Typer(
    name="riskengine",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


class _Failure(Exception):
    """A user-facing failure: the message and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _stdout() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=120)
    return console


def _stderr() -> Console:
    console = Console(stderr=True, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=True, highlight=False, width=120)
    return console


def _fail(message: str, code: int) -> NoReturn:
    raise _Failure(message, code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a `_Failure` into its message on stderr and its exit code."""
    try:
        yield
    except _Failure as failure:
        _stderr().print(Text.assemble(("error: ", "bold red"), str(failure)), soft_wrap=True)
        raise typer.Exit(failure.code) from None


def _progress(console: Console, *, rows_field: bool = False) -> Progress:
    """A transient progress bar on stderr, shown only on a terminal.

    With `rows_field` the bar measures something else (bytes of a text file) and the
    task's `rows` field shows the rows done.
    """
    count = TextColumn("{task.fields[rows]:,} rows") if rows_field else MofNCompleteColumn()
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    count, TimeRemainingColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def _version(value: bool) -> None:
    if value:
        try:
            installed = package_version("riskengine")
        except PackageNotFoundError:
            installed = "(not installed)"
        typer.echo(f"riskengine {installed}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Real-time fraud decisions: exact windowed features, safe rules, replayable.

    Start with `riskengine demo`.
    """


# generate -------------------------------------------------------------------------------


def _generate(output: Path, events: int, seed: int, start_ms: int | None,
              console: Console) -> Counter[str]:
    """Write synthetic transfers to `output`; returns the count of each label."""
    try:
        writer = open_writer(output, FIELDS, _TRANSFER_SCHEMA)
    except InputError as exc:
        _fail(str(exc), 2)
    labels: Counter[str] = Counter()
    try:
        with writer, _progress(console) as progress:
            task = progress.add_task("generating", total=events)
            for index, event in enumerate(generate_transfers(events, seed, start_ms), 1):
                writer.write(event)
                labels[event["label"]] += 1
                if index % 8192 == 0:
                    progress.update(task, completed=index)
    except OSError as exc:
        output.unlink(missing_ok=True)
        _fail(f"cannot write {str(output)!r}: {exc.strerror or exc}", 1)
    return labels


def _label_line(labels: Counter[str]) -> str:
    return ", ".join(f"{label} {count:,}" for label, count in labels.most_common())


@app.command()
def generate(
    output: Annotated[Path, typer.Option(
        "--output", "-o", show_default=False,
        help="File to write: .jsonl, .csv or .parquet (the extension picks the format).")],
    events: Annotated[int, typer.Option("--events", "-n", min=0,
                                        help="How many events.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file.")]
    = 0,
    scene: Annotated[str, typer.Option(help="Scene of the traffic (transfer only).")]
    = "transfer",
    start: Annotated[str, typer.Option(
        help="Time of the first event, ISO-8601 (UTC when it has no offset).")]
    = DEFAULT_START,
) -> None:
    """Generate labelled synthetic transfers.

    Background traffic (a daily rhythm, log-normal amounts, repeat receivers) with three
    labelled attacks: mule_drain, card_testing and account_takeover; everything else is
    legit. Rows are in arrival order; a few arrive 1-2 minutes late.
    """
    with _user_errors():
        if scene != "transfer":
            _fail(f"generate makes transfer traffic only (--scene transfer), not {scene!r}", 2)
        try:
            start_ms = parse_start(start)
        except ValueError as exc:
            _fail(f"--start: {exc}", 2)
        labels = _generate(output, events, seed, start_ms, _stderr())
        _stdout().print(f"wrote {events:,} transfers to {output} ({_label_line(labels)})",
                        markup=False)


# replay ---------------------------------------------------------------------------------


def _load_engine(config: Path | None, code: int, state: str | None = None) -> Engine:
    """The engine of `config` (in memory, or on the shared Redis `state`); exits `code`
    when the config or the state cannot be used."""
    return _engine_of(_load_config(config, code), code, state)


def _engine_of(project: ProjectConfig, code: int, state: str | None = None,
               state_timeout_ms: int | None = None) -> Engine:
    """The engine of `project` (in memory, or on the shared Redis `state` with
    `state_timeout_ms`, None: the default); exits `code` when it or the state cannot be
    used. The Redis client is imported only for shared state (a replay starts faster
    without it)."""
    if state is None:
        try:
            return Engine(project)
        except RiskEngineError as exc:
            _fail(f"invalid config: {exc}", code)
    from riskengine.service.shared import shared_engine
    from riskengine.state.redis.codec import StateUnavailableError

    try:
        return shared_engine(project, state, require_state=True,
                             state_timeout_ms=state_timeout_ms)
    except StateUnavailableError as exc:
        _fail(str(exc), code)
    except RiskEngineError as exc:
        _fail(f"invalid config: {exc}", code)


def _load_config(config: Path | None, code: int) -> ProjectConfig:
    """The project config at `config` (None: the example); exits `code` when it cannot be
    used."""
    if config is not None and not config.exists():
        _fail(f"config file {str(config)!r} does not exist", code)
    try:
        return load_config(config)
    except RiskEngineError as exc:
        _fail(f"invalid config: {exc}", code)


def _error_printer(console: Console, further: str) -> Callable[[dict[str, Any]], None]:
    """Prints the first `SHOWN_ERRORS` bad rows on `console`, then `further` once."""
    shown = 0

    def show_error(record: dict[str, Any]) -> None:
        nonlocal shown
        shown += 1
        if shown <= SHOWN_ERRORS:
            console.print(Text.assemble((f"row {record['row']}: ", "yellow"), record["error"]),
                          soft_wrap=True)
        elif shown == SHOWN_ERRORS + 1:
            console.print(further, markup=False, soft_wrap=True)

    return show_error


def _open_input(engine: Engine, scene: str, source: Path) -> RowReader:
    """The rows of `source` for `scene`: CSV typed by the scene schema, a Parquet file's
    columns checked against the scene before any row (InputError otherwise)."""
    reader = open_reader(source, field_types(engine, scene))
    if isinstance(reader, ParquetReader):
        check_parquet(engine, scene, reader.file.schema_arrow, repr(str(source)))
    return reader


def _errors_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.errors.jsonl")


def _replay(engine: Engine, scene: str, source: Path, output: Path, errors: Path,
            limit: int | None) -> tuple[ReplayStats, int]:
    """Replay `source` into `output`; returns the stats and the exit code."""
    if scene not in engine.scenes:
        _fail(f"unknown scene {scene!r}; this config has {', '.join(engine.scenes)}", 2)
    try:
        reader = _open_input(engine, scene, source)
        out_format = file_format(output)
    except InputError as exc:
        _fail(str(exc), 2)
    if out_format == "csv":
        _fail("decisions are written as .jsonl or .parquet (they hold lists and objects)", 2)
    if output.resolve() == source.resolve():
        _fail("the output file would overwrite the input", 2)
    if errors.resolve() in (output.resolve(), source.resolve()):
        _fail("the errors file must differ from the input and the output", 2)
    console = _stderr()
    show_error = _error_printer(console, f"further errors are only written to {errors}")
    try:
        out = open_writer(output, DECISION_FIELDS, DECISION_SCHEMA,
                          jsonl_alike=decision_writes_alike)
        try:
            err = open_writer(errors, ERROR_FIELDS)
        except BaseException:
            out.close()
            raise
    except InputError as exc:
        _fail(str(exc), 2)
    try:
        with out, err, _progress(console, rows_field=True) as progress:
            task = progress.add_task(f"replaying {source.name}", total=reader.total, rows=0)

            def advance(rows: int, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, rows=rows)

            stats = replay_rows(engine, scene, reader, out, err, limit=limit,
                                source=str(source),
                                features_as_json=out_format == "parquet",
                                on_error=show_error, on_progress=advance)
    except InputError as exc:
        _fail(str(exc), 1)
    except OSError as exc:
        _fail(f"replay stopped: {exc.strerror or exc}", 1)
    code = 1 if stats.errors.get("internal") else 0
    if code:
        console.print(Text.assemble(
            ("error: ", "bold red"),
            f"the engine failed on {stats.errors['internal']:,} rows (kind 'internal' in "
            f"{errors}); this is a bug, please report it"), soft_wrap=True)
    return stats, code


ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", show_default=False,
    help="Project config (YAML); default: the example config shipped with riskengine.")]
LimitOption = Annotated[int | None, typer.Option(
    min=0, show_default=False, help="Stop after this many rows (bad rows included).")]
MasterOption = Annotated[str | None, typer.Option(
    show_default=False,
    help="Spark master URL for --runner spark (default local[2]; local[*], "
         "spark://host:7077, yarn, k8s://…).")]
OtelEndpointOption = Annotated[str | None, typer.Option(
    show_default=False, help="Trace with OpenTelemetry: export spans over OTLP/HTTP to this "
                             "collector (http://host:4318; /v1/traces is added). Also on "
                             "with OTEL_EXPORTER_OTLP_ENDPOINT; needs riskengine[otel].")]
PartitionsOption = Annotated[int | None, typer.Option(
    min=1, show_default=False,
    help="Shuffle partitions for --runner spark (default: twice the cores).")]


class Runner(StrEnum):
    local = "local"
    spark = "spark"


def _replay_on_spark(config: Path | None, scene: str, source: str, output: str,
                     errors: Path | None, limit: int | None, master: str | None,
                     partitions: int | None) -> tuple[ReplayStats, int, str]:
    """`replay --runner spark`: the stats, the exit code and the errors file."""
    from riskengine.spark.replay import (
        SparkReplay,
        default_errors_path,
        input_format,
        spark_replay,
    )
    from riskengine.spark.session import SparkUnavailableError, spark_session

    if "://" not in source and not Path(source).exists():
        _fail(f"input {source!r} does not exist", 2)
    fmt = input_format(source)
    if fmt is None:
        _fail("the Spark runner reads JSON Lines or Parquet; convert CSV first "
              "(riskengine replay --runner local reads CSV)", 2)
    if output.rstrip("/").lower().endswith((".jsonl", ".ndjson", ".csv")):
        _fail("the Spark runner writes a Parquet directory: give OUTPUT without .jsonl "
              "(e.g. decisions.parquet)", 2)
    engine = _load_engine(config, 2)
    if scene not in engine.scenes:
        _fail(f"unknown scene {scene!r}; this config has {', '.join(engine.scenes)}", 2)
    errors_text = str(errors) if errors is not None else default_errors_path(output)
    console = _stderr()
    job = SparkReplay.of(engine.config, scene)
    try:
        with console.status("starting Spark") as status:
            spark = spark_session(master, shuffle_partitions=partitions)
            result = spark_replay(spark, job, source, fmt, output, errors_text,
                                  partitions=partitions, limit=limit,
                                  on_stage=lambda stage: status.update(f"Spark: {stage}"))
    except SparkUnavailableError as exc:
        _fail(str(exc), 2)
    except InputError as exc:
        _fail(str(exc), 2)
    return result.stats, 1 if result.stats.errors.get("internal") else 0, errors_text


@app.command()
def replay(
    input: Annotated[str, typer.Argument(
        show_default=False, metavar="INPUT",
        help="Events to replay, in arrival order: .jsonl, .csv or .parquet (with --runner "
             "spark: .jsonl or Parquet, a file or a directory, any Spark path such as "
             "s3a://… or hdfs://…).")],
    output: Annotated[str, typer.Option(
        "--output", "-o", show_default=False,
        help="Decisions to write: .jsonl or .parquet (one record per decided row); with "
             "--runner spark a Parquet directory that must not exist.")],
    config: ConfigOption = None,
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene to evaluate the rows in.")]
    = "transfer",
    limit: LimitOption = None,
    errors: Annotated[Path | None, typer.Option(
        show_default=False,
        help="Where bad rows go (JSON Lines); default: next to OUTPUT, named "
             "<OUTPUT stem>.errors.jsonl (out.jsonl → out.errors.jsonl).")]
    = None,
    summary_json: Annotated[Path | None, typer.Option(
        show_default=False, help="Also write the summary as JSON to this file.")] = None,
    runner: Annotated[Runner, typer.Option(
        help="local: this process, in file order; spark: the same decisions computed by "
             "key on Spark (pip install 'riskengine[spark]').")] = Runner.local,
    master: MasterOption = None,
    partitions: PartitionsOption = None,
) -> None:
    """Replay an event file through the engine and summarise the decisions.

    Rows are evaluated in file order, which is their LSN. Rows are numbered from 1 (the
    line in JSON Lines, the data record in CSV, the row in Parquet); a row without
    event_id gets "row-<number>". CSV values are typed by the scene schema. A row that
    cannot be read or that the engine refuses is printed (the first 10), counted and
    written to the errors file (always written, empty when all rows were fine) with its
    row number, kind, message and field; the run goes on. The input's `label` column, if
    any, is kept out of the engine and used for per-rule precision and recall.

    Exit code 0 on success, 1 if the engine failed on a row, 2 for a missing input,
    a bad config or an unknown scene.
    """
    with _user_errors():
        if runner is Runner.spark:
            stats, code, errors_text = _replay_on_spark(
                config, scene, input, output, errors, limit, master, partitions)
            render_summary(stats, _stdout(), errors_text)
        else:
            source, target = Path(input), Path(output)
            if not source.exists():
                _fail(f"input file {input!r} does not exist", 2)
            engine = _load_engine(config, 2)
            errors_path = errors if errors is not None else _errors_path(target)
            with settled_memory(BATCH_YOUNG_THRESHOLD):  # the GC off the engine's state
                stats, code = _replay(engine, scene, source, target, errors_path, limit)
            render_summary(stats, _stdout(), str(errors_path))
        if summary_json is not None:
            try:
                summary_json.write_text(json.dumps(stats.to_dict(), indent=2) + "\n",
                                        encoding="utf-8")
            except OSError as exc:
                _fail(f"cannot write {str(summary_json)!r}: {exc.strerror or exc}", 1)
        if code:
            raise typer.Exit(code)


# backfill -------------------------------------------------------------------------------


def _spark_backfill(config: ProjectConfig, scene: str, source: Path, fmt: str,
                    master: str | None, partitions: int | None, limit: int | None,
                    on_error: Callable[[dict[str, Any]], None]) -> Compute:
    """`backfill --runner spark`'s step 1 (Spark starts when it runs)."""
    from riskengine.spark.backfill import spark_backfill
    from riskengine.spark.replay import SparkReplay
    from riskengine.spark.session import spark_session

    def compute(engine: Engine) -> ReplayStats:
        spark = spark_session(master, shuffle_partitions=partitions)
        return spark_backfill(
            spark, SparkReplay.of(config, scene), engine, str(source.resolve()), fmt,
            partitions or int(spark.conf.get("spark.sql.shuffle.partitions")), limit=limit,
            on_error=on_error)
    return compute


@app.command()
def backfill(
    input: Annotated[Path, typer.Argument(
        show_default=False, metavar="INPUT",
        help="History, in arrival order: .jsonl, .csv or .parquet.")],
    state_dir: Annotated[Path | None, typer.Option(
        show_default=False, help="Write the snapshot that `riskengine serve --state-dir` "
                                 "restores.")] = None,
    state: Annotated[str | None, typer.Option(
        show_default=False, help="Fill the shared state: redis://host:port/db or "
                                 "redis+cluster://host:port,host:port.")] = None,
    config: ConfigOption = None,
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene of the events.")]
    = "transfer",
    limit: LimitOption = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the state the target holds already.")] = False,
    decision_log: Annotated[str | None, typer.Option(
        show_default=False, help="--state-dir: the decision log the service will use, if "
                                 "not its default (SQLite in the state dir).")] = None,
    errors: Annotated[Path | None, typer.Option(
        show_default=False, help="Also write every bad row here (JSON Lines).")] = None,
    runner: Annotated[Runner, typer.Option(
        help="local: this process, in file order; spark: computed by key on Spark "
             "(--state-dir only).")] = Runner.local,
    master: MasterOption = None,
    partitions: PartitionsOption = None,
) -> None:
    """Fill a scene's state from history so that a service starts warm.

    Rows are run through the engine in file order, exactly as `replay` runs them
    (decisions are not written); a row that cannot be read or that the engine refuses is
    printed (the first 10) and counted, and the run goes on. The state goes to --state-dir
    (a snapshot, written once all rows went through) or to --state (Redis); a target that
    already holds state is refused unless --force.

    Exit code 0 on success; 1 when the run stopped midway (the input became unreadable,
    Redis stopped answering, an engine failure); 2 for a missing input, a bad config, an
    unknown scene, a target that holds state, or Redis that cannot be reached.
    """
    from riskengine.batch.backfill import BackfillStoppedError, render_backfill
    from riskengine.batch.backfill import backfill as run_backfill
    from riskengine.batch.state_targets import RedisTarget, StateDirTarget
    from riskengine.spark.replay import input_format
    from riskengine.spark.session import SparkUnavailableError

    with _user_errors():
        if (state_dir is None) == (state is None):
            _fail("give --state-dir DIR (a service's snapshot) or --state redis://… "
                  "(the shared state), one of them", 2)
        if decision_log is not None and state_dir is None:
            _fail("--decision-log goes with --state-dir", 2)
        if runner is Runner.spark and state_dir is None:
            _fail("the Spark runner writes a state dir (--state-dir); fill Redis with "
                  "--runner local", 2)
        if not input.exists():
            _fail(f"input file {str(input)!r} does not exist", 2)
        engine = _load_engine(config, 2)
        if scene not in engine.scenes:
            _fail(f"unknown scene {scene!r}; this config has {', '.join(engine.scenes)}", 2)
        if errors is not None and errors.resolve() == input.resolve():
            _fail("the errors file would overwrite the input", 2)
        fmt = input_format(str(input)) if runner is Runner.spark else None
        if runner is Runner.spark and fmt is None:
            _fail("the Spark runner reads JSON Lines or Parquet; use --runner local for CSV",
                  2)
        try:
            reader = _open_input(engine, scene, input) if fmt is None else None
            bad_rows = open_writer(errors, ERROR_FIELDS) if errors is not None else None
        except InputError as exc:
            _fail(str(exc), 2)
        target = (StateDirTarget(engine.config, state_dir, decision_log=decision_log,
                                 force=force) if state_dir is not None
                  else RedisTarget(engine.config, str(state), force=force))
        console = _stderr()
        further = ("further errors are only written to " + str(errors) if errors is not None
                   else "further errors are only counted (--errors FILE keeps them all)")
        show = _error_printer(console, further)
        compute = None
        if fmt is not None:  # Spark: its bad rows come to `show` here, written here too

            def show_and_keep(record: dict[str, Any]) -> None:
                show(record)
                if bad_rows is not None:
                    bad_rows.write(record)

            compute = _spark_backfill(engine.config, scene, input, fmt, master, partitions,
                                      limit, show_and_keep)
        try:
            with _progress(console, rows_field=True) as progress:
                task = progress.add_task(f"backfilling {input.name}",
                                         total=reader.total if reader else None, rows=0)

                def advance(rows: int, done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total, rows=rows)

                summary = run_backfill(target, scene, reader, errors=bad_rows, limit=limit,
                                       source=str(input), on_error=show,
                                       on_progress=advance, compute=compute)
        except SparkUnavailableError as exc:
            _fail(str(exc), 2)
        except BackfillStoppedError as exc:
            _fail(f"backfill stopped: {exc}", 1)
        except RiskEngineError as exc:
            _fail(str(exc), 2)
        finally:
            if bad_rows is not None:
                bad_rows.close()
        render_backfill(summary, _stdout())


# backtest -------------------------------------------------------------------------------


@app.command()
def backtest(
    input: Annotated[Path, typer.Argument(
        show_default=False, metavar="INPUT",
        help="Past events, in arrival order: .jsonl, .csv or .parquet.")],
    candidate: Annotated[Path, typer.Option(
        show_default=False,
        help="The candidate ruleset: JSON (or .yaml) {\"rules\": [...], \"policy\": {...}}, "
             "what PUT /v1/scenes/S/ruleset takes.")],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", show_default=False,
        help="Project config (YAML) with the live ruleset; default: the shipped example.")]
    = None,
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene of the events.")]
    = "transfer",
    label_column: Annotated[str, typer.Option(
        help="Column with the ground truth (legit or a fraud label), kept from the rules; "
             "absent: no precision or recall.")] = "label",
    report: Annotated[Path | None, typer.Option(
        show_default=False, file_okay=False,
        help="Write report.md, report.json, PNG charts and errors.jsonl to this new "
             "directory.")] = None,
    limit: LimitOption = None,
    runner: Annotated[str, typer.Option(
        help="Where it runs: local (in this process) or spark (by key on Spark; JSON Lines "
             "or Parquet, a file or a directory).")] = "local",
    master: MasterOption = None,
    partitions: PartitionsOption = None,
) -> None:
    """What a candidate ruleset would have decided on past events, beside the live one.

    Each event is decided once by the engine (features and the live rules), then by the
    candidate on the same features. Prints the decision mix of both, the decisions that
    change, rule hits and, with labels, precision, recall and F1. Bad rows are counted
    and shown as in replay. Exit code 0 on success, 1 if the run or the report failed
    midway or the engine failed on a row, 2 for a missing input, a bad config or
    candidate, an unknown scene or an unusable report directory.
    """
    from riskengine.batch.backtest_command import BacktestCommandError, backtest_command

    with _user_errors():
        engine = _load_engine(config, 2)
        try:
            code = backtest_command(
                engine, source=input, candidate=candidate, scene=scene,
                label_column=label_column, report=report, limit=limit, runner=runner,
                master=master, partitions=partitions, out=_stdout(), err=_stderr(),
                progress=lambda: _progress(_stderr(), rows_field=True))
        except BacktestCommandError as exc:
            _fail(str(exc), exc.code)
        if code:
            raise typer.Exit(code)


# validate -------------------------------------------------------------------------------


def _scene_tables(engine: Engine, scene: str) -> list[Table]:
    config = engine.config.scenes[scene]
    ruleset = engine.ruleset(scene)
    schema = ", ".join(f"{f.name}: {f.type}{'' if f.required else '?'}" for f in config.schema)
    policy = ", ".join(f"{k} {v}" for k, v in ruleset.policy.to_dict().items()
                       if v is not None)
    lists = ", ".join(f"{check.list} on {check.field}" for check in config.list_checks)
    head = Table(title=f"scene {scene}", title_justify="left", show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value")
    head.add_row("schema", schema or "(none)")
    head.add_row("lateness", f"{config.lateness_ms / 1000:g} s")
    head.add_row("lists", lists or "(none)")
    models = engine.scene(scene).models
    versions = models.versions if models is not None else {}
    head.add_row("models", ", ".join(f"{name} version {version}"
                                     for name, version in versions.items()) or "(none)")
    head.add_row("ruleset", f"version {ruleset.version}, {len(ruleset.rules)} rules")
    head.add_row("policy", policy or "(none)")
    features = Table(title=f"{scene}: features", title_justify="left")
    for column in ("output name", "definition", "where"):
        features.add_column(column, overflow="fold")
    for spec in config.features:
        features.add_row(spec.name, spec.canonical, spec.where or "")
    rules = Table(title=f"{scene}: rules (version {ruleset.version})", title_justify="left")
    for column in ("id", "mode", "score", "action", "when"):
        rules.add_column(column, overflow="fold", no_wrap=column == "id")
    for rule in ruleset.rules:
        rules.add_row(rule.id, rule.mode, f"{rule.score:g}", rule.action or "", rule.when)
    return [head, features, rules]


@app.command()
def validate(
    config: ConfigOption = None,
) -> None:
    """Load and compile a config; print its scenes, features, rules and lists.

    Exit code 0 when the config is valid, 1 with the error (naming the scene, feature or
    rule id and position) when it is not.
    """
    with _user_errors():
        engine = _load_engine(config, 1)
        console = _stdout()
        console.print(f"config OK: {engine.config.source}", markup=False)
        for scene in engine.scenes:
            for table in _scene_tables(engine, scene):
                console.print()
                console.print(table)
        lists = Table(title="lists", title_justify="left")
        for column in ("name", "entries", "reason"):
            lists.add_column(column)
        for name in engine.list_store.names():
            lists.add_row(name, f"{len(engine.list_store.entries(name)):,}",
                          engine.list_store.reason(name))
        console.print()
        console.print(lists)


# demo -----------------------------------------------------------------------------------


@app.command()
def demo(
    events: Annotated[int, typer.Option("--events", "-n", min=1, help="How many events.")]
    = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed of the generated traffic.")] = 7,
    duration: Annotated[float | None, typer.Option(
        min=0.1, show_default=False, help="Stop after this many seconds (live demo).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256,
                                             help="HTTP connections (live demo).")] = 16,
    state_dir: Annotated[Path | None, typer.Option(
        show_default=False, file_okay=False,
        help="State directory of the live service (default: a temporary one).")] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="No service: generate, replay in process, summarise.")] = False,
    keep: Annotated[Path | None, typer.Option(
        show_default=False, file_okay=False,
        help="--offline: keep the generated events and the decisions here.")] = None,
    url: Annotated[str | None, typer.Option(
        show_default=False, help="Send to the service running at this URL (none is "
                                 "started; labels need RISKENGINE_ADMIN_TOKEN).")] = None,
    labels: Annotated[bool, typer.Option(
        help="Send the traffic's labels to POST /v1/labels (live demo).")] = True,
) -> None:
    """Start the service with the example config and feed it labelled demo traffic.

    Shows live decisions/s by outcome, latency percentiles, top rules and how outcomes
    line up with the traffic's labels, until Ctrl-C (or --events / --duration). With
    --offline: generate, replay through the engine in process, and print the summary.
    """
    if offline:
        _offline_demo(events if events != 1_000_000 else 50_000, seed, keep)
        return
    import asyncio

    from riskengine.service.demo import run_demo

    out = _stdout()
    with _user_errors():
        try:
            stats = asyncio.run(run_demo(events=events, seed=seed, duration=duration,
                                         concurrency=concurrency, state_dir=state_dir,
                                         config=None, console=out, url=url, labels=labels))
        except RuntimeError as exc:
            _fail(f"demo failed: {exc}", 1)
    out.print(f"sent {stats.sent:,} events, {stats.errors:,} errors", markup=False)
    if labels:
        out.print(f"sent {stats.labels_sent:,} labels, {stats.label_errors:,} refused",
                  markup=False)
    if stats.errors or stats.label_errors:
        raise typer.Exit(1)


def _offline_demo(events: int, seed: int, keep: Path | None) -> None:
    with _user_errors(), tempfile.TemporaryDirectory(prefix="riskengine-demo-") as tmp:
        workdir = Path(tmp)
        if keep is not None:
            try:
                keep.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                _fail(f"cannot create {str(keep)!r}: {exc.strerror or exc}", 2)
            workdir = keep
        source = workdir / "transfers.jsonl"
        output = workdir / "decisions.jsonl"
        out = _stdout()
        labels = _generate(source, events, seed, None, _stderr())
        out.print(f"generated {events:,} transfers (seed {seed}): {_label_line(labels)}",
                  markup=False)
        engine = _load_engine(None, 1)
        stats, code = _replay(engine, "transfer", source, output, _errors_path(output), None)
        out.print()
        render_summary(stats, out, None)
        if keep is not None:
            out.print(f"\nevents: {source}\ndecisions: {output}", markup=False)
        if code:
            raise typer.Exit(code)


# serve ----------------------------------------------------------------------------------


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", show_default=False, dir_okay=False,
        help="Project config (YAML); default: the shipped example.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    state_dir: Annotated[Path, typer.Option(
        file_okay=False, help="Snapshots, ruleset versions, list changes, the SQLite "
                              "decision log, the generated admin token.")]
    = Path("riskengine-state"),
    decision_log: Annotated[str | None, typer.Option(
        show_default=False, help="sqlite:///file.db or postgresql://user@host:port/db "
                                 "(default: SQLite in the state dir).")] = None,
    state: Annotated[str | None, typer.Option(
        show_default=False, help="Shared state: redis://host:port/db or "
                                 "redis+cluster://host:port,host:port (default: in memory, "
                                 "snapshots in the state dir).")] = None,
    state_timeout: Annotated[str | None, typer.Option(
        show_default=False, help="Budget of each round trip to the shared state, e.g. 50ms "
                                 "(default 50ms; or the config's service: state_timeout); "
                                 "past it the answer is the scene's fallback.")] = None,
    watch: Annotated[bool, typer.Option(help="Reload rules and lists when the config "
                                             "file changes.")] = True,
    mirror: Annotated[str | None, typer.Option(
        show_default=False, help="Copy every answered evaluate request to this candidate "
                                 "service (http://host:port) and compare its decisions: "
                                 "GET /v1/mirror.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    guard_decisions: Annotated[int | None, typer.Option(
        show_default=False, help="Guarded rollout: judge a new ruleset version on its first N "
                                 "decisions against the previous version's last N (turns "
                                 "the guard on; default N 1000).")] = None,
    guard_factor: Annotated[float | None, typer.Option(
        show_default=False, help="Guarded rollout: roll back when the review or reject rate "
                                 "is above this many times the previous one (default 3).")]
    = None,
    guard_min_delta: Annotated[float | None, typer.Option(
        show_default=False, help="Guarded rollout: the rate must also be more than this "
                                 "above the previous one, as a fraction (default 0.01).")]
    = None,
    otel_endpoint: OtelEndpointOption = None,
    backtests_dir: Annotated[Path | None, typer.Option(
        file_okay=False, show_default=False,
        help="The backtest reports the console lists and writes (default: "
             "STATE_DIR/backtests; or the config's service: backtests).")] = None,
) -> None:
    """Run the HTTP decision service (FastAPI on uvicorn). API docs at /docs.

    Tokens come from RISKENGINE_ADMIN_TOKEN / RISKENGINE_API_TOKEN or the config's
    `service:` section; without an admin token one is written to STATE_DIR/admin-token.
    A --guard-* flag turns the guarded rollout on (in place of the config's
    `service: guard:`).
    The mirror's options are in the config's `service: {mirror: {...}}` section, its
    token for the candidate in RISKENGINE_MIRROR_TOKEN.
    """
    from riskengine.service.mirror_settings import MirrorSettings, parse_mirror_url
    from riskengine.service.server import WorkersNeedSharedState, build_server, run_workers
    from riskengine.service.settings import ServiceSettings, parse_guard
    from riskengine.state.budget import parse_state_timeout
    from riskengine.tracing import tracing_settings

    with _user_errors():
        if config is not None and not config.exists():
            _fail(f"config file {str(config)!r} does not exist", 2)
        if log_level.lower() not in ("debug", "info", "warning", "error"):
            _fail("--log-level must be debug, info, warning or error", 2)
        flags = {name: value for name, value in (("decisions", guard_decisions),
                                                  ("factor", guard_factor),
                                                  ("min_delta", guard_min_delta))
                 if value is not None}
        try:
            guard = parse_guard(flags, "--guard-*") if flags else None
        except RiskEngineError as exc:
            _fail(str(exc), 2)
        try:
            mirrored = None if mirror is None else MirrorSettings(parse_mirror_url(mirror))
        except RiskEngineError as exc:
            _fail(str(exc), 2)
        try:
            tracing = tracing_settings(otel_endpoint, "riskengine")
            timeout_ms = (None if state_timeout is None
                          else parse_state_timeout(state_timeout, "--state-timeout"))
        except RiskEngineError as exc:
            _fail(str(exc), 2)
        settings = ServiceSettings(config=config, state_dir=state_dir, decision_log=decision_log,
                                   state=state, state_timeout_ms=timeout_ms,
                                   watch_config=watch, guard=guard, mirror=mirrored,
                                   tracing=tracing,
                                   backtests_dir=backtests_dir)
        if workers > 1:
            try:
                run_workers(settings, host=host, port=port, workers=workers,
                            log_level=log_level.lower())
            except WorkersNeedSharedState as exc:
                _fail(str(exc), 2)
            except RiskEngineError as exc:
                _fail(f"cannot start: {exc}", 2)
            return
        try:
            server, runtime = build_server(settings, host=host, port=port, workers=workers,
                                           log_level=log_level.lower())
        except WorkersNeedSharedState as exc:
            _fail(str(exc), 2)
        except RiskEngineError as exc:
            _fail(f"cannot start: {exc}", 2)
        token_file = runtime.state_dir / "admin-token"
        if not os.environ.get("RISKENGINE_ADMIN_TOKEN") and token_file.exists():
            _stderr().print(f"admin token: see {token_file}", markup=False)
        server.run()


# worker ---------------------------------------------------------------------------------


@app.command()
def worker(
    source: Annotated[str, typer.Option(
        help="Input (JSON events): kafka://host:port/topic or "
             "redis-stream://host:port/db/stream (the event in field 'event').")],
    sink: Annotated[str | None, typer.Option(
        show_default=False, help="Decisions: kafka://host:port/topic or "
                                 "redis-stream://host:port/db/stream (not with --dry-run).")]
    = None,
    group: Annotated[str, typer.Option(help="Consumer group.")] = "riskengine",
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", show_default=False, dir_okay=False,
        help="Project config (YAML); default: the shipped example.")] = None,
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene of the events.")]
    = "transfer",
    dead_letter: Annotated[str | None, typer.Option(
        show_default=False, help="Poison messages: kafka://host:port/topic (default: "
                                 "logged and skipped).")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        show_default=False, file_okay=False,
        help="Checkpoint folder of the in-memory state: restored at start, written on "
             "exit and every --checkpoint-interval seconds.")] = None,
    state: Annotated[str | None, typer.Option(
        show_default=False, help="Shared state: redis://host:port/db or "
                                 "redis+cluster://host:port,host:port (default: in "
                                 "memory).")] = None,
    state_timeout: Annotated[str | None, typer.Option(
        show_default=False,
        help="With --state: the budget of each Redis round trip, 1ms to 60s (default: "
             "the config's worker: state_timeout, else 50ms); the stream is held while "
             "the state does not answer within it.")] = None,
    checkpoint_interval: Annotated[float, typer.Option(
        min=1.0, help="Seconds between checkpoints of the in-memory state.")] = 300.0,
    max_events: Annotated[int | None, typer.Option(
        min=0, show_default=False, help="Stop after this many messages.")] = None,
    idle_exit: Annotated[float | None, typer.Option(
        min=0.1, show_default=False, help="Stop after this many seconds without input.")]
    = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000,
                                            help="Messages per produce/commit cycle.")] = 1000,
    kafka_option: Annotated[list[str] | None, typer.Option(
        "--kafka-option", "-X", show_default=False,
        help="librdkafka KEY=VALUE; prefix consumer: or producer: for one client only.")]
    = None,
    from_offset: Annotated[int | None, typer.Option(
        min=0, show_default=False,
        help="Replay every partition from this offset, to the end (no group offsets).")]
    = None,
    from_timestamp: Annotated[str | None, typer.Option(
        show_default=False, help="Replay every partition from the first message stamped at "
                                 "or after this time (epoch ms or ISO-8601), to the end.")]
    = None,
    dry_run: Annotated[bool, typer.Option(
        help="Decide and count, produce nothing (no --sink needed).")] = False,
    ruleset: Annotated[Path | None, typer.Option(
        show_default=False, dir_okay=False,
        help="The scene's rules from this JSON/YAML file ({\"rules\": [...], "
             "\"policy\": {...}}, as GET /v1/scenes/S/ruleset gives).")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        min=0, max=65535, show_default=False,
        help="Serve Prometheus metrics on HOST:PORT/metrics (--metrics-host).")] = None,
    metrics_host: Annotated[str, typer.Option(
        help="Address of --metrics-port (0.0.0.0: every interface, as in a "
             "container).")] = "127.0.0.1",
    consumer: Annotated[str | None, typer.Option(
        show_default=False, help="Redis Streams consumer name (default host-pid); keep it "
                                 "across restarts.")] = None,
    claim_idle: Annotated[int, typer.Option(
        min=1, help="Redis Streams: take over entries pending this many ms at another "
                    "consumer.")] = 30_000,
    session_timeout: Annotated[str | None, typer.Option(
        show_default=False,
        help="Kafka consumer group session timeout (e.g. 6s; default: the config's "
             "worker: session_timeout, else 6s).")] = None,
    processes: Annotated[int | None, typer.Option(
        show_default=False,
        help="Kafka: run this many worker processes in the group, one per core (default: "
             "the config's worker: processes, else 1); process i checkpoints to "
             "STATE_DIR/worker-i and serves metrics on METRICS_PORT+i.")] = None,
    otel_endpoint: OtelEndpointOption = None,
) -> None:
    """Decide a stream of events (Kafka or Redis Streams) into decisions (at least once).

    Offsets are committed after the decisions are acknowledged; SIGTERM finishes the batch
    in flight, commits and checkpoints. With --from-offset / --from-timestamp it replays
    past traffic instead. See riskengine.stream.kafka for partitioning.
    """
    import logging

    from riskengine.stream.kafka import WorkerSettings
    from riskengine.stream.processes import EngineSource, run_processes, total
    from riskengine.stream.runner import build_settings, run_foreground, use_ruleset_file
    from riskengine.stream.section import worker_section, worker_state_timeout
    from riskengine.tracing import tracing_settings

    with _user_errors():
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        try:
            tracing = tracing_settings(otel_endpoint, "riskengine-worker")
        except RiskEngineError as exc:
            _fail(str(exc), 2)
        if state is not None and state_dir is not None:
            _fail("--state-dir checkpoints the in-memory state; with --state the state is in "
                  "Redis (use its persistence): give one of them", 2)
        project = _load_config(config, 2)
        try:
            section = worker_section(project.worker)
            timeout_ms = worker_state_timeout(state_timeout, state, section)
        except RiskEngineError as exc:
            _fail(str(exc), 2)
        engine = _engine_of(project, 2, state, timeout_ms)
        try:
            settings = build_settings(
                source=source, sink=sink, dead_letter=dead_letter, group=group, scene=scene,
                state_dir=state_dir, max_events=max_events, idle_exit_s=idle_exit,
                batch_size=batch_size, kafka_options=kafka_option or [],
                checkpoint_interval_s=checkpoint_interval, from_offset=from_offset,
                from_timestamp=from_timestamp, dry_run=dry_run, metrics_port=metrics_port,
                metrics_host=metrics_host,
                consumer_name=consumer, claim_idle_ms=claim_idle, tracing=tracing,
                session_timeout=session_timeout, section=section)
            if ruleset is not None:
                version = use_ruleset_file(engine, scene, ruleset)
                logging.getLogger("riskengine").info("scene %s: ruleset %s from %s", scene,
                                                     version, ruleset)
            n = processes if processes is not None else section.processes or 1
            if n == 1:
                stats = run_foreground(engine, settings)
            elif not isinstance(settings, WorkerSettings):
                _fail("--processes runs Kafka consumers in one group: it is for kafka:// "
                      "sources", 2)
            else:
                engine.close()  # each process builds its own
                each = run_processes(EngineSource(config, state, ruleset, timeout_ms),
                                     settings, n)
                for index, done in enumerate(each):
                    _stdout().print(f"worker process {index}: {_worker_summary(done)}",
                                    markup=False)
                stats = total(each)
        except RiskEngineError as exc:
            _fail(str(exc), 1)
        finally:
            close = getattr(engine, "close", None)  # Redis state: its connections
            if close is not None:
                close()
        _stdout().print(_worker_summary(stats), markup=False)


def _worker_summary(stats: WorkerStats) -> str:
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.by_decision.items()))
    return (f"decided {stats.decided:,} events ({counts or 'none'}), "
            f"{stats.dead_lettered:,} dead-lettered, {stats.redelivered:,} redeliveries"
            + (f", {stats.rebuilt:,} re-read to rebuild the state after an unclean stop"
               if stats.rebuilt else ""))


# spark-stream ---------------------------------------------------------------------------


@app.command("spark-stream")
def spark_stream(
    source: Annotated[str, typer.Option(help="Input (JSON events): kafka://host:port/topic.")],
    sink: Annotated[str, typer.Option(help="Decisions: kafka://host:port/topic.")],
    checkpoint: Annotated[Path, typer.Option(
        help="Checkpoint folder: offsets, state store, sink ledger; keep it to resume.")],
    master: Annotated[str | None, typer.Option(
        show_default=False, help="Spark master URL (default local[2]; local[*], "
                                 "spark://host:7077, yarn, k8s://…).")] = None,
    config: ConfigOption = None,
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene of the events.")]
    = "transfer",
    dead_letter: Annotated[str | None, typer.Option(
        show_default=False, help="Poison messages: kafka://host:port/topic (default: "
                                 "logged and skipped).")] = None,
    trigger_ms: Annotated[int, typer.Option(min=0, help="Milliseconds between micro-batches.")]
    = 1000,
    once: Annotated[bool, typer.Option(
        "--once", help="One micro-batch (at most --max-records-per-batch), then stop.")]
    = False,
    available_now: Annotated[bool, typer.Option(
        "--available-now", help="Everything available at the start, in micro-batches, "
                                "then stop.")] = False,
    max_records_per_batch: Annotated[int | None, typer.Option(
        min=1, show_default=False, help="At most this many messages per micro-batch.")]
    = None,
    kafka_option: Annotated[list[str] | None, typer.Option(
        "--kafka-option", "-X", show_default=False,
        help="librdkafka KEY=VALUE; prefix consumer: or producer: for one client only.")]
    = None,
) -> None:
    """Decide a Kafka topic with Spark Structured Streaming into a decisions topic.

    The stream worker's decisions (per partition in offset order, its own scene clock),
    with the state in Spark's state store and offsets in the checkpoint. Exit code 2 for a
    bad option, config, scene or checkpoint folder; 1 when the job cannot run or fails.
    """
    import logging

    from riskengine.spark import stream_command

    with _user_errors():
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger("py4j").setLevel(logging.WARNING)
        if config is not None and not config.exists():
            _fail(f"config file {str(config)!r} does not exist", 2)
        try:
            settings = stream_command.prepare(
                config=config, source=source, sink=sink, dead_letter=dead_letter,
                checkpoint=checkpoint, scene=scene, master=master, trigger_ms=trigger_ms,
                once=once, available_now=available_now,
                max_records_per_batch=max_records_per_batch, kafka_options=kafka_option or [])
        except ConfigError as exc:
            _fail(f"invalid config: {exc}", 2)
        except RiskEngineError as exc:
            _fail(str(exc), 2)
        try:
            line = stream_command.run(config, settings)
        except RiskEngineError as exc:
            _fail(str(exc), 1)
        _stdout().print(line, markup=False)


# labels and experiments (the decision log) ---------------------------------------------

labels_app = typer.Typer(no_args_is_help=True, help="Labels of decided events (fraud, "
                                                    "legit, chargeback, …).")
experiments_app = typer.Typer(no_args_is_help=True, help="Live experiments: the arms "
                                                         "compared on logged decisions.")
app.add_typer(labels_app, name="labels")
app.add_typer(experiments_app, name="experiments")

StateDirOption = Annotated[Path, typer.Option(
    file_okay=False, help="The service's state directory (its SQLite decision log).")]
DecisionLogOption = Annotated[str | None, typer.Option(
    show_default=False, help="sqlite:///file.db or postgresql://user@host:port/db "
                             "(default: SQLite in the state dir).")]


def _existing_log(state_dir: Path, decision_log: str | None) -> Any:
    """The decision log the service of `state_dir` (or `decision_log`) writes; a missing
    SQLite default is a usage error, not a new empty log."""
    from riskengine.decisionlog import DecisionLogError, open_log
    from riskengine.service.runtime import DECISIONS_FILE

    default = state_dir / DECISIONS_FILE
    if decision_log is None and not default.exists():
        _fail(f"no decision log at {str(default)!r}; give --state-dir of a service or "
              "--decision-log URL", 2)
    try:
        return open_log(decision_log, path_default=default)
    except DecisionLogError as exc:
        _fail(str(exc), 2)


@labels_app.command("import")
def labels_import(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="JSON Lines or CSV: event_id, "
                                                              "label[, time, source].")],
    state_dir: StateDirOption = Path("riskengine-state"),
    decision_log: DecisionLogOption = None,
) -> None:
    """Store labels in the decision log (a newer label of an event replaces the older).

    Bad rows are reported on stderr with their line numbers and the good ones stored;
    the exit code is 1 when any row was bad, 2 when the file or the log cannot be used.
    """
    from riskengine.decisionlog import DecisionLogError
    from riskengine.decisionlog.label_files import LabelFileError, import_labels

    err = _stderr()
    with _user_errors():
        if not file.is_file():
            _fail(f"label file {str(file)!r} does not exist", 2)
        log = _existing_log(state_dir, decision_log)
        try:
            result = import_labels(log, file, lambda line, exc: err.print(
                f"line {line}: {exc}", markup=False, soft_wrap=True))
        except LabelFileError as exc:
            _fail(str(exc), 2)
        except DecisionLogError as exc:
            _fail(str(exc), 1)
        finally:
            log.close()
        _stdout().print(f"{result.stored:,} labels stored, {result.bad:,} bad rows of "
                        f"{result.rows:,}", markup=False)
        if result.bad:
            raise typer.Exit(1)


@experiments_app.command("report")
def experiments_report(
    scene: Annotated[str, typer.Option(help="The scene whose experiment to report.")],
    since: Annotated[str | None, typer.Option(
        show_default=False, help="From this event time (epoch ms or ISO-8601).")] = None,
    until: Annotated[str | None, typer.Option(
        show_default=False, help="Before this event time (epoch ms or ISO-8601).")] = None,
    state_dir: StateDirOption = Path("riskengine-state"),
    decision_log: DecisionLogOption = None,
    amount_field: Annotated[str, typer.Option(
        help="The event field holding the money at stake.")] = "amount",
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """Compare the arms of SCENE's experiment on its logged decisions, labels joined
    (what GET /v1/scenes/{scene}/experiments answers): one report per experiment version,
    the latest first."""
    from riskengine.batch.backtest_report import experiment_tables, render_tables
    from riskengine.batch.experiment_report import compare_experiments
    from riskengine.decisionlog import DecisionLogError
    from riskengine.events import parse_timestamp_text
    from riskengine.exceptions import EventValidationError

    with _user_errors():
        bounds: dict[str, int | None] = {}
        for name, value in (("since", since), ("until", until)):
            try:
                bounds[name] = None if value is None else parse_timestamp_text(value)
            except EventValidationError as exc:
                _fail(f"--{name}: {exc}", 2)
        log = _existing_log(state_dir, decision_log)
        try:
            report = compare_experiments(log, scene, since=bounds["since"],
                                         until=bounds["until"], amount_field=amount_field)
        except DecisionLogError as exc:
            _fail(str(exc), 1)
        finally:
            log.close()
    out = _stdout()
    if as_json:
        out.print_json(json.dumps(report))
        return
    if not report["experiments"]:
        out.print(f"no decision of scene {scene!r} in the period was made by an experiment "
                  f"({report['without_experiment']:,} without one)", markup=False)
        return
    for tally in report["experiments"]:
        render_tables(experiment_tables(scene, tally, terminal=True), out)
    out.print(f"{report['without_experiment']:,} decisions without an experiment",
              markup=False)


def run() -> None:
    """Entry point of ``python -m riskengine``."""
    app(prog_name="riskengine")
