"""Guarded rollout: a new version that answers review or reject much more often than the
version it replaced is put back by itself.

When a version goes live in a scene, a *watch* starts: its review and reject rates over
its first N decisions (``service: guard: decisions``) are compared with the previous
version's over the previous version's last N. An outcome's rate *breaches* when

    new_rate > factor × previous_rate   and   new_rate − previous_rate > min_delta

(both: `min_delta` keeps a 0 % baseline from making every change a rollback, `factor`
keeps a busy baseline from rolling back small moves). A breach of either rate rolls the
new version back: the kind's rollback puts the previous version live, a WARNING with both
rates is logged and ``riskengine_guard_rollbacks_total{scene,kind}`` counts it. Otherwise
the verdict is ``kept`` (``no_baseline`` when the previous version has no counted
decision: nothing to compare with). A watch is ``superseded`` when another version goes
live before its N decisions. ``GET /v1/scenes/{scene}/guard`` shows the watches and the
verdicts (riskengine/service/guard_routes.py).

What counts: decisions answered by the champion arm (``decision.arm == "champion"``; not
duplicates, not fallbacks), by the version that decided them: a ruleset by
``decision.ruleset_version``, model ``<name>`` by ``decision.models[name]``. Counting is
two list increments on the decision path (`RolloutGuard.count`); every
`FLUSH_EVERY_S` a background task hands the counts to the store as one `Flush`
(riskengine/service/guardstore.py: in the process, or in Redis for every worker on the
shared state) and reviews the watches there. A flush the store did not acknowledge (an
error, a timeout) is sent again at the next flush, the same one (this process's id, its
sequence number, its counts), and the counts made meanwhile wait for the flush after it;
the store applies a flush at most once, so the counts are exact even when Redis applied
a call whose answer timed out. So the first N decisions are those counted when the
flushed count reaches N or more (N plus what the flushes brought at once, at most one
flush per worker), and the previous version's last N are its newest flushes adding up
to N or more. When several workers reach a verdict, a compare-and-set on the watch lets
exactly one act on it; the others follow (rulesets: through the bus). The worker that
took the watch is its owner in the store: when the answer of that compare-and-set or of
the verdict's record is lost (a timeout after Redis ran the script), the owner carries
the rollback through at its next review, running it once and recording the verdict once.

Guarding another kind of version
--------------------------------
The owner of a kind (``"ruleset"``, or ``"model:<name>"`` for a model) registers how to
roll it back, once at start, then tells the guard each time one of its versions goes
live (the service's guard is `ServiceRuntime.guard`, None when the guard is off)::

    guard.register_rollback("model:fraud", rollback)    # before any on_version_live
    guard.on_version_live(scene, "model:fraud", version, previous)

``rollback(scene, version, previous) -> bool`` puts `previous` live in place of
`version` and returns True, or False when it cannot (e.g. `version` is no longer
live). It runs on one worker, off the event loop; with shared state it must reach every
worker itself (as a ruleset activation does through the bus). Call `on_version_live` for
changes made here (API, config), not for changes followed from another worker or for
the guard's own rollback. Rulesets are wired by `guard_rulesets`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.experiment import CHAMPION
from riskengine.service.guardstore import (
    Flush,
    GuardStore,
    MemoryGuardStore,
    RedisGuardStore,
    Tally,
    VersionKey,
    Watch,
)
from riskengine.service.rulesets import RulesetRegistry
from riskengine.service.settings import GuardSettings
from riskengine.state.redis.backend import STATE_ERRORS, RedisState

log = logging.getLogger("riskengine.service.guard")

RULESET = "ruleset"
MODEL_KIND = "model:"
FLUSH_EVERY_S = 0.25
GUARD_FILE = "guard.json"
WATCHED_SOURCES = frozenset({"api", "config", "rollback", "promote"})
"""Ruleset changes that start a watch (a promoted challenger too); "bus" (another
worker's change) and "guard" (a rollback) do not."""
WATCHING, ROLLING_BACK = "watching", "rolling_back"
OUTCOMES = ("reject", "review")
_SLOTS = {"accept": 1, "review": 2, "reject": 3}
_ERRORS = (*STATE_ERRORS, RiskEngineError)

Rollback = Callable[[str, str, str], bool]
"""``rollback(scene, version, previous) -> bool`` (module docstring)."""


def breaches(new: Tally, baseline: Tally, settings: GuardSettings) -> list[str]:
    """The outcomes whose rate in `new` breaches the baseline's (module docstring)."""
    found = []
    for outcome in OUTCOMES:
        rate, before = new.rate(outcome), baseline.rate(outcome)
        if rate > settings.factor * before and rate - before > settings.min_delta:
            found.append(outcome)
    return found


class RolloutGuard:
    """Counts decisions by version, watches new versions, rolls back bad ones."""

    def __init__(self, settings: GuardSettings, store: GuardStore, scenes: Iterable[str],
                 rollbacks_total: Counter) -> None:
        self.settings = settings
        self.store = store
        self.scenes = tuple(scenes)
        self.rollbacks_total = rollbacks_total
        self._rollbacks: dict[str, Rollback] = {}
        self.source = uuid.uuid4().hex
        """This process's name in its flushes."""
        self._pending: dict[VersionKey, list[int]] = {}
        self._flushes = 0
        self._unacknowledged: Flush | None = None
        self._rollbacks_run: dict[str, bool] = {}
        """watch id → whether its rollback succeeded, until its verdict is recorded."""
        self._store_failing = False

    # -- the owners of the kinds

    def register_rollback(self, kind: str, rollback: Rollback) -> None:
        if kind != RULESET and not (kind.startswith(MODEL_KIND) and len(kind) > 6):
            raise ValueError(f"guard kind {kind!r}: use 'ruleset' or 'model:<name>'")
        self._rollbacks[kind] = rollback

    def on_version_live(self, scene: str, kind: str, version: str, previous: str) -> None:
        """Start watching `version`, live in `scene` after `previous` (a watch of another
        version of the same kind ends as superseded). Shared state unavailable: logged,
        nothing is watched."""
        if kind not in self._rollbacks:
            raise ValueError(f"guard kind {kind!r} has no rollback registered; call "
                             f"register_rollback first")
        if not previous or previous == version:
            return
        new = Watch(scene, kind, uuid.uuid4().hex, version, previous, _now_ms())
        try:
            for _ in range(10):  # another worker's change may come between read and write
                current = next(iter(self.store.watches([(scene, kind)])), None)
                if (current is not None and current.state in (WATCHING, ROLLING_BACK)
                        and (current.version, current.previous) == (version, previous)):
                    return  # the same change, watched already (another worker's reload)
                retired = None
                if current is not None and current.state == WATCHING:
                    retired = self._verdict(current, "superseded", self._counts(current))
                if self.store.replace(current, new, retired):
                    log.info("scene %s: %s %s live, watching its first %d decisions "
                             "against %s", scene, kind, version, self.settings.decisions,
                             previous)
                    return
        except _ERRORS as exc:
            log.error("scene %s: %s %s is not watched, the guard's store failed: %s",
                      scene, kind, version, exc)
            return
        log.error("scene %s: %s %s is not watched: the watch kept changing", scene, kind,
                  version)

    # -- the decision path

    def count(self, decision: Decision) -> None:
        """Count one decision of the champion arm by its versions (event loop only)."""
        if decision.arm != CHAMPION:
            return
        slot = _SLOTS[decision.decision]
        pending = self._pending
        key = (decision.scene, RULESET, decision.ruleset_version)
        tally = pending.get(key)
        if tally is None:
            tally = pending[key] = [0, 0, 0, 0]
        tally[0] += 1
        tally[slot] += 1
        if not decision.models:
            return
        for name, version in decision.models.items():
            key = (decision.scene, MODEL_KIND + name, version)
            tally = pending.get(key)
            if tally is None:
                tally = pending[key] = [0, 0, 0, 0]
            tally[0] += 1
            tally[slot] += 1

    # -- the background task

    async def flush_now(self) -> None:
        """Hand the counts to the store, then review the watches (the store's calls run
        in a thread). A flush the store failed to acknowledge is sent again, unchanged,
        before the counts made since (module docstring)."""
        flush = self._unacknowledged = self._unacknowledged or self._next_flush()
        if flush is not None:
            try:
                await asyncio.to_thread(self.store.add, flush)
            except _ERRORS as exc:
                self._failed("the counts are sent again at the next flush", exc)
                return
            self._unacknowledged = None
        try:
            await asyncio.to_thread(self.review)
        except _ERRORS as exc:
            self._failed("the watches are reviewed at the next flush", exc)
            return
        if self._store_failing:
            log.info("the guard's store answers again")
        self._store_failing = False

    def _next_flush(self) -> Flush | None:
        """The counts made since the last flush, as the next flush (None: none made)."""
        if not self._pending:
            return None
        pending, self._pending = self._pending, {}  # on the loop: no count is lost
        self._flushes += 1
        return Flush(self.source, self._flushes,
                     {key: Tally(*counts) for key, counts in pending.items()})

    def _failed(self, what: str, exc: BaseException) -> None:
        if not self._store_failing:  # once per outage
            log.error("the guard's store failed, %s: %s", what, exc)
        self._store_failing = True

    def review(self) -> None:
        """Conclude every watch that has its N decisions, and carry through this worker's
        rollbacks that a store error cut short (their watch is ``rolling_back`` with this
        worker as owner, or the rollback ran and its verdict's answer was lost)."""
        pairs = [(scene, kind) for scene in self.scenes for kind in self._rollbacks]
        watches = self.store.watches(pairs)
        current = {watch.id for watch in watches}
        for gone in [key for key in self._rollbacks_run if key not in current]:
            del self._rollbacks_run[gone]  # replaced since: nothing left to record
        for watch in watches:
            if watch.state == WATCHING:
                self._review(watch)
            elif watch.owner == self.source and watch.verdict is not None and (
                    watch.state == ROLLING_BACK or watch.id in self._rollbacks_run):
                self._roll_back(watch, watch.verdict)

    def _review(self, watch: Watch) -> None:
        counts = self._counts(watch)
        if counts.n < self.settings.decisions:
            return
        baseline = self._baseline(watch)
        exceeded = breaches(counts, baseline, self.settings) if baseline.n else []
        state = "rolled_back" if exceeded else "kept" if baseline.n else "no_baseline"
        verdict = self._verdict(watch, state, counts, baseline, exceeded)
        if not exceeded:
            if self.store.conclude(watch, WATCHING, state, verdict, record=True,
                                   owner=self.source):
                log.info("scene %s: %s %s %s after %d decisions", watch.scene, watch.kind,
                         watch.version, state, counts.n)
            return
        if self.store.conclude(watch, WATCHING, ROLLING_BACK, verdict, record=False,
                               owner=self.source):
            self._roll_back(watch, verdict)
        # else another worker concluded it

    def _roll_back(self, watch: Watch, verdict: Mapping[str, Any]) -> None:
        """Roll `watch`'s version back (once: a retry after the store failed to record
        the verdict only records it), then record the verdict."""
        done = self._rollbacks_run.get(watch.id)
        if done is None:
            try:
                done = self._rollbacks[watch.kind](watch.scene, watch.version, watch.previous)
            except Exception:
                log.exception("scene %s: rolling %s %s back failed", watch.scene, watch.kind,
                              watch.version)
                done = False
            self._rollbacks_run[watch.id] = done
        state = "rolled_back" if done else "rollback_failed"
        self.store.conclude(watch, ROLLING_BACK, state, {**verdict, "state": state},
                            record=True, owner=self.source)
        del self._rollbacks_run[watch.id]
        if not done:
            log.error("scene %s: %s %s breached the guard but could not be rolled back to "
                      "%s", watch.scene, watch.kind, watch.version, watch.previous)
            return
        self.rollbacks_total.labels(watch.scene, watch.kind).inc()
        rates, baseline = verdict["rates"], verdict["baseline"]
        log.warning(
            "scene %s: %s %s rolled back to %s by the guard: over its first %d decisions "
            "reject %.2f%% review %.2f%%, %s over its last %d: reject %.2f%% review %.2f%% "
            "(factor %g, min_delta %g)", watch.scene, watch.kind, watch.version,
            watch.previous, verdict["decisions"], 100 * rates["reject"],
            100 * rates["review"], watch.previous, baseline["decisions"],
            100 * baseline["rates"]["reject"], 100 * baseline["rates"]["review"],
            self.settings.factor, self.settings.min_delta)

    # -- reading

    def report(self, scene: str) -> dict[str, Any]:
        """What is watched in `scene` (counts so far) and the verdicts, newest first."""
        watching = []
        pairs = [(scene, kind) for kind in self._rollbacks]
        for watch in self.store.watches(pairs):
            if watch.state in (WATCHING, ROLLING_BACK):
                counts, baseline = self._counts(watch), self._baseline(watch)
                exceeded = breaches(counts, baseline, self.settings) if baseline.n else []
                watching.append(self._verdict(watch, watch.state, counts, baseline,
                                              exceeded, decided=False))
        verdicts = [v for pair in pairs for v in self.store.verdicts(*pair)]
        verdicts.sort(key=lambda v: v.get("decided_at_ms") or 0, reverse=True)
        return {"scene": scene, "enabled": True, "settings": self.settings.to_dict(),
                "watching": watching, "verdicts": verdicts}

    def rolled_back(self, scene: str, kind: str) -> dict[str, dict[str, Any]]:
        """version → the newest verdict that rolled it back ({} when the store fails)."""
        try:
            verdicts = self.store.verdicts(scene, kind)
        except _ERRORS as exc:
            log.error("the guard's verdicts cannot be read: %s", exc)
            return {}
        found: dict[str, dict[str, Any]] = {}
        for verdict in verdicts:
            if verdict.get("state") == "rolled_back":
                found.setdefault(str(verdict.get("version")), verdict)
        return found

    # -- internals

    def _counts(self, watch: Watch) -> Tally:
        return self.store.totals(watch.scene, watch.kind, watch.version).minus(watch.offset)

    def _baseline(self, watch: Watch) -> Tally:
        return self.store.recent(watch.scene, watch.kind, watch.previous,
                                 self.settings.decisions)

    def _verdict(self, watch: Watch, state: str, counts: Tally,
                 baseline: Tally | None = None, exceeded: list[str] | None = None, *,
                 decided: bool = True) -> dict[str, Any]:
        return {"kind": watch.kind, "version": watch.version, "previous": watch.previous,
                "state": state, "started_at_ms": watch.started_at_ms,
                "decided_at_ms": _now_ms() if decided else None,
                "of": self.settings.decisions, **_described(counts),
                "baseline": None if baseline is None else _described(baseline),
                "exceeded": exceeded or []}


def guard_rulesets(settings: GuardSettings, engine: Engine, registry: RulesetRegistry,
                   state_dir: Path, rollbacks_total: Counter) -> RolloutGuard:
    """The guard of a service: its store on the engine's state (Redis when shared, else
    in the process with the verdicts in ``<state-dir>/guard.json``), rulesets registered
    and the versions list marking what it rolled back."""
    state = engine.state
    store: GuardStore = (
        RedisGuardStore(state.client, settings.decisions, state.prefix)
        if isinstance(state, RedisState)
        else MemoryGuardStore(settings.decisions, state_dir / GUARD_FILE))
    guard = RolloutGuard(settings, store, engine.scenes, rollbacks_total)

    def rollback(scene: str, version: str, previous: str) -> bool:
        return registry.activate(scene, previous, source="guard", replacing=version) is not None

    guard.register_rollback(RULESET, rollback)
    registry.notes = lambda scene: guard.rolled_back(scene, RULESET)
    return guard


def _described(tally: Tally) -> dict[str, Any]:
    return {"decisions": tally.n,
            "counts": {"accept": tally.accept, "review": tally.review, "reject": tally.reject},
            "rates": {outcome: tally.rate(outcome) for outcome in ("review", "reject")}}


def _now_ms() -> int:
    return int(time.time() * 1000)


