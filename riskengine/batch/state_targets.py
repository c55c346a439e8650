"""Where a backfilled state goes: a service's state dir, or the shared state in Redis.

**State dir** (`StateDirTarget`, for ``riskengine serve --state-dir D``): the history runs
through an in-memory engine and its state is written as ``D/snapshot.pkl``, atomically,
once the whole input went through (a failed run writes nothing). On start the service
restores that snapshot and re-runs the decision log's events with an LSN above the
snapshot's (riskengine/service/persistence.py); live events then take the LSNs after it.
Two things must hold of the decision log for that start to be right: no logged event may
have a larger LSN than the snapshot (it would be re-run on top of the history), and no
LSN the service hands out may be logged already (its decision would be refused as a
duplicate LSN). So the history's LSNs are numbered after the last LSN of the decision log
the service will use (``--decision-log``, default SQLite in the state dir): with a fresh
log they are 1, 2, … exactly as in a replay of the file; with an existing log (only with
``--force``) they follow its records, which stay readable and are never re-run. API list
changes kept in the dir (``lists.jsonl``) are applied first, as the service applies them.

**Redis** (`RedisTarget`, for ``--state redis://…``): the history runs through an engine
on the shared state itself (`shared_engine`, as the service and the worker build it, with
a longer time budget): the keys land in the layout every process reads, and the LSNs
come from the shared counter. Lists are those in Redis (the config's, merged as the
service merges them, plus API changes). A run that fails deletes what it wrote (the
scene's state: riskengine/state/redis/scenestate.py) when Redis still answers.

Both refuse a target that already holds state for the scene unless forced; forced, the
state dir's snapshot is replaced whole (every scene's), and in Redis the scene's state is
deleted before the run (other scenes keep theirs).
"""

from __future__ import annotations

from pathlib import Path

from riskengine.batch.backfill import BackfillError, StateExistsError
from riskengine.config import ProjectConfig
from riskengine.decisionlog import DecisionLogError, open_log
from riskengine.engine import Engine
from riskengine.service.listjournal import ListJournal
from riskengine.service.persistence import LISTS_FILE, SNAPSHOT_FILE
from riskengine.service.runtime import DECISIONS_FILE
from riskengine.service.shared import shared_engine
from riskengine.state.memory import MemoryState
from riskengine.state.redis.backend import (
    STATE_ERRORS,
    RedisState,
    StateUnavailableError,
    redact,
)
from riskengine.state.redis.lists import RedisListStore
from riskengine.state.redis.scenestate import clear_scene, scene_holdings
from riskengine.state.redis.store import RedisSceneFeatures

__all__ = ["BACKFILL_STATE_TIMEOUT_MS", "RedisTarget", "StateDirTarget"]

BACKFILL_STATE_TIMEOUT_MS = 5_000
"""The Redis time budget of a backfill's round trips: a batch job waits out a slow
moment (an AOF rewrite, a failover) instead of stopping at the first one."""


