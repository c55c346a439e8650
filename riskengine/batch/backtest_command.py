"""The body of ``riskengine backtest``: check everything, run, summarise, write the report.

Everything a user can get wrong — the runner, the scene, the input, the candidate, the
report directory, matplotlib for the charts — is checked before the first row is read,
and is a `BacktestCommandError` with exit code 2. A run that stops midway (a file that
becomes unreadable, a report that cannot be written) is exit code 1, and so is a run in
which the engine failed on a row (a bug, reported as kind ``internal``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.text import Text

from riskengine.batch.backtest import RUNNERS, Backtest, Hooks
from riskengine.batch.backtest_report import ReportDir, ReportError, render_backtest
from riskengine.batch.candidate import CandidateError, load_candidate
from riskengine.batch.charts import ChartsUnavailableError, check_charts
from riskengine.batch.io import InputError
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError, UnknownSceneError
from riskengine.spark.session import SparkUnavailableError

__all__ = ["SHOWN_ERRORS", "BacktestCommandError", "backtest_command"]

SHOWN_ERRORS = 10
"""How many bad rows are printed on stderr; all of them go to the report's errors.jsonl."""


class BacktestCommandError(RiskEngineError):
    """A backtest that cannot run or finish: the message and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _prepare(engine: Engine, source: Path, candidate: Path, scene: str, label_column: str,
             limit: int | None, runner: str, master: str | None = None,
             partitions: int | None = None) -> Backtest:
    if runner not in RUNNERS:
        raise BacktestCommandError(f"unknown runner {runner!r}; use {', '.join(RUNNERS)}", 2)
    try:
        runtime = engine.scene(scene)
    except UnknownSceneError:
        raise BacktestCommandError(f"unknown scene {scene!r}; this config has "
                                   f"{', '.join(engine.scenes)}", 2) from None
    if not label_column:
        raise BacktestCommandError("--label-column must name a column", 2)
    try:
        ruleset = load_candidate(candidate, runtime)
    except CandidateError as exc:
        raise BacktestCommandError(str(exc), 2) from None
    backtest = Backtest(engine, scene, source, ruleset, candidate, label_column, limit,
                        master=master, partitions=partitions)
    if runner == "spark":  # any file or directory Spark reads; its columns checked there
        if not source.exists():
            raise BacktestCommandError(f"input {str(source)!r} does not exist", 2)
        if source.suffix.lower() == ".csv":
            raise BacktestCommandError("the Spark runner reads JSON Lines or Parquet; use "
                                       "--runner local for CSV", 2)
        return backtest
    try:
        backtest.reader()
    except InputError as exc:
        raise BacktestCommandError(str(exc), 2) from None
    return backtest


def backtest_command(engine: Engine, *, source: Path, candidate: Path, scene: str,
                     label_column: str, report: Path | None, limit: int | None, runner: str,
                     out: Console, err: Console, progress: Callable[[], Progress],
                     master: str | None = None, partitions: int | None = None) -> int:
    """Run the backtest; print the summary on `out`, bad rows and the progress bar (from
    `progress()`) on `err`; write the report to `report`. Returns the exit code."""
    backtest = _prepare(engine, source, candidate, scene, label_column, limit, runner,
                        master, partitions)
    with ExitStack() as stack:
        report_dir = None
        if report is not None:
            try:
                check_charts()
                report_dir = stack.enter_context(ReportDir(report))
            except (ChartsUnavailableError, ReportError, InputError) as exc:
                raise BacktestCommandError(str(exc), 2) from None
        shown = 0

        def on_error(record: dict[str, Any]) -> None:
            nonlocal shown
            if report_dir is not None:
                report_dir.errors.write(record)
            shown += 1
            if shown <= SHOWN_ERRORS:
                err.print(Text.assemble((f"row {record['row']}: ", "yellow"), record["error"]),
                          soft_wrap=True)
            elif shown == SHOWN_ERRORS + 1:
                where = f"; all of them go to {report / 'errors.jsonl'}" if report else ""
                err.print(f"further bad rows are not shown{where}", markup=False,
                          soft_wrap=True)

        try:
            with progress() as bar:
                task = bar.add_task(f"backtesting {source.name}", total=None, rows=0)

                def on_progress(rows: int, done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total, rows=rows)

                comparison, run = RUNNERS[runner](backtest, Hooks(on_error, on_progress))
        except SparkUnavailableError as exc:
            raise BacktestCommandError(str(exc), 2) from None
        except InputError as exc:
            raise BacktestCommandError(str(exc), 1) from None
        except OSError as exc:
            raise BacktestCommandError(f"backtest stopped: {exc.strerror or exc}", 1) from None
        doc = {"run": run.to_dict(), **comparison.to_dict()}
        render_backtest(doc, out)
        if report_dir is not None:
            try:
                report_dir.finish(doc)
            except (ReportError, ChartsUnavailableError) as exc:
                raise BacktestCommandError(str(exc), 1) from None
            except OSError as exc:
                raise BacktestCommandError(f"cannot write the report {str(report)!r}: "
                                           f"{exc.strerror or exc}", 1) from None
            out.print(f"\nreport: {report_dir.directory / 'report.md'}", markup=False,
                      soft_wrap=True)
    internal = run.errors.get("internal", 0)
    if internal:
        err.print(Text.assemble(
            ("error: ", "bold red"),
            f"the engine failed on {internal:,} rows (kind 'internal'); this is a bug, "
            "please report it"), soft_wrap=True)
        return 1
    return 0
