"""The service's state around one `Engine`: the decision log, recovery, snapshots, lists,
ruleset and model versions, config reloads and the guarded rollout of new versions
(guard.py).

Durability: an evaluate request is answered after its decision (with the event) is
committed to the decision log. How the state survives a restart is the `Persistence`
strategy (riskengine/service/persistence.py): in memory, ``<state-dir>/snapshot.pkl``
(written on graceful shutdown and every ``snapshot_interval``) plus the logged events
after the snapshot's LSN, re-run in LSN order, so after a crash (even ``kill -9``) the
features of new events are those an uninterrupted run gives, for every event that was
answered with a 200; with shared state, Redis itself.

Everything that touches the engine runs on the event loop's thread, so LSN order is the
order of evaluation, and a snapshot is a consistent cut.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from riskengine.config import ProjectConfig, load_config
from riskengine.decision import Decision
from riskengine.decisionlog import DecisionLog, LogRecord, codec, open_log
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.lists import ListCatalog
from riskengine.service.breaker_metrics import StateBreakerCollector, state_breaker
from riskengine.service.errors import ApiError
from riskengine.service.experiments import ExperimentRegistry
from riskengine.service.guard import RULESET, WATCHED_SOURCES, RolloutGuard, guard_rulesets
from riskengine.service.metrics import ServiceMetrics
from riskengine.service.mirror import Mirror
from riskengine.service.model_registry import ModelRegistry, open_model_registry
from riskengine.service.persistence import (
    SNAPSHOT_FILE,
    ListChanges,
    LocalPersistence,
    Persistence,
    SharedPersistence,
)
from riskengine.service.rulesets import RulesetRegistry
from riskengine.service.settings import ServiceSettings
from riskengine.service.ticks import Done, TickDecisions, TickWaiter
from riskengine.tracing import open_tracing

log = logging.getLogger("riskengine.service")

DECISIONS_FILE = "decisions.sqlite"


class Decided(NamedTuple):
    """One decided event, as the evaluate endpoints answer and log it."""

    decision: Decision
    answer: bytes
    """The decision's JSON (`Decision.to_dict()`), as the response carries it."""
    record: LogRecord | None
    """What the decision log stores; None when nothing is logged (a duplicate, a
    fallback)."""


