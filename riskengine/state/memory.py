"""In-memory state, the engine's default backend: one process, snapshots for restarts.

Per scene (`MemoryScene`) and per clock domain (`MemoryPart`: the one domain None, or one
per partition of a stream worker, docs/semantics.md "Order"): the feature state
(`SceneFeatures`: entity tables, the scene clock, the generated fast path), the sequence
patterns' per-key state, and the idempotency records. A partition's state is its own, as
a replay of that partition alone would have it, and goes whole when the partition goes to
another worker (`drop_clock`). LSNs are this process's arrival order, across domains.

Idempotency: `ids` (riskengine/state/idempotency.py) maps each remembered event id to a
compact `Record` (the feature values inline, the rule outcome shared with the decision, no
dict, no objects of its own beyond the record). A duplicate gets an equal `Decision`
rebuilt from it, marked `duplicate`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Hashable, Mapping
from pathlib import Path
from time import perf_counter
from typing import Any

from riskengine.decision import Decision
from riskengine.exceptions import SnapshotError
from riskengine.experiment import CHAMPION
from riskengine.features.engine import SceneFeatures
from riskengine.features.fastpath import build_fast_path
from riskengine.features.history import NEVER
from riskengine.files import write_atomic
from riskengine.lists import Lists
from riskengine.patterns import ScenePatterns
from riskengine.rules.ruleset import Outcome
from riskengine.scene import SceneRuntime
from riskengine.state.idempotency import RememberedIds

__all__ = ["SNAPSHOT_FORMAT", "MemoryPart", "MemoryScene", "MemoryState", "record_of"]

SNAPSHOT_FORMAT = 3

Record = tuple[Any, ...]
"""A remembered decision, compact: ``(timestamp, lsn, latency_ms, rule outcome,
list_hits, late + 2·degraded, version, *feature values)``; the outcome and the
other tuples are the decision's own (mostly shared constants), so a record is one tuple
of its own. `version` is the ruleset version, ``(arm, version)`` for a decision a
challenger answered (riskengine/experiment.py), or ``(arm, version, models)`` when models
scored it (`models`: the live set's own name → version mapping, shared)."""
_T, _LSN, _LATENCY, _OUTCOME, _LIST_HITS, _FLAGS, _VERSION, _VALUES = range(8)
_Computed = tuple[dict[str, Any], int, dict[str, Any], bool, bool, bool, int, float]
"""An event of a run taken to its features: (event, LSN, values, late, degraded, its id
held already, the scene clock after it, seconds spent on it)."""
_NO_MODELS: Mapping[str, str] = {}


def record_of(decision: Decision, outcome: Outcome | None = None) -> Record:
    """The remembered form of `decision` (`outcome`: the rules' outcome it came from,
    shared to save memory; rebuilt from the decision when not given)."""
    if outcome is None:
        outcome = (decision.decision, decision.score, decision.hits, decision.shadow_hits,
                   decision.rule_errors)
    version: Any = decision.ruleset_version
    if decision.models:
        version = (decision.arm, version, decision.models)
    elif decision.arm != CHAMPION:
        version = (decision.arm, version)
    return (decision.timestamp, decision.lsn, decision.latency_ms, outcome,
            decision.list_hits, decision.late + 2 * decision.degraded, version,
            *decision.features.values())


class MemoryState:
    """The in-memory backend (see the module docstring)."""

    shared = False

    def __init__(self) -> None:
        self.lsn = 0
        """The LSN of the last accepted event (this process's arrival order)."""
        self._scenes: dict[str, MemoryScene] = {}

    def bind(self, runtimes: Mapping[str, SceneRuntime], lists: Lists
             ) -> dict[str, MemoryScene]:
        self._scenes = {name: MemoryScene(self, rt, lists) for name, rt in runtimes.items()}
        return dict(self._scenes)

    def use_lists(self, lists: Lists) -> None:
        for scene in self._scenes.values():
            scene.use_lists(lists)

    def entity(self, scene: str, field: str, value: Any) -> tuple[int | None, dict[str, Any]]:
        """The entity in the part that holds it (the default part when none does)."""
        parts = list(self._scenes[scene].parts.values())
        holding = [p for p in parts if p.features.holds(field, value)]
        features = (holding or parts or [self._scenes[scene].part(None)])[0].features
        found = features.peek(field, value)
        if found is None:
            raise KeyError(field)
        as_of = features.global_max if features.global_max != NEVER else None
        return as_of, found

    def part(self, scene: str, clock: Hashable) -> MemoryPart:
        """The state of `scene` in clock domain `clock` (made empty on first use): what a
        runtime keeping its state elsewhere loads before deciding and dumps after (the
        Spark stream job, riskengine/spark/partition_state.py)."""
        return self._scenes[scene].part(clock)

    def drop_clock(self, clock: Hashable) -> None:
        for scene in self._scenes.values():
            scene.parts.pop(clock, None)

    def clock(self, scene: str) -> int | None:
        """G of `scene` in the one clock domain None (None before its first event)."""
        part = self._scenes[scene].parts.get(None)
        if part is None or part.features.global_max == NEVER:
            return None
        return part.features.global_max

    def stats(self) -> dict[str, Any]:
        """Entities, retained entries and remembered event ids per scene (and the keys
        and entries of its sequence patterns, if it has any), over all its parts."""
        out: dict[str, Any] = {}
        for name, scene in self._scenes.items():
            totals: dict[str, int] = {"entities": 0, "retained_entries": 0,
                                      "evicted_for_size": 0, "remembered_ids": 0}
            if scene.runtime.patterns:
                totals.update(pattern_keys=0, pattern_entries=0)
            for part in scene.parts.values():
                counts = {**part.features.stats(), "remembered_ids": len(part.ids),
                          **(part.patterns.stats() if part.patterns else {})}
                for key, value in counts.items():
                    totals[key] += value
            out[name] = totals
        return out

    def snapshot(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole state to `path` atomically (temp file, fsync, rename)."""
        target = Path(path)
        payload = {
            "format": SNAPSHOT_FORMAT,
            "lsn": self.lsn,
            "scenes": {name: [(clock, part.dump()) for clock, part in scene.parts.items()]
                       for name, scene in self._scenes.items()},
        }
        write_atomic(target, lambda handle: pickle.dump(payload, handle,
                                                        protocol=pickle.HIGHEST_PROTOCOL))
        return target

    def restore(self, path: str | os.PathLike[str]) -> None:
        """Load a snapshot written by `snapshot` (a trusted file: it is a pickle).
        Buffers whose feature definitions changed since the snapshot start empty; a
        snapshot of another format (older lateness rules included) is refused."""
        try:
            with open(path, "rb") as handle:
                payload = pickle.load(handle)  # the operator's own snapshot file
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise SnapshotError(f"cannot read snapshot {str(path)!r}: {exc}") from None
        if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(f"{str(path)!r} is not a riskengine snapshot (format "
                                f"{SNAPSHOT_FORMAT})")
        self.lsn = payload["lsn"]
        for name, parts in payload["scenes"].items():
            if name in self._scenes:
                self.load_scene(name, parts)

    def load_scene(self, name: str, parts: list[tuple[Hashable, dict[str, Any]]]) -> None:
        """Replace scene `name`'s state with `parts`: (clock domain, `MemoryPart.dump()`)
        pairs, as a snapshot holds them (or as a runtime computing the state elsewhere
        assembles them, riskengine/spark/backfill.py)."""
        scene = self._scenes[name]
        scene.parts.clear()
        for clock, data in parts:
            scene.part(clock).load(data)

    def close(self) -> None:
        pass


class MemoryScene:
    """One scene's state in memory: a `MemoryPart` per clock domain; `evaluate` decides in
    the event's domain."""

    def __init__(self, state: MemoryState, runtime: SceneRuntime, lists: Lists) -> None:
        self.state = state
        self.runtime = runtime
        self.lists = lists
        self.parts: dict[Hashable, MemoryPart] = {}
        self._last: tuple[Hashable, MemoryPart] | None = None
        self.part(None)  # built now: a config its feature filters refuse fails at load

    def part(self, clock: Hashable) -> MemoryPart:
        """The state of domain `clock` (made empty on first use)."""
        last = self._last
        if last is not None and last[0] == clock and self.parts.get(clock) is last[1]:
            return last[1]
        part = self.parts.get(clock)
        if part is None:
            part = self.parts[clock] = MemoryPart(self.state, self.runtime, self.lists)
        self._last = (clock, part)
        return part

    def use_lists(self, lists: Lists) -> None:
        self.lists = lists
        for part in self.parts.values():
            part.use_lists(lists)

    def evaluate(self, event: dict[str, Any], started: float, clock: Hashable) -> Decision:
        return self.part(clock).evaluate(event, started)

    def evaluate_many(self, events: list[dict[str, Any]], clock: Hashable) -> list[Decision]:
        """`evaluate` for each event in order (`MemoryPart.evaluate_many`)."""
        return self.part(clock).evaluate_many(events)


class MemoryPart:
    """The state of one scene in one clock domain; `evaluate` is its per-event path."""

    def __init__(self, state: MemoryState, runtime: SceneRuntime, lists: Lists) -> None:
        config = runtime.config
        self.state = state
        self.runtime = runtime
        self.lists = lists
        self.features = SceneFeatures(config.features, config.lateness_ms,
                                      config.max_entities, runtime.compile_where, lists)
        self.fast = self.features.fast
        self.patterns = ScenePatterns(config.patterns, config.lateness_ms, runtime.where_names)
        self.ids = RememberedIds(runtime.idempotency_horizon_ms, runtime.idempotency_max)

    def use_lists(self, lists: Lists) -> None:
        """Read lists from `lists`: the filters of the general path and of the fast path
        (generated again: it holds its lists)."""
        self.lists = lists
        self.features.lists = lists
        self.features.fast = build_fast_path(self.features)
        self.fast = self.features.fast

    def evaluate(self, event: dict[str, Any], started: float) -> Decision:
        """Idempotency, LSN, features and patterns, then `SceneRuntime.decide` and the
        remembering."""
        features = self.features
        event_id = event["event_id"]
        ids = self.ids
        previous = ids.records.get(event_id)
        if previous is not None and ids.fresh(previous, features.global_max):
            return self.recall(event_id, previous)
        lsn, values, late, degraded = self.take(event)
        decision, outcome = self.runtime.decide(event, lsn, values, late, degraded,
                                                self.lists, started)
        self.remember(decision, outcome, previous is not None)
        return decision

    def take(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], bool, bool]:
        """The state's part of deciding a new event: its LSN, its features (pattern values
        included), whether it is late and whether a window may be partial."""
        features = self.features
        state = self.state
        state.lsn = lsn = state.lsn + 1
        values = self.fast(event, lsn)
        if values is None:
            values, late, degraded = features.compute_general(event, lsn)
        else:
            late = degraded = False
        if self.patterns:
            self.patterns.observe(event, lsn, late, self.lists, features.global_max, values)
        return lsn, values, late, degraded

    def evaluate_many(self, events: list[dict[str, Any]]) -> list[Decision]:
        """`evaluate` for each event in order, with the same decisions. Without models it
        is that loop. With models, a run of events is taken to its features (idempotency,
        LSN, features, patterns: the state, in order), then scored by the models in one
        run each (`ModelScores.score_many`), then decided and remembered in order. A run
        ends before an event whose id is held already or earlier in the run, so that it
        finds what `evaluate` would: the remembered decisions of every event before it.
        A decision's latency is the time spent on its event (its share of the models'
        run included)."""
        decisions: list[Decision] = []
        append = decisions.append
        if self.runtime.lineup.models is None:
            evaluate = self.evaluate
            started = perf_counter()
            for event in events:
                append(evaluate(event, started))
                started = perf_counter()
            return decisions
        features, ids, take = self.features, self.ids, self.take
        records = ids.records
        run: list[_Computed] = []
        in_run: set[str] = set()
        try:
            for event in events:
                started = perf_counter()
                event_id = event["event_id"]
                known = False
                if event_id in in_run or event_id in records:
                    self._decide_run(run, decisions)
                    in_run.clear()
                    started = perf_counter()
                    previous = records.get(event_id)
                    if previous is not None and ids.fresh(previous, features.global_max):
                        append(self.recall(event_id, previous))
                        continue
                    known = previous is not None
                lsn, values, late, degraded = take(event)
                in_run.add(event_id)
                run.append((event, lsn, values, late, degraded, known, features.global_max,
                            perf_counter() - started))
        finally:  # an event that raises: those before it are decided and remembered, as
            self._decide_run(run, decisions)  # one by one (the caller isolates it)
        return decisions

    def _decide_run(self, run: list[_Computed], decisions: list[Decision]) -> None:
        """Score a run's events in one go, then decide and remember each in order (each
        at the clock `evaluate` would have remembered it at); empties `run`. An event
        whose decision raises is left out (as `evaluate` would leave it) and the first
        such error raised once the others are decided and remembered."""
        if not run:
            return
        runtime, lists, ids = self.runtime, self.lists, self.ids
        lineup = runtime.lineup  # one lineup scores and decides the whole run
        scoring = perf_counter()
        if lineup.models is not None:
            lineup.models.score_many([c[0] for c in run], [c[2] for c in run])
        share = (perf_counter() - scoring) / len(run)
        append = decisions.append
        failure: Exception | None = None
        for event, lsn, values, late, degraded, known, clock, spent in run:
            try:
                decision, outcome = runtime.decide(event, lsn, values, late, degraded, lists,
                                                   perf_counter() - spent - share, lineup)
                ids.remember(decision.event_id, record_of(decision, outcome), known, clock)
            except Exception as exc:
                failure = failure or exc
                continue
            append(decision)
        run.clear()
        if failure is not None:
            raise failure

    # -- idempotency -----------------------------------------------------------------

    def recall(self, event_id: str, record: Record) -> Decision:
        """The remembered decision of `event_id`, rebuilt from its record and marked
        `duplicate`."""
        action, score, hits, shadow_hits, errors = record[_OUTCOME]
        version = record[_VERSION]
        arm, models = CHAMPION, _NO_MODELS
        if type(version) is tuple:
            arm, version, *scored = version
            models = scored[0] if scored else _NO_MODELS
        return Decision(event_id, self.runtime.name, action, score, hits, shadow_hits,
                        dict(zip(self.runtime.feature_names, record[_VALUES:], strict=True)),
                        record[_LIST_HITS], version, bool(record[_FLAGS] & 1),
                        bool(record[_FLAGS] & 2),
                        record[_LATENCY], record[_LSN], record[_T], errors, True, arm,
                        models=models)

    def remember(self, decision: Decision, outcome: Outcome, known: bool) -> None:
        """Keep `decision` for its id; `known`: the id is held already (an entry past
        its horizon, decided again)."""
        self.ids.remember(decision.event_id, record_of(decision, outcome), known,
                          self.features.global_max)

    def dump(self) -> dict[str, Any]:
        """The part's state (no references to live objects)."""
        return {"features": self.features.dump(),
                "seen": self.ids.dump(),
                "patterns": self.patterns.dump()}

    def load(self, data: dict[str, Any]) -> None:
        self.features.load(data["features"])
        self.ids.load(data["seen"])
        self.patterns.load(data.get("patterns", {}))
