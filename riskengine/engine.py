"""Engine: the one decision path every runtime calls.

validate → idempotency → LSN → features (forked by key) → lists → rules → decision.
Everything that can be prepared when the config loads is prepared in `__init__`.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from time import perf_counter
from typing import Any

from riskengine.config import ProjectConfig, SceneConfig, load_config
from riskengine.decision import Decision
from riskengine.events import EventParser
from riskengine.exceptions import (
    ConfigError,
    EventValidationError,
    SnapshotError,
    UnknownSceneError,
)
from riskengine.features.dsl import NUMERIC_FUNCTIONS, FeatureSpec
from riskengine.features.engine import SceneFeatures
from riskengine.features.history import NEVER
from riskengine.features.plan import Predicate
from riskengine.lists import Lists, ListStore
from riskengine.patterns import ScenePatterns
from riskengine.rules.expr import ExprNames, compile_expression
from riskengine.rules.ruleset import Outcome, Ruleset

SNAPSHOT_FORMAT = 3
MAX_BATCH = 100_000
_FORGET_EVERY = 64
RECENT_DECISIONS = 16
"""How many of a scene's latest decisions are also kept whole (see `SceneRuntime`)."""

Record = tuple[Any, ...]
"""A remembered decision, compact: ``(timestamp, lsn, latency_ms, rule outcome,
list_hits, late + 2·degraded, ruleset_version, *feature values)``; the outcome and the
other tuples are the decision's own (mostly shared constants), so a record is one tuple
of its own."""
_T, _LSN, _LATENCY, _OUTCOME, _LIST_HITS, _FLAGS, _VERSION, _VALUES = range(8)


