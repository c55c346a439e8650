"""Backfill: fill a scene's windows from history, so that a new deployment (or a new
feature) starts warm instead of blind.

Two separate steps:

1. **Compute the state**: `compute_state` runs the rows of an event file through an
   engine in file order — the replay's own loop (`replay_rows`), its decisions discarded —
   so the engine then holds exactly the state a replay of that file leaves: the same
   windows, pattern keys, remembered event ids, scene clock and LSNs. Bad rows are
   counted and reported as a replay reports them; they never stop the run.
2. **Write it where a runtime reads it**: a `StateTarget` (riskengine/batch/state_targets.py)
   gives the engine of step 1 and then commits its state — the snapshot a service's state
   dir restores, or nothing more for Redis, where the engine's state already is.

`backfill` runs both and returns a `BackfillSummary`. A runner that computes the state
elsewhere (Spark) replaces step 1: it fills the in-memory engine `StateDirTarget.open`
gives and hands it to `commit`. On Redis the state is written as it is computed, through
the engine the target gives.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from riskengine.batch.io import RecordWriter, RowReader
from riskengine.batch.replay import ErrorHook, ProgressHook, replay_rows
from riskengine.batch.report import ReplayStats
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError

__all__ = ["BackfillError", "BackfillStoppedError", "BackfillSummary", "StateExistsError",
           "StateNotReachedError", "StateTarget", "backfill", "compute_state",
           "render_backfill"]


class BackfillError(RiskEngineError):
    """The backfill cannot start: nothing was read or written."""


class StateExistsError(BackfillError):
    """The target already holds state for the scene (a backfill replaces it only when
    forced)."""


class BackfillStoppedError(BackfillError):
    """The backfill started but could not finish; the message says what is left."""


class StateNotReachedError(BackfillError):
    """An event was answered without reaching the state (the shared state stopped
    answering): the state would miss it, so the backfill stops."""


class StateTarget(Protocol):
    """Where a backfilled state goes (riskengine/batch/state_targets.py)."""

    description: str

    def open(self, scene: str) -> Engine:
        """Check the target may take the scene's state (refusing state that is there
        already, unless forced) and give the engine to compute it with."""
        ...

    def commit(self, engine: Engine, scene: str) -> None:
        """Make the computed state the one the runtime reads."""
        ...

    def abandon(self, engine: Engine, scene: str) -> str:
        """The run failed: undo what it wrote, if it can; says what is left."""
        ...

    def keys(self, engine: Engine, scene: str) -> int:
        """How many keys (entities) the scene's state holds."""
        ...


