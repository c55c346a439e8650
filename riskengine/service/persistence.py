"""How the service keeps its state across restarts: one strategy per kind of state.

- `LocalPersistence` (the default: in-memory state, one process): snapshots of the
  engine in the state dir, the decision log re-run after the snapshot on start, list
  changes in a journal file, ruleset and experiment versions in files.
- `SharedPersistence` (``--state redis://…``: any number of processes): the state, the
  list entries and the live ruleset versions are in Redis (the bus tells every process);
  nothing to snapshot or re-run.

`ServiceRuntime` is given one and never asks which.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from riskengine.config import ProjectConfig
from riskengine.decisionlog import DecisionLog
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.lists import ListCatalog, ListEntry, ListStore
from riskengine.longlived import settle_memory
from riskengine.service.experiments import ExperimentRegistry
from riskengine.service.listjournal import ListJournal
from riskengine.service.metrics import ServiceMetrics
from riskengine.service.rulesets import RulesetRegistry

log = logging.getLogger("riskengine.service")

SNAPSHOT_FILE = "snapshot.pkl"
RULESETS_FILE = "rulesets.json"
EXPERIMENTS_FILE = "experiments.json"
LISTS_FILE = "lists.jsonl"


class ListChanges(Protocol):
    """Changes to list entries made through the admin API."""

    def put(self, name: str, value: str, *, expires: object = None,
            reason: str = "") -> ListEntry: ...

    def delete(self, name: str, value: str) -> bool: ...


class Persistence(Protocol):
    engine: Engine
    catalog: ListCatalog
    """The lists as the admin API reads them."""
    changes: ListChanges
    rulesets_file: Path | None
    experiments_file: Path | None

    def start(self, registry: RulesetRegistry, experiments: ExperimentRegistry) -> None:
        """Once the ruleset and experiment registries exist (shared state: the bus)."""
        ...

    def recover(self, decisions: DecisionLog) -> int:
        """Rebuild the state; returns how many logged events were re-run."""
        ...

    def snapshot(self) -> None:
        """Write a snapshot now (blocks; at shutdown)."""
        ...

    async def snapshot_in_background(self) -> int:
        """Write a snapshot without blocking the loop; returns the LSN it covers."""
        ...

    def reload_lists(self, config: ProjectConfig) -> None:
        """The config file's lists changed: take them (API changes stay on top)."""
        ...

    def close(self) -> None:
        ...


class LocalPersistence:
    """In-memory state made durable by snapshots and the decision log (module docstring).

    The answer to an evaluate request is sent after its decision (with the event) is
    committed to the decision log; on start the snapshot is restored and the logged events
    after its LSN are re-run in LSN order, so after a crash (even ``kill -9``) the state
    holds every event that got a 200, once. The decision log's retention must exceed the
    snapshot interval."""

    def __init__(self, config: ProjectConfig, state_dir: Path, metrics: ServiceMetrics) -> None:
        self.engine = Engine(config)
        self.state_dir = state_dir
        self.metrics = metrics
        self.catalog: ListCatalog = self.engine.list_store
        self.journal = ListJournal(self.engine.list_store, state_dir / LISTS_FILE)
        self.changes: ListChanges = self.journal
        self.rulesets_file: Path | None = state_dir / RULESETS_FILE
        self.experiments_file: Path | None = state_dir / EXPERIMENTS_FILE
        self.last_snapshot_lsn = 0

    def start(self, registry: RulesetRegistry, experiments: ExperimentRegistry) -> None:
        pass

    def recover(self, decisions: DecisionLog) -> int:
        engine = self.engine
        path = self.state_dir / SNAPSHOT_FILE
        if path.exists():
            engine.restore(path)
        self.last_snapshot_lsn = engine.lsn
        count = 0
        for lsn, scene, event in decisions.events_after(engine.lsn):
            if scene not in engine.scenes:
                continue
            try:
                engine.evaluate(scene, event)
            except RiskEngineError as exc:  # config changed while down: skip, say so
                log.warning("recovery: logged event at LSN %d no longer valid: %s", lsn, exc)
                continue
            count += 1
        settle_memory()
        return count

    def snapshot(self) -> None:
        lsn = self.engine.lsn
        if lsn == self.last_snapshot_lsn:
            return
        self.engine.snapshot(self.state_dir / SNAPSHOT_FILE)
        self.last_snapshot_lsn = lsn
        self.metrics.snapshots.inc()
        settle_memory()

    async def snapshot_in_background(self) -> int:
        """A snapshot from a forked child (copy-on-write: the loop keeps serving while
        the child pickles the state); falls back to writing in place without fork."""
        lsn = self.engine.lsn
        if lsn == self.last_snapshot_lsn:
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

    def reload_lists(self, config: ProjectConfig) -> None:
        fresh = ListStore.from_config(config.lists, config.base_dir)
        ListJournal(fresh, self.journal.path)  # API changes on top of the new file
        self.engine.list_store.replace_with(fresh)

    def close(self) -> None:
        self.snapshot()


class SharedPersistence:
    """State, lists and live ruleset versions in Redis (module docstring): nothing to
    snapshot or re-run; `start` ties the ruleset registry to the Redis bus and moves the
    lists to Redis."""

    def __init__(self, config: ProjectConfig, state_url: str,
                 state_timeout_ms: int | None = None) -> None:
        from riskengine.service.shared import shared_engine

        self.config = config
        self.engine = shared_engine(config, state_url, state_timeout_ms=state_timeout_ms)
        self.catalog: ListCatalog = self.engine.list_store
        self.changes: ListChanges = _NoChanges()
        self.rulesets_file: Path | None = None
        self.experiments_file: Path | None = None
        self.bus: Any = None
        self.store: Any = None

    def start(self, registry: RulesetRegistry, experiments: ExperimentRegistry) -> None:
        from riskengine.service.shared import SharedLists, connect_bus

        self.bus, self.store = connect_bus(self.engine, self.config, registry, experiments)
        self.catalog = self.store
        self.changes = SharedLists(self.store)

    def recover(self, decisions: DecisionLog) -> int:
        return 0

    def snapshot(self) -> None:
        pass

    async def snapshot_in_background(self) -> int:
        return int(self.engine.lsn)

    def reload_lists(self, config: ProjectConfig) -> None:
        self.store.reload_config(config.lists, config.base_dir)  # API changes stay

    def close(self) -> None:
        if self.bus is not None:
            self.bus.stop()


class _NoChanges:
    """Before `SharedPersistence.start`: no list changes yet."""

    def put(self, name: str, value: str, *, expires: object = None,
            reason: str = "") -> ListEntry:
        raise RiskEngineError("the lists are not connected yet")

    def delete(self, name: str, value: str) -> bool:
        raise RiskEngineError("the lists are not connected yet")