class SceneRuntime:
    """Everything one scene needs per event, built once from its `SceneConfig`.

    Idempotency: `seen` maps each remembered event id to a compact `Record` (the feature
    values inline, the rule outcome shared with the decision, no dict, no objects of its
    own beyond the record). A duplicate gets an equal `Decision` rebuilt from it; the last
    `RECENT_DECISIONS` decisions are also kept whole, so a quick retry gets the very object
    it was first given.
    """

    def __init__(self, config: SceneConfig, lists: ListStore) -> None:
        self.config = config
        self.name = config.name
        numeric = frozenset(s.target for s in config.features if s.func in NUMERIC_FUNCTIONS)
        self.parser = EventParser(config.name, config.schema, numeric)
        list_names = frozenset(lists.names())
        for check in config.list_checks:
            if check.list not in list_names:
                raise ConfigError(
                    f"scene {config.name!r}: list check names unknown list {check.list!r}")
        self.list_checks = tuple((c.list, c.field) for c in config.list_checks)
        self.names = ExprNames(
            features=frozenset(s.name for s in config.features),
            lists=list_names,
            patterns=frozenset(p.name for p in config.patterns),
            models=frozenset(),
            allow_features=True,
        )
        where_names = ExprNames(features=frozenset(), lists=list_names, patterns=frozenset(),
                                models=frozenset(), allow_features=False)
        self.patterns = ScenePatterns(config.patterns, config.lateness_ms, where_names)

        def compile_where(spec: FeatureSpec) -> Predicate:
            return compile_expression(spec.where or "True", names=where_names,
                                      origin=f"feature {spec.name!r} where")

        self.features = SceneFeatures(config.features, config.lateness_ms, config.max_entities,
                                      compile_where, lists)
        self.feature_names = (*self.features.template, *self.patterns.keys)
        self.fast = self.features.fast
        self.parse = self.parser.parse
        self.ruleset = Ruleset.build(config.name, list(config.rules), dict(config.policy),
                                     self.names, config.ruleset_version)
        self.idempotency_horizon_ms = config.lateness_ms + self.features.max_window_ms
        self.idempotency_max = config.idempotency_max
        self.seen: dict[str, Record] = {}
        self.seen_order: deque[str] = deque()
        self.recent: deque[Decision] = deque(maxlen=RECENT_DECISIONS)
        self.forget_countdown = _FORGET_EVERY

    def list_hits(self, lists: Lists, event: dict[str, Any], t: int) -> tuple[str, ...]:
        return tuple(name for name, field in self.list_checks
                     if lists.contains(name, event.get(field), t))

    def recall(self, event_id: str, record: Record) -> Decision:
        """The remembered decision of `event_id`, marked `duplicate`: a copy of the
        decision itself if it is one of the recent ones, else rebuilt from its record."""
        lsn = record[_LSN]
        for decision in self.recent:
            if decision.lsn == lsn:
                return replace(decision, features=dict(decision.features), duplicate=True)
        action, score, hits, shadow_hits, errors = record[_OUTCOME]
        return Decision(event_id, self.name, action, score, hits, shadow_hits,
                        dict(zip(self.feature_names, record[_VALUES:], strict=True)),
                        record[_LIST_HITS], record[_VERSION], bool(record[_FLAGS] & 1),
                        bool(record[_FLAGS] & 2),
                        record[_LATENCY], lsn, record[_T], errors, True)

    def decide(self, event: dict[str, Any], lsn: int, features: dict[str, Any], late: bool,
               degraded: bool, lists: Lists, started: float) -> tuple[Decision, Outcome]:
        """The decision of an event whose features (and pattern values) are computed:
        list checks, the live ruleset, the policy; with the rules' outcome (shared by
        the remembered record). Every runtime's one decision path; `started` is the
        `perf_counter()` the event's latency counts from."""
        t = event["timestamp"]
        list_hits = self.list_hits(lists, event, t) if self.list_checks else ()
        ruleset = self.ruleset
        outcome = ruleset.outcome(event, features, lists)
        action, score, hits, shadow_hits, errors = outcome
        return Decision(  # positional: this is the per-event path
            event["event_id"], self.name, action, score, hits, shadow_hits, features,
            list_hits, ruleset.version, late, degraded, (perf_counter() - started) * 1000.0,
            lsn, t, errors), outcome

    def remember(self, decision: Decision, outcome: Outcome, known: bool) -> None:
        """Keep `decision` for its id (in memory); `known`: the id is held already (an
        entry past its horizon, decided again)."""
        event_id = decision.event_id
        seen = self.seen
        seen[event_id] = (decision.timestamp, decision.lsn, decision.latency_ms, outcome,
                          decision.list_hits, decision.late + 2 * decision.degraded,
                          decision.ruleset_version, *decision.features.values())
        self.recent.append(decision)
        if not known:
            self.seen_order.append(event_id)
            if len(seen) > self.idempotency_max:
                self.cap_ids()
        self.forget_countdown -= 1
        if not self.forget_countdown:
            self.forget_old_ids()

    def forget_old_ids(self) -> None:
        """Drop ids whose event left the horizon (arrival order), and any over the cap."""
        self.forget_countdown = _FORGET_EVERY
        order = self.seen_order
        seen = self.seen
        horizon = self.features.safe_clock() - self.idempotency_horizon_ms
        while order:
            event_id = order[0]
            record = seen.get(event_id)
            if record is not None and record[_T] > horizon:
                break
            order.popleft()
            if record is not None:
                del seen[event_id]
        self.cap_ids()

    def cap_ids(self) -> None:
        seen = self.seen
        order = self.seen_order
        while len(seen) > self.idempotency_max:
            seen.pop(order.popleft(), None)

    def dump_ids(self) -> list[tuple[str, Record]]:
        """The remembered ids in arrival order, with their records (no references)."""
        seen = self.seen
        return [(i, seen[i]) for i in self.seen_order if i in seen]

    def load_ids(self, rows: list[tuple[str, Record]]) -> None:
        self.seen.clear()
        self.seen_order.clear()
        for event_id, record in rows:
            self.seen[event_id] = record
            self.seen_order.append(event_id)