@dataclass
class BackfillSummary:
    """What a backfill did: rows read, events taken, bad rows, and where the state stands."""

    scene: str
    source: str
    target: str
    rows: int = 0
    events: int = 0
    late: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    keys: int = 0
    clock: int | None = None
    lsn: int = 0
    elapsed_s: float = 0.0
    unread: str | None = None
    """Why the keys and the clock could not be read back (the state was written)."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Discarded(RecordWriter):
    """Records that go nowhere (a backfill's errors when no errors file is asked for)."""

    def __init__(self) -> None:
        self.path = Path(os.devnull)

    def write(self, record: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class _StateTaken(_Discarded):
    """A backfill's decisions: kept nowhere, each checked to have reached the state. A
    fallback answer (degraded, LSN 0: the shared state did not answer) stops the run."""

    def write(self, record: Mapping[str, Any]) -> None:
        if record["degraded"] and record["lsn"] == 0:
            raise StateNotReachedError(
                f"row {record['row']} (event {record['event_id']!r}) did not reach the "
                f"state: it stopped answering")


def compute_state(engine: Engine, scene: str, reader: RowReader, *,
                  errors: RecordWriter | None = None, limit: int | None = None,
                  source: str = "", on_error: ErrorHook | None = None,
                  on_progress: ProgressHook | None = None) -> ReplayStats:
    """Step 1: run the rows of `reader` through `engine` in order, as `replay_rows` does
    (same arguments; bad rows go to `errors` when given), keeping no decision. Raises
    `StateNotReachedError` when an event did not reach a shared state."""
    return replay_rows(engine, scene, reader, _StateTaken(),
                       errors if errors is not None else _Discarded(), limit=limit,
                       source=source, on_error=on_error, on_progress=on_progress)


Compute = Callable[[Engine], ReplayStats]
"""Step 1 done elsewhere: fills the engine the target gives and says what it read."""


def backfill(target: StateTarget, scene: str, reader: RowReader | None, *,
             errors: RecordWriter | None = None, limit: int | None = None, source: str = "",
             on_error: ErrorHook | None = None, on_progress: ProgressHook | None = None,
             compute: Compute | None = None) -> BackfillSummary:
    """Both steps: open `target`, compute the scene's state from `reader` (or with
    `compute`, another runner's step 1, e.g. riskengine/spark/backfill.py), commit it.

    What `target.open` raises (state already there, unreachable, unknown scene) comes out
    as it is, before anything is read or written. A failure after that — an input that
    becomes unreadable, a shared state that stops answering, an engine failure on a row
    (kind ``internal``: the state would miss that event), a snapshot that cannot be
    written — makes the target abandon what it wrote and raises `BackfillStoppedError`
    saying what is left.
    """
    started = time.perf_counter()
    engine = target.open(scene)
    try:
        try:
            if compute is not None:
                stats = compute(engine)
            else:
                assert reader is not None
                stats = compute_state(engine, scene, reader, errors=errors, limit=limit,
                                      source=source, on_error=on_error,
                                      on_progress=on_progress)
            failed = stats.errors.get("internal", 0)
            if failed:
                raise BackfillError(f"the engine failed on {failed:,} rows (kind 'internal'); "
                                    f"this is a bug, please report it")
            target.commit(engine, scene)
        except (RiskEngineError, OSError) as exc:
            left = target.abandon(engine, scene)
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BackfillStoppedError(f"{detail}; {left}") from exc
        except BaseException:
            target.abandon(engine, scene)
            raise
        summary = BackfillSummary(
            scene=scene, source=source, target=target.description, rows=stats.rows,
            events=stats.evaluated, late=stats.late, errors=stats.errors, lsn=engine.lsn,
            elapsed_s=time.perf_counter() - started)
        try:
            summary.keys, summary.clock = target.keys(engine, scene), engine.clock(scene)
        except Exception as exc:  # the state is written: only the summary lacks these
            summary.unread = f"{type(exc).__name__}: {exc}"
        return summary
    finally:
        engine.close()


def _clock_text(clock: int | None) -> str:
    if clock is None:
        return "none (no event taken on time)"
    moment = datetime.fromtimestamp(clock / 1000, UTC).isoformat(timespec="milliseconds")
    return f"{moment.replace('+00:00', 'Z')} ({clock})"


def render_backfill(summary: BackfillSummary, console: Console) -> None:
    """The summary as a table on `console`."""
    table = Table(title=f"Backfill of scene {summary.scene}", title_justify="left",
                  show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("input", summary.source)
    table.add_row("state", summary.target)
    table.add_row("rows read", f"{summary.rows:,}")
    table.add_row("events taken", f"{summary.events:,} ({summary.late:,} late)")
    bad = sum(summary.errors.values())
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(summary.errors.items()) if n)
    table.add_row("bad rows", f"{bad:,}" + (f" ({kinds})" if kinds else ""))
    if summary.unread is None:
        table.add_row("keys", f"{summary.keys:,}")
        table.add_row("scene clock", _clock_text(summary.clock))
    else:
        table.add_row("keys, scene clock", f"not read back: {summary.unread}")
    table.add_row("last LSN", f"{summary.lsn:,}")
    table.add_row("time", f"{summary.elapsed_s:.1f} s ({summary.events_per_s:,.0f} events/s)")
    console.print(table)