class ServiceRuntime:
    """Owns the engine, the decision log and the ruleset and model registries; keeps the
    state across restarts through its `Persistence` (in memory with snapshots, or shared in
    Redis)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.config: ProjectConfig = load_config(settings.config)
        settings = settings.with_service_section(self.config.service,
                                                 self.config.base_dir)
        self.settings = settings.ensure_admin_token()
        self.state_dir = self.settings.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = ServiceMetrics(tuple(self.config.scenes))
        self.persistence: Persistence = (
            SharedPersistence(self.config, str(self.settings.state),
                              self.settings.state_timeout_ms)
            if self.settings.state is not None
            else LocalPersistence(self.config, self.state_dir, self.metrics))
        self.engine: Engine = self.persistence.engine
        breaker = state_breaker(self.engine.state)
        if breaker is not None:
            self.metrics.registry.register(StateBreakerCollector(breaker))
        self.rulesets = RulesetRegistry(self.engine, self.persistence.rulesets_file,
                                        on_activate=self._activated)
        self.guard: RolloutGuard | None = None
        if self.settings.guard is not None:
            self.guard = guard_rulesets(self.settings.guard, self.engine, self.rulesets,
                                        self.state_dir, self.metrics.guard_rollbacks)
        self.experiments = ExperimentRegistry(self.engine, self.rulesets,
                                              self.persistence.experiments_file,
                                              on_activate=self._activated)
        self.persistence.start(self.rulesets, self.experiments)
        self.models: ModelRegistry = open_model_registry(self)
        self.log: DecisionLog = open_log(self.settings.decision_log,
                                         path_default=self.state_dir / DECISIONS_FILE)
        self._waiter = TickWaiter(self.log)
        self._ticks = TickDecisions(self)
        self.mirror = (None if self.settings.mirror is None
                       else Mirror(self.settings.mirror, self.metrics))
        self.tracer = open_tracing(self.settings.tracing)
        """None unless tracing is on (then the evaluate lane is the traced one)."""
        self.ready = False
        self.recovered_events = 0

    @property
    def lists(self) -> ListChanges:
        """List changes through the admin API."""
        return self.persistence.changes

    @property
    def list_catalog(self) -> ListCatalog:
        """The lists as the admin API reads them."""
        return self.persistence.catalog

    # -- start and stop

    def recover(self) -> int:
        """Rebuild the state (in memory: the snapshot, then the logged events after it).
        Returns how many logged events were re-run."""
        self.recovered_events = self.persistence.recover(self.log)
        self.ready = True
        return self.recovered_events

    def snapshot(self) -> None:
        """Write a snapshot here and now (blocks the caller; used at shutdown)."""
        self.persistence.snapshot()

    async def snapshot_in_background(self) -> int:
        """Write a snapshot without stopping the loop; returns the LSN it covers."""
        return await self.persistence.snapshot_in_background()

    def close(self) -> None:
        """Graceful stop: commit every pending decision, snapshot, close the log."""
        self.ready = False
        try:
            self.log.flush(30.0)
        finally:
            self.models.close()
            self.persistence.close()
            self.log.close()
            if self.tracer is not None:
                self.tracer.close()

    # -- the decision path

    def prepare(self, raw: object) -> Mapping[str, Any]:
        """A missing timestamp is the time of arrival (epoch ms)."""
        if isinstance(raw, dict) and raw.get("timestamp") is None:
            raw = {**raw, "timestamp": int(time.time() * 1000)}
        return raw  # type: ignore[return-value]  # the engine refuses non-objects

    def decide(self, scene: str, raw: object) -> Decided:
        """Evaluate one event: the decision, its JSON and its log record (None for an
        event_id already decided). Await `committed` of the record before answering."""
        event = self.prepare(raw)
        return self.decided(scene, self.engine.evaluate(scene, event), event)

    def decide_soon(self, scene: str, raw: object, done: Done) -> None:
        """`decide` at the end of this event-loop tick, together with the other single
        events that came in during it (riskengine/service/ticks.py); `done` gets the
        `Decided` or the error. Commit its record (`commit`) right in `done`."""
        self._ticks.submit(scene, raw, done)

    def decided(self, scene: str, decision: Decision, event: Mapping[str, Any]) -> Decided:
        """Count `decision` and encode it once, for the answer and the log; no log record
        when there is nothing to log: a duplicate (the stored answer) or a fallback (the
        shared state was not reached)."""
        answer = decision.to_json()
        if decision.duplicate:
            self.metrics.duplicates.labels(scene).inc()
            return Decided(decision, answer, None)
        if decision.degraded:
            self.metrics.degraded.labels(scene).inc()
            if decision.fallback:
                return Decided(decision, answer, None)
        self.metrics.observe(decision)
        if self.guard is not None:
            self.guard.count(decision)
        stored = dict(event)
        stored["event_id"] = decision.event_id
        stored["timestamp"] = decision.timestamp
        # the engine's numbers are finite, so orjson's output is the stored text unless
        # some string needs an escape
        document = codec.plain_text(answer)
        return Decided(decision, answer, LogRecord.from_decision(
            decision, stored, document=decision.to_dict() if document is None else document))

    def decide_many(self, scene: str, raws: Sequence[object]) -> list[Decided]:
        """`decide` for each event of a batch, in order; all are validated first."""
        events = [self.prepare(raw) for raw in raws]
        decisions = self.engine.evaluate_many(scene, events)
        return [self.decided(scene, d, e) for d, e in zip(decisions, events, strict=True)]

    async def committed(self, records: Sequence[LogRecord]) -> None:
        """Log `records` and wait until they are committed; a failed commit answers 503
        (the state already holds the event, the log does not: a restart forgets it, as
        it should for a non-200)."""
        if not records:
            return
        error = await self._waiter.wait(records)
        if error is not None:
            raise self.not_committed(error, len(records))

    def commit(self, records: Sequence[LogRecord],
               done: Callable[[BaseException | None], None]) -> None:
        """Log `records`; `done` is called on the loop, with None or the failure, once
        they are committed. Call it right after deciding them (no await between: LSN
        order).

        The records of every request of one event-loop tick go to the log together
        (riskengine/service/ticks.py).
        """
        self._waiter.add(records, done)

    def ship_records(self) -> None:
        """Hand the log the records waiting for this tick's group now."""
        self._waiter.ship()

    def not_committed(self, error: BaseException, count: int) -> ApiError:
        """The 503 of `count` decisions whose commit failed with `error` (counted, logged
        without the records)."""
        self.metrics.log_failures.inc(count)
        log.error("decision log write failed for %d decisions: %s", count,
                  type(error).__name__)
        return ApiError(503, "the decision log is unavailable; the decision was not "
                             "recorded, retry with the same event_id")

    # -- config reload

    def reload_config(self) -> list[str]:
        """Re-read the config file: new rulesets and experiments go live, lists are rebuilt.

        Changes to scenes, schemas or features need a restart (they change state).
        """
        if self.settings.config is None:
            return []
        try:
            config = load_config(self.settings.config)
            experiments = self.experiments.prepare_reload(config.scenes)
            changed = self.rulesets.reload_config(config.scenes)
            changed += [f"{scene} experiment"
                        for scene in self.experiments.reload_config(experiments)]
            if dict(config.lists) != dict(self.config.lists):
                self.persistence.reload_lists(config)
                changed.append("lists")
        except RiskEngineError as exc:
            self.metrics.reload_failures.labels("config").inc()
            log.error("config reload refused, the live rules stay: %s", exc)
            return []
        self.config = config
        return changed

    def _activated(self, scene: str, source: str, previous: str) -> None:
        version = self.engine.ruleset(scene).version
        self.metrics.reloads.labels(scene, source).inc()
        experiment = self.engine.scene(scene).experiment
        log.info("scene %s: ruleset %s, experiment %s live (%s)", scene, version,
                 "none" if experiment is None else experiment.version, source)
        if self.guard is not None and source in WATCHED_SOURCES and version != previous:
            self.guard.on_version_live(scene, RULESET, version, previous)

    def snapshot_path(self) -> Path:
        return self.state_dir / SNAPSHOT_FILE
