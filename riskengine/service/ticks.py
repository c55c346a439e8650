"""Work the service gathers over one event-loop tick and does once for all of it.

- `TickDecisions`: the single events of the evaluate requests whose bodies came in during
  a tick, decided together when the tick's I/O is done: per run of one scene,
  `Engine.decide_parsed`, in arrival order (which is LSN order), so the engine can score
  a run's events with one model run each. Each request still gets its own answer: an
  event the scene refuses is refused alone, the others are decided as they would be one
  by one. With shared state on one Redis the run goes there in two round trips (its
  events' calls, then their rememberings): a round trip that fails answers every event
  of the run with the fallback (or unremembered), as it would answer one.
- `TickWaiter`: the log records of every request decided in a tick, appended as one
  group behind one future: one queue operation and one hop back to the loop per tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any

from riskengine.decisionlog import DecisionLog, LogRecord
from riskengine.exceptions import RiskEngineError

if TYPE_CHECKING:
    from riskengine.service.runtime import Decided, ServiceRuntime

__all__ = ["Done", "TickDecisions", "TickWaiter"]

log = logging.getLogger("riskengine.service")

Done = Callable[["Decided | Exception"], None]
"""Called with an event's `Decided`, or with the error that refused or failed it."""


class TickDecisions:
    """Single events decided together at the end of the tick they came in (see the module
    docstring)."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self._queue: list[tuple[str, object, Done]] = []

    def submit(self, scene: str, raw: object, done: Done) -> None:
        """Decide `raw` (an event of the known `scene`) at the end of this tick; `done`
        gets the outcome then."""
        if not self._queue:
            asyncio.get_running_loop().call_soon(self.flush)
        self._queue.append((scene, raw, done))

    def flush(self) -> None:
        """Decide everything submitted so far, in order, and hand the log its records."""
        queue, self._queue = self._queue, []
        start = 0
        while start < len(queue):
            scene = queue[start][0]
            end = start
            while end < len(queue) and queue[end][0] == scene:
                end += 1
            self._decide_run(scene, queue[start:end])
            start = end
        self.runtime.ship_records()

    def _decide_run(self, scene: str, run: list[tuple[str, object, Done]]) -> None:
        rt = self.runtime
        parse = rt.engine.scene(scene).parse
        events: list[dict[str, Any]] = []
        taken: list[tuple[Any, Done]] = []
        for _, raw, done in run:
            prepared = rt.prepare(raw)
            try:
                events.append(parse(prepared))
            except RiskEngineError as exc:  # refused alone, as it would be by itself
                done(exc)
                continue
            taken.append((prepared, done))
        if not events:
            return
        try:
            decisions = rt.engine.decide_parsed(scene, events)
        except Exception as exc:  # an engine failure fails the requests of this run
            for _, done in taken:
                done(exc)
            return
        for decision, (prepared, done) in zip(decisions, taken, strict=True):
            done(rt.decided(scene, decision, prepared))


class TickWaiter:
    """Collects the log records of one event-loop tick and appends them as one group.

    `add(records, done)` calls `done` on the loop, with None or the failure, when the
    group's commit is done. Records are appended in the order `add` is called, which is
    LSN order: every caller calls it right after deciding, with no await between.
    """

    def __init__(self, log: DecisionLog) -> None:
        self.log = log
        self._records: list[LogRecord] = []
        self._done: list[Callable[[BaseException | None], None]] = []

    def add(self, records: Sequence[LogRecord], done: Callable[[BaseException | None], None]
            ) -> None:
        if not self._done:
            asyncio.get_running_loop().call_soon(self.ship)
        self._records.extend(records)
        self._done.append(done)

    def wait(self, records: Sequence[LogRecord]) -> asyncio.Future[BaseException | None]:
        """`add` as a loop future."""
        waiter: asyncio.Future[BaseException | None] = \
            asyncio.get_running_loop().create_future()

        def done(error: BaseException | None) -> None:
            if not waiter.done():
                waiter.set_result(error)

        self.add(records, done)
        return waiter

    def ship(self) -> None:
        """Append what waits now as one group (the end of the tick does it anyway)."""
        if not self._done:
            return
        records, callbacks = self._records, self._done
        self._records, self._done = [], []
        loop = asyncio.get_running_loop()

        def resolve(error: BaseException | None) -> None:
            for done in callbacks:
                try:
                    done(error)
                except Exception:  # one answer's failure must not keep the others
                    log.exception("answering after the decision log's commit failed")

        try:
            group = self.log.append_many(records)
        except RiskEngineError as exc:
            resolve(exc)
            return

        def committed(future: Future[None]) -> None:
            error = CancelledError() if future.cancelled() else future.exception()
            loop.call_soon_threadsafe(resolve, error)

        group.add_done_callback(committed)
