"""The service's state around one `Engine`: recovery, the decision log, snapshots, lists,
ruleset versions and config reloads.

Durability: an evaluate request is answered after its decision (with the event) is
committed to the decision log. On start the engine restores ``<state-dir>/snapshot.pkl``
(written on graceful shutdown and every ``snapshot_interval``) and re-runs the logged
events after the snapshot's LSN, in LSN order, so after a crash (even ``kill -9``) the
features of new events are those an uninterrupted run gives, for every event that was
answered with a 200. The decision log's retention must therefore exceed the snapshot
interval (it is 30 days by default against 5 minutes).

Everything that touches the engine runs on the event loop's thread, so LSN order is the
order of evaluation, and a snapshot is a consistent cut.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

from riskengine.config import ProjectConfig, load_config
from riskengine.decision import Decision
from riskengine.decisionlog import DecisionLog, LogRecord, open_log
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.lists import ListStore
from riskengine.service.errors import ApiError
from riskengine.service.listjournal import ListJournal
from riskengine.service.metrics import ServiceMetrics
from riskengine.service.rulesets import RulesetRegistry
from riskengine.service.settings import ServiceSettings

log = logging.getLogger("riskengine.service")

SNAPSHOT_FILE = "snapshot.pkl"
RULESETS_FILE = "rulesets.json"
LISTS_FILE = "lists.jsonl"
DECISIONS_FILE = "decisions.sqlite"


class ServiceRuntime:
    """Owns the engine and everything persisted around it."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.config: ProjectConfig = load_config(settings.config)
        settings = settings.with_service_section(self.config.service)
        self.settings = settings.ensure_admin_token()
        self.state_dir = self.settings.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.shared = self.settings.state is not None
        self.bus: Any = None
        if self.shared:
            from riskengine.service.shared import SharedLists, connect_bus, shared_engine
            engine = shared_engine(self.config, str(self.settings.state))
            self.engine: Engine = engine
            self.metrics = ServiceMetrics(self.engine.scenes)
            self.rulesets = RulesetRegistry(self.engine, None, on_activate=self._activated)
            self.bus, store = connect_bus(engine, self.config, self.rulesets)
            self.lists: Any = SharedLists(store)
        else:
            self.engine = Engine(self.config)
            self.metrics = ServiceMetrics(self.engine.scenes)
            self.lists = ListJournal(self.engine.lists, self.state_dir / LISTS_FILE)
            self.rulesets = RulesetRegistry(self.engine, self.state_dir / RULESETS_FILE,
                                            on_activate=self._activated)
        self.log: DecisionLog = open_log(self.settings.decision_log,
                                         path_default=self.state_dir / DECISIONS_FILE)
        self._waiter = TickWaiter(self.log)
        self.ready = False
        self.recovered_events = 0
        self.last_snapshot_lsn = 0

    # -- start and stop

    def recover(self) -> int:
        """Restore the snapshot, then re-run the logged events after it. Returns how many."""
        if self.shared:  # the state is in Redis: nothing to rebuild
            self.ready = True
            return 0
        snapshot = self.state_dir / SNAPSHOT_FILE
        if snapshot.exists():
            self.engine.restore(snapshot)
        self.last_snapshot_lsn = self.engine.lsn
        count = 0
        for lsn, scene, event in self.log.events_after(self.engine.lsn):
            if scene not in self.engine.scenes:
                continue
            try:
                self.engine.evaluate(scene, event)
            except RiskEngineError as exc:  # config changed while down: skip, say so
                log.warning("recovery: logged event at LSN %d no longer valid: %s", lsn, exc)
                continue
            count += 1
        self.recovered_events = count
        settle_memory()
        self.ready = True
        return count

    def snapshot(self) -> None:
        """Write a snapshot here and now (blocks the caller; used at shutdown)."""
        if self.shared or self.engine.lsn == self.last_snapshot_lsn:
            return
        lsn = self.engine.lsn
        self.engine.snapshot(self.state_dir / SNAPSHOT_FILE)
        self.last_snapshot_lsn = lsn
        self.metrics.snapshots.inc()
        settle_memory()

    async def snapshot_in_background(self) -> int:
        """Write a snapshot from a forked child (copy-on-write: the loop keeps serving
        while the child pickles the state), wait for it without blocking, return its LSN.

        Falls back to writing in place where fork is unavailable.
        """
        lsn = self.engine.lsn
        if self.shared or lsn == self.last_snapshot_lsn:
            return lsn
        if not hasattr(os, "fork"):
            self.snapshot()
            return lsn
        path = self.state_dir / SNAPSHOT_FILE
        pid = os.fork()
        if pid == 0:  # the child: write and leave without running any cleanup
            code = 1
            try:
                os.nice(19)  # give the serving loop the CPU first
                self.engine.snapshot(path)
                code = 0
            finally:
                os._exit(code)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            await asyncio.sleep(0.02)
        if os.waitstatus_to_exitcode(status) != 0:
            log.error("snapshot child failed (status %d); the previous snapshot stays", status)
            return self.last_snapshot_lsn
        self.last_snapshot_lsn = lsn
        self.metrics.snapshots.inc()
        settle_memory()
        return lsn

    def close(self) -> None:
        """Graceful stop: commit every pending decision, snapshot, close the log."""
        self.ready = False
        if self.bus is not None:
            self.bus.stop()
        try:
            self.log.flush(30.0)
        finally:
            self.snapshot()
            self.log.close()

    # -- the decision path

    def prepare(self, raw: object) -> Mapping[str, Any]:
        """A missing timestamp is the time of arrival (epoch ms)."""
        if isinstance(raw, dict) and raw.get("timestamp") is None:
            raw = {**raw, "timestamp": int(time.time() * 1000)}
        return raw  # type: ignore[return-value]  # the engine refuses non-objects

    def decide(self, scene: str, raw: object) -> tuple[Decision, LogRecord | None]:
        """Evaluate one event; returns the decision and its log record (None for an
        event_id already decided). Await `committed(record)` before answering."""
        event = self.prepare(raw)
        decision = self.engine.evaluate(scene, event)
        if decision.duplicate:  # already decided: the stored answer
            self.metrics.duplicates.labels(scene).inc()
            return decision, None
        if decision.degraded:
            self.metrics.degraded.labels(scene).inc()
            if decision.fallback:  # the shared state was not reached: nothing to log
                return decision, None
        self.metrics.observe(decision)
        return decision, _record(decision, event)

    def decide_many(self, scene: str, raws: Sequence[object]
                    ) -> tuple[list[Decision], list[LogRecord]]:
        events = [self.prepare(raw) for raw in raws]
        decisions = self.engine.evaluate_many(scene, events)
        records = []
        for decision, event in zip(decisions, events, strict=True):
            if decision.duplicate:
                self.metrics.duplicates.labels(scene).inc()
                continue
            if decision.degraded:
                self.metrics.degraded.labels(scene).inc()
                if decision.fallback:
                    continue
            self.metrics.observe(decision)
            records.append(_record(decision, event))
        return decisions, records

    async def committed(self, records: Sequence[LogRecord]) -> None:
        """Log `records` and wait until they are committed; a failed commit answers 503
        (the state already holds the event, the log does not: a restart forgets it, as
        it should for a non-200).

        The records of every request of one event-loop tick go to the log together, behind
        one future: one queue operation and one hop back to the loop per tick.
        """
        if not records:
            return
        error = await self._waiter.wait(records)
        if error is not None:
            self.metrics.log_failures.inc(len(records))
            log.error("decision log write failed for %d decisions: %s", len(records),
                      type(error).__name__)
            raise ApiError(503, "the decision log is unavailable; the decision was not "
                                "recorded, retry with the same event_id")

    # -- config reload

    def reload_config(self) -> list[str]:
        """Re-read the config file: new rulesets go live, lists are rebuilt.

        Changes to scenes, schemas or features need a restart (they change state).
        """
        if self.settings.config is None:
            return []
        try:
            config = load_config(self.settings.config)
            changed = self.rulesets.reload_config(config.scenes)
            if dict(config.lists) != dict(self.config.lists) and self.shared:
                self.lists.store.reload_config(config.lists, config.base_dir)  # API changes stay
                changed.append("lists")
            elif dict(config.lists) != dict(self.config.lists):
                fresh = ListStore.from_config(config.lists, config.base_dir)
                ListJournal(fresh, self.lists.path)  # API changes on top of the new file
                self.engine.lists.replace_with(fresh)
                changed.append("lists")
        except RiskEngineError as exc:
            self.metrics.reload_failures.labels("config").inc()
            log.error("config reload refused, the live rules stay: %s", exc)
            return []
        self.config = config
        return changed

    def _activated(self, scene: str, source: str) -> None:
        self.metrics.reloads.labels(scene, source).inc()
        log.info("scene %s: ruleset %s live (%s)", scene, self.engine.ruleset(scene).version,
                 source)

    def snapshot_path(self) -> Path:
        return self.state_dir / SNAPSHOT_FILE