def parse_batch(runtime: SceneRuntime, events: Iterable[Mapping[str, Any]]
                ) -> list[dict[str, Any]]:
    """Validate a whole batch first: the first invalid event refuses it, naming its index;
    more than `MAX_BATCH` events are refused."""
    parse = runtime.parser.parse
    parsed = []
    for index, event in enumerate(events):
        if index >= MAX_BATCH:
            raise EventValidationError(f"a batch holds at most {MAX_BATCH} events")
        try:
            parsed.append(parse(event))
        except EventValidationError as exc:
            raise EventValidationError(f"event {index}: {exc}", field=exc.field) from None
    return parsed


class Engine:
    """In-process decision engine over a project config; state in memory.

    >>> engine = Engine.from_config(None)
    >>> d = engine.evaluate("transfer", {"timestamp": 1_700_000_000_000, "pay_account": "A",
    ...                                  "rcv_account": "B", "amount": 10.0})
    >>> d.decision, d.features["count(pay_account.history,1h)"]
    ('accept', 1)
    """

    shared_state = False
    """True for engines whose state lives outside the process (`SharedEngine`)."""

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config
        self.lists = ListStore.from_config(config.lists, config.base_dir)
        self._scenes = {name: SceneRuntime(sc, self.lists) for name, sc in config.scenes.items()}
        self._lsn = 0

    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | Mapping[str, Any] | ProjectConfig
                    | None = None) -> Engine:
        """Build from a YAML path, a mapping, a `ProjectConfig`, or None (the example)."""
        return cls(load_config(source))

    @property
    def scenes(self) -> tuple[str, ...]:
        return tuple(self._scenes)

    @property
    def lsn(self) -> int:
        """The LSN of the last accepted event."""
        return self._lsn

    def scene(self, name: str) -> SceneRuntime:
        runtime = self._scenes.get(name)
        if runtime is None:
            raise UnknownSceneError(
                f"unknown scene {name[:100]!r}; this project has {', '.join(self._scenes)}")
        return runtime

    def ruleset(self, scene: str) -> Ruleset:
        return self.scene(scene).ruleset

    def activate_ruleset(self, scene: str, rules: Iterable[Mapping[str, Any]],
                         policy: Mapping[str, Any], version: str | None = None) -> Ruleset:
        """Compile a new ruleset and make it live in one assignment (all or nothing)."""
        runtime = self.scene(scene)
        ruleset = Ruleset.build(scene, list(rules), dict(policy), runtime.names, version)
        runtime.ruleset = ruleset
        return ruleset

    def evaluate(self, scene: str, event: Mapping[str, Any], *, clock: Hashable = None
                 ) -> Decision:
        """Decide one event. Raises `EventValidationError` / `UnknownSceneError`.

        `clock` names the event's clock domain: a stream worker reading several
        partitions passes the partition, so that each keeps its own scene clock G
        (docs/semantics.md); None is the one clock of everything else."""
        started = perf_counter()
        runtime = self._scenes.get(scene)
        if runtime is None:
            runtime = self.scene(scene)
        parsed = runtime.parse(event)
        if clock != runtime.features.domain:
            runtime.features.switch(clock)
        return self._decide_one(runtime, parsed, started)

    def _decide_one(self, runtime: SceneRuntime, event: dict[str, Any], started: float
                    ) -> Decision:
        """Idempotency, LSN, features and patterns (in memory), then `SceneRuntime.decide`
        and the remembering."""
        event_id = event["event_id"]
        previous = runtime.seen.get(event_id)
        if previous is not None and previous[_T] > (
                runtime.features.global_max - runtime.idempotency_horizon_ms):
            return runtime.recall(event_id, previous)
        self._lsn = lsn = self._lsn + 1
        features = runtime.fast(event, lsn)
        if features is None:
            features, late, degraded = runtime.features.compute_general(event, lsn)
        else:
            late = degraded = False
        if runtime.patterns:
            runtime.patterns.observe(event, lsn, late, self.lists, runtime.features, features)
        decision, outcome = runtime.decide(event, lsn, features, late, degraded, self.lists,
                                           started)
        runtime.remember(decision, outcome, previous is not None)
        return decision

    def evaluate_many(self, scene: str, events: Iterable[Mapping[str, Any]]) -> list[Decision]:
        """Decide events in order. All are validated first: one invalid event refuses the
        batch (the error names its index) and nothing changes. Then one loop decides them
        all; each decision's `latency_ms` is the time spent on that event."""
        runtime = self.scene(scene)
        return self._decide_many(runtime, parse_batch(runtime, events))

    def decide_parsed(self, scene: str, events: list[dict[str, Any]], *,
                      clock: Hashable = None) -> list[Decision]:
        """Decide events that the scene's parser (`scene(s).parse`) already validated, in
        order, in one loop (as `evaluate_many` once it validated the batch), all on the
        clock domain `clock` (see `evaluate`)."""
        runtime = self.scene(scene)
        if clock != runtime.features.domain:
            runtime.features.switch(clock)
        return self._decide_many(runtime, events)

    def drop_clock(self, clock: Hashable) -> None:
        """Forget the scene clocks of domain `clock` (a partition no longer read here)."""
        for runtime in self._scenes.values():
            runtime.features.drop_clock(clock)

    def _decide_many(self, runtime: SceneRuntime, events: list[dict[str, Any]]
                     ) -> list[Decision]:
        """`_decide_one` for each event in order, one clock read per event (a decision's
        latency is the time since the previous one was made)."""
        decisions: list[Decision] = []
        append = decisions.append
        decide = self._decide_one
        started = perf_counter()
        for event in events:
            decision = decide(runtime, event, started)
            started = perf_counter()
            append(decision)
        return decisions

    def entity(self, scene: str, field: str, value: Any) -> tuple[int | None, dict[str, Any]]:
        """The current values of the features of `scene` keyed by `field` alone, for the
        entity `value`: `(as_of, {name: value})`, as_of being the scene's event clock
        (None before any event). A string value that looks like an integer also finds an
        entity keyed by that integer. Raises `UnknownSceneError`, or `KeyError` when no
        feature of the scene is keyed by `field` alone.
        """
        features = self.scene(scene).features
        found = features.peek(field, value)
        if found is None:
            raise KeyError(field)
        as_of = features.global_max if features.global_max != NEVER else None
        return as_of, found

    # -- state -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Entities, retained entries and remembered event ids per scene (and the keys
        and entries of its sequence patterns, if it has any)."""
        return {name: {**rt.features.stats(), "remembered_ids": len(rt.seen),
                       **(rt.patterns.stats() if rt.patterns else {})}
                for name, rt in self._scenes.items()}

    def snapshot(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole state to `path` atomically (temp file, fsync, rename)."""
        target = Path(path)
        payload = {
            "format": SNAPSHOT_FORMAT,
            "lsn": self._lsn,
            "scenes": {
                name: {
                    "features": rt.features.dump(),
                    "seen": rt.dump_ids(),
                    "patterns": rt.patterns.dump(),
                }
                for name, rt in self._scenes.items()
            },
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def restore(self, path: str | os.PathLike[str]) -> Engine:
        """Load a snapshot written by `snapshot` (a trusted file: it is a pickle).

        Buffers whose feature definitions changed since the snapshot start empty.
        """
        try:
            with open(path, "rb") as handle:
                payload = pickle.load(handle)  # the operator's own snapshot file
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise SnapshotError(f"cannot read snapshot {str(path)!r}: {exc}") from None
        if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(f"{str(path)!r} is not a riskengine snapshot (format "
                                f"{SNAPSHOT_FORMAT})")
        self._lsn = payload["lsn"]
        for name, data in payload["scenes"].items():
            runtime = self._scenes.get(name)
            if runtime is None:
                continue
            runtime.features.load(data["features"])
            runtime.load_ids(data["seen"])
            runtime.patterns.load(data.get("patterns", {}))
        return self
