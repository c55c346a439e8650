"""Backtests the service runs itself: a stored ruleset version against the live one, on
the decision log's events of a period (riskengine/batch/log_backtest.py), with the
report written into the backtest reports' directory like ``riskengine backtest
--report``.

One runs at a time per process, in a background thread (the event loop keeps serving);
`job` is the latest one, running, finished or failed, for the console to show. The
report directory is made before the thread starts, so a directory that cannot be
written is refused at once; a run that fails leaves no report (`ReportDir`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from riskengine.batch.backtest_report import ReportDir
from riskengine.batch.charts import ChartsUnavailableError, check_charts, write_charts
from riskengine.batch.log_backtest import backtest_logged
from riskengine.batch.report_store import ReportStore
from riskengine.exceptions import RiskEngineError

if TYPE_CHECKING:
    from pathlib import Path

    from riskengine.rules.ruleset import Ruleset
    from riskengine.scene import Lineup
    from riskengine.service.runtime import ServiceRuntime

__all__ = ["MAX_EVENTS", "BacktestBusyError", "BacktestJob", "LogBacktests",
           "UnknownVersionError"]

log = logging.getLogger("riskengine.service")

MAX_EVENTS = 1_000_000
"""The most events one backtest counts."""


class BacktestBusyError(RiskEngineError):
    """A backtest is running already."""


class UnknownVersionError(RiskEngineError):
    """The scene has no stored ruleset version of that name."""


@dataclass
class BacktestJob:
    """One backtest the service runs: what, and how far it got."""

    name: str
    scene: str
    candidate: str
    live: str
    since: int | None
    until: int | None
    limit: int
    started_ms: int
    state: str = "running"  # running | finished | failed
    events: int = 0
    finished_ms: int | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scene": self.scene, "candidate": self.candidate,
                "live": self.live, "since": self.since, "until": self.until,
                "limit": self.limit, "started_ms": self.started_ms, "state": self.state,
                "events": self.events, "finished_ms": self.finished_ms, "error": self.error}


def _draw(doc: dict[str, Any], directory: Path) -> dict[str, str]:
    """The report's PNG charts when matplotlib is installed; none otherwise."""
    try:
        check_charts()
    except ChartsUnavailableError:
        return {}
    return write_charts(doc, directory)


class LogBacktests:
    """Starts backtests on the service's decision log, one at a time (module docstring)."""

    def __init__(self, rt: ServiceRuntime, store: ReportStore) -> None:
        self.rt = rt
        self.store = store
        self.job: BacktestJob | None = None
        self._lock = threading.Lock()

    def start(self, scene: str, version: str, *, since: int | None, until: int | None,
              limit: int) -> BacktestJob:
        """Start backtesting ruleset `version` of `scene` against the live one;
        `BacktestBusyError`, `UnknownVersionError`, `UnknownSceneError` or `ReportError`
        (the directory cannot be written) before anything runs."""
        if not 1 <= limit <= MAX_EVENTS:
            raise ValueError(f"limit must be from 1 to {MAX_EVENTS:,} events")
        if since is not None and until is not None and since >= until:
            raise ValueError("since must be before until")
        with self._lock:
            if self.job is not None and self.job.state == "running":
                raise BacktestBusyError(f"backtest {self.job.name} is running; one at a time")
            candidate = self.rt.rulesets.get(scene, version)
            if candidate is None:
                raise UnknownVersionError(f"scene {scene!r} has no ruleset version "
                                          f"{version[:100]!r}")
            live = self.rt.engine.scene(scene).lineup
            now = int(time.time() * 1000)
            try:
                self.store.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ValueError(f"cannot make the backtest reports' directory "
                                 f"{str(self.store.root)!r}: {exc.strerror or exc}") from None
            name = self.store.new_name(f"{scene}-{version}", now)
            report = ReportDir(self.store.path(name), draw=_draw)
            job = BacktestJob(name, scene, version, live.ruleset.version, since, until, limit,
                              now)
            self.job = job
            thread = threading.Thread(target=self._run, args=(job, report, live, candidate),
                                      name="riskengine-backtest", daemon=True)
            thread.start()
        return job

    def _run(self, job: BacktestJob, report: ReportDir, live: Lineup,
             candidate: Ruleset) -> None:
        def progress(events: int) -> None:
            job.events = events

        state = "failed"
        try:
            with report:
                comparison, run = backtest_logged(
                    self.rt.config, self.rt.log, job.scene, live=live,
                    lists=self.rt.engine.lists, candidate=candidate, since=job.since,
                    until=job.until, limit=job.limit, on_progress=progress,
                    on_error=report.errors.write)
                report.finish({"run": run.to_dict(), **comparison.to_dict()})
            state = "finished"
        except Exception as exc:  # shown on the console; the service goes on
            job.error = f"{type(exc).__name__}: {exc}"[:2000]
            log.warning("backtest %s failed: %s", job.name, job.error)
        finally:
            job.finished_ms = int(time.time() * 1000)
            job.state = state
            job.done.set()