def settle_memory() -> None:
    """Keep the garbage collector off the long-lived state (`gc.freeze`).

    The state is millions of long-lived containers without reference cycles; left in the
    collected generations, every older-generation collection walks all of them and stops
    the event loop for longer as the state grows (seconds at a few hundred thousand
    events). So whatever survives a generation-1 collection is frozen at once (a
    `gc.callbacks` hook), and everything alive is frozen after recovery and after every
    snapshot: collections only ever walk what was made since the last young collection.
    Cyclic garbage that gets frozen is not reclaimed; the engine makes none.
    """
    gc.freeze()
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation", 0) >= 1:
        gc.freeze()


class TickWaiter:
    """Collects the log records of one event-loop tick and appends them as one group.

    `wait(records)` returns a loop future that resolves, with None or the failure, when
    the group's commit is done. Records are appended in the order `wait` is called,
    which is LSN order: every caller calls it right after deciding, with no await between.
    """

    def __init__(self, log: DecisionLog) -> None:
        self.log = log
        self._records: list[LogRecord] = []
        self._waiters: list[asyncio.Future[BaseException | None]] = []

    def wait(self, records: Sequence[LogRecord]) -> asyncio.Future[BaseException | None]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[BaseException | None] = loop.create_future()
        if not self._waiters:
            loop.call_soon(self._ship, loop)
        self._records.extend(records)
        self._waiters.append(waiter)
        return waiter

    def _ship(self, loop: asyncio.AbstractEventLoop) -> None:
        records, waiters = self._records, self._waiters
        self._records, self._waiters = [], []

        def resolve(error: BaseException | None) -> None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(error)

        try:
            group = self.log.append_many(records)
        except RiskEngineError as exc:
            resolve(exc)
            return

        def committed(future: Future[None]) -> None:
            error = CancelledError() if future.cancelled() else future.exception()
            loop.call_soon_threadsafe(resolve, error)

        group.add_done_callback(committed)


def _record(decision: Decision, event: Mapping[str, Any]) -> LogRecord:
    stored = dict(event)
    stored["event_id"] = decision.event_id
    stored["timestamp"] = decision.timestamp
    return LogRecord.from_decision(decision, stored)