class StateDirTarget:
    """The snapshot a service's state dir restores (module docstring)."""

    def __init__(self, config: ProjectConfig, state_dir: Path, *,
                 decision_log: str | None = None, force: bool = False) -> None:
        self.config = config
        self.state_dir = state_dir
        self.decision_log = decision_log
        self.force = force
        self.snapshot_path = state_dir / SNAPSHOT_FILE
        self.description = str(self.snapshot_path)

    def open(self, scene: str) -> Engine:
        if self.state_dir.exists() and not self.state_dir.is_dir():
            raise BackfillError(f"state dir {str(self.state_dir)!r} is not a directory")
        last_lsn = self._logged_lsn()
        held = []
        if self.snapshot_path.exists():
            held.append(f"a snapshot ({SNAPSHOT_FILE})")
        if last_lsn:
            held.append(f"a decision log with decisions up to LSN {last_lsn:,}")
        if held and not self.force:
            raise StateExistsError(
                f"state dir {str(self.state_dir)!r} already holds state ({' and '.join(held)}); "
                f"a backfill replaces it: stop the service using it and run again with --force")
        state = MemoryState()
        state.lsn = last_lsn  # the history's LSNs follow the log's (module docstring)
        engine = Engine(self.config, state)
        engine.scene(scene)
        ListJournal(engine.list_store, self.state_dir / LISTS_FILE)
        return engine

    def _logged_lsn(self) -> int:
        """The last LSN of the decision log the service will use (0: none, or no log)."""
        default = self.state_dir / DECISIONS_FILE
        if self.decision_log is None and not default.exists():
            return 0
        try:
            log = open_log(self.decision_log, path_default=default)
        except DecisionLogError as exc:
            raise BackfillError(f"cannot open the decision log: {exc}") from None
        try:
            return log.max_lsn()
        except DecisionLogError as exc:
            raise BackfillError(f"cannot read the decision log: {exc}") from None
        finally:
            log.close()

    def commit(self, engine: Engine, scene: str) -> None:
        engine.snapshot(self.snapshot_path)

    def abandon(self, engine: Engine, scene: str) -> str:
        return f"nothing was written to {str(self.state_dir)!r}"

    def keys(self, engine: Engine, scene: str) -> int:
        return int(engine.stats()[scene]["entities"])


class RedisTarget:
    """The shared state in Redis (module docstring)."""

    def __init__(self, config: ProjectConfig, url: str, *, force: bool = False,
                 state_timeout_ms: int = BACKFILL_STATE_TIMEOUT_MS) -> None:
        self.config = config
        self.url = url
        self.force = force
        self.state_timeout_ms = state_timeout_ms
        self.description = redact(url)

    def open(self, scene: str) -> Engine:
        engine = shared_engine(self.config, self.url, require_state=True,
                               state_timeout_ms=self.state_timeout_ms)
        try:
            engine.scene(scene)
            state = _redis_state(engine)
            held = scene_holdings(state.client, scene, state.prefix)
            if held and not self.force:
                raise StateExistsError(
                    f"the Redis at {self.description} already holds state for scene "
                    f"{scene!r} ({'; '.join(held)}); a backfill replaces it: run again with "
                    f"--force (the scene's state is deleted first)")
            if held:
                clear_scene(state.client, scene, state.prefix)
            engine.use_lists(RedisListStore.from_config(self.config.lists,
                                                        self.config.base_dir, state.client,
                                                        prefix=state.prefix))
        except StateUnavailableError:
            engine.close()
            raise
        except STATE_ERRORS as exc:
            engine.close()
            raise StateUnavailableError(f"cannot use the state at {self.description}: "
                                        f"{exc}") from None
        except BaseException:
            engine.close()
            raise
        return engine

    def commit(self, engine: Engine, scene: str) -> None:
        """Nothing left to write: every event's state went to Redis as it was decided.
        Only checks that every decision was remembered (a decision whose last round trip
        failed is answered all the same, without its idempotency record)."""
        unremembered = int(engine.stats()[scene]["unremembered"])
        if unremembered:
            raise BackfillError(f"Redis did not remember the decisions of {unremembered:,} "
                                f"events (their last round trip failed)")

    def abandon(self, engine: Engine, scene: str) -> str:
        state = _redis_state(engine)
        try:
            clear_scene(state.client, scene, state.prefix)
        except STATE_ERRORS:
            return (f"the state of scene {scene!r} in the Redis at {self.description} is "
                    f"partial: once Redis answers, run the backfill again with --force")
        return (f"the state of scene {scene!r} written to the Redis at {self.description} "
                f"was deleted")

    def keys(self, engine: Engine, scene: str) -> int:
        state = _redis_state(engine)
        features = RedisSceneFeatures(state.client, self.config.scenes[scene],
                                      lists=engine.lists, prefix=state.prefix)
        return features.stats()["entities"]


def _redis_state(engine: Engine) -> RedisState:
    state = engine.state
    if not isinstance(state, RedisState):
        raise TypeError("a Redis backfill needs an engine on Redis state")
    return state
