"""Backtest a candidate ruleset on the events the decision log holds.

What ``riskengine backtest`` does with a file of events, done with the service's own
log: each logged event of the scene is decided by a fresh engine (its own state in
memory, the service's lists and model versions) with the live ruleset (the ``live`` arm)
and by the candidate on the same features (`ArmDecider`, riskengine/batch/arms.py), and
counted into an `ArmComparison`, labels joined from the log.

Which events: the scene's logged events in LSN order (`DecisionLog.events_after`), from
the first one of the warm-up period before `since` (the scene's longest window, at most
`MAX_WARMUP_MS`: it fills the state, so the first events of the period see their
history) to the last of the period; those with `since <= event time < until` are
counted, at most `limit` of them. An event logged in the period after the last one by
event time (a late arrival) may be left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from riskengine.batch.arms import CANDIDATE, ArmDecider
from riskengine.batch.backtest import BacktestRun, decide_rows
from riskengine.batch.candidate import describe_changes
from riskengine.batch.io import Row
from riskengine.batch.metrics import ArmComparison
from riskengine.config import ProjectConfig
from riskengine.decisionlog import DecisionLog
from riskengine.engine import Engine
from riskengine.lists import Lists
from riskengine.rules.ruleset import Ruleset
from riskengine.scene import Lineup

__all__ = ["LABEL_KEY", "MAX_WARMUP_MS", "SAMPLES", "backtest_logged", "logged_rows"]

MAX_WARMUP_MS = 86_400_000
SAMPLES = 5
LABEL_KEY = "\x00label"
"""Where a logged event carries its label to `decide_rows` (no event field has this name:
it is taken out before the engine sees the event)."""
CHUNK = 500

Progress = Callable[[int], None]


def logged_rows(log: DecisionLog, scene: str, first_lsn: int, last_lsn: int
                ) -> Iterator[Row]:
    """The scene's logged events with `first_lsn <= LSN <= last_lsn`, in LSN order, each
    with its label (if any) under `LABEL_KEY`; the row number is the LSN."""
    events = ((lsn, event) for lsn, name, event in log.events_after(first_lsn - 1)
              if name == scene)
    while True:
        chunk = []
        for lsn, event in islice(events, CHUNK):
            if lsn > last_lsn:
                break
            chunk.append((lsn, event))
        if not chunk:
            return
        labels = log.labels_for(str(event.get("event_id")) for _, event in chunk)
        for lsn, event in chunk:
            label = labels.get(str(event.get("event_id")))
            if label is not None:
                event[LABEL_KEY] = label.label
            yield Row(lsn, event)
        if len(chunk) < CHUNK:
            return


def _bounds(log: DecisionLog, scene: str, since: int | None, until: int | None,
            warmup_ms: int) -> tuple[int, int] | None:
    """The LSNs of the first event of the warm-up and of the last event of the period;
    None when the period holds no event of the scene."""
    newest = log.query(scene, since=since, until=until, limit=1)
    if not newest:
        return None
    start = None if since is None else since - warmup_ms
    first = next(log.labelled_decisions(scene, start, until, chunk_size=1), None)
    if first is None:
        return None
    return first.lsn, int(newest[0]["lsn"])


def backtest_logged(config: ProjectConfig, log: DecisionLog, scene: str, *,
                    live: Lineup, lists: Lists, candidate: Ruleset,
                    since: int | None = None, until: int | None = None,
                    limit: int = 100_000, on_progress: Progress | None = None,
                    on_error: Callable[[dict[str, Any]], None] | None = None
                    ) -> tuple[ArmComparison, BacktestRun]:
    """Backtest `candidate` against the `live` lineup's ruleset (and its model versions)
    on the logged events of `scene` (see the module docstring); `on_progress(counted)`
    every few hundred events."""
    engine = Engine(config)
    engine.use_lists(lists)
    runtime = engine.scene(scene)
    runtime.lineup = Lineup(live.ruleset, None, live.models)
    decider = ArmDecider(engine, scene, {CANDIDATE: candidate})
    comparison = ArmComparison(decider.arms, samples=SAMPLES, rules=decider.rules())
    period = " to ".join(_when(bound) for bound in (since, until))
    run = BacktestRun(scene, f"decision log, event time {period}", "decision log",
                      decider.versions(), None, LABEL_KEY,
                      describe_changes(live.ruleset, candidate))
    started = time.perf_counter()
    bounds = _bounds(log, scene, since, until,
                     min(runtime.max_window_ms, MAX_WARMUP_MS))
    counted = 0
    if bounds is not None:
        rows = logged_rows(log, scene, *bounds)
        low = -(2 ** 63) if since is None else since
        high = 2 ** 63 if until is None else until
        for decided in decide_rows(decider, rows, run, label_column=LABEL_KEY,
                                   on_error=on_error):
            if not low <= decided.timestamp < high:
                continue  # warm-up, or after the period: state only
            comparison.add(decided.event_id, decided.timestamp, decided.label,
                           decided.arms, amount=decided.amount)
            counted += 1
            if on_progress is not None and counted % CHUNK == 0:
                on_progress(counted)
            if counted >= limit:
                break
    run.elapsed_s = time.perf_counter() - started
    run.label_column = "label"  # what the report shows: the log's labels
    if on_progress is not None:
        on_progress(counted)
    return comparison, run


def _when(bound: int | None) -> str:
    if bound is None:
        return "any"
    return datetime.fromtimestamp(bound / 1000, UTC).isoformat(timespec="seconds")

