"""Engine: the one decision path every runtime calls.

validate → idempotency → LSN → features (forked by key) → lists → rules → decision.
Everything that can be prepared when the config loads is prepared in `__init__`.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
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
from riskengine.features.plan import Predicate
from riskengine.lists import ListStore
from riskengine.rules.expr import ExprNames, compile_expression
from riskengine.rules.ruleset import Ruleset

SNAPSHOT_FORMAT = 1
MAX_BATCH = 100_000
_FORGET_EVERY = 32


class SceneRuntime:
    """Everything one scene needs per event, built once from its `SceneConfig`."""

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
            patterns=frozenset(),
            models=frozenset(),
            allow_features=True,
        )
        where_names = ExprNames(features=frozenset(), lists=list_names, patterns=frozenset(),
                                models=frozenset(), allow_features=False)

        def compile_where(spec: FeatureSpec) -> Predicate:
            return compile_expression(spec.where or "True", names=where_names,
                                      origin=f"feature {spec.name!r} where")

        self.features = SceneFeatures(config.features, config.lateness_ms, config.max_entities,
                                      compile_where, lists)
        self.ruleset = Ruleset.build(config.name, list(config.rules), dict(config.policy),
                                     self.names, config.ruleset_version)
        self.idempotency_horizon_ms = config.lateness_ms + self.features.max_window_ms
        self.idempotency_max = config.idempotency_max
        self.seen: dict[str, Decision] = {}
        self.seen_order: deque[str] = deque()
        self._countdown = _FORGET_EVERY

    def remember(self, decision: Decision) -> None:
        """Keep the decision for its event id; forget the oldest ids now and then."""
        event_id = decision.event_id
        seen = self.seen
        if event_id not in seen:
            self.seen_order.append(event_id)
        seen[event_id] = decision
        self._countdown -= 1
        if not self._countdown:
            self._countdown = _FORGET_EVERY
            self.forget_old_ids(_FORGET_EVERY * 2)

    def forget_old_ids(self, budget: int) -> None:
        """Drop ids whose event left the horizon (arrival order), and any over the cap."""
        order = self.seen_order
        seen = self.seen
        horizon = self.features.global_max - self.idempotency_horizon_ms
        while budget and order:
            stored = seen.get(order[0])
            if stored is not None and stored.timestamp > horizon and \
                    len(seen) <= self.idempotency_max:
                break
            order.popleft()
            if stored is not None:
                del seen[stored.event_id]
            budget -= 1
        while len(seen) > self.idempotency_max:
            seen.pop(order.popleft(), None)


class Engine:
    """In-process decision engine over a project config; state in memory.

    >>> engine = Engine.from_config(None)
    >>> d = engine.evaluate("transfer", {"timestamp": 1_700_000_000_000, "pay_account": "A",
    ...                                  "rcv_account": "B", "amount": 10.0})
    >>> d.decision, d.features["count(pay_account.history,1h)"]
    ('accept', 1)
    """

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

    def evaluate(self, scene: str, event: Mapping[str, Any]) -> Decision:
        """Decide one event. Raises `EventValidationError` / `UnknownSceneError`."""
        started = time.perf_counter()
        runtime = self._scenes.get(scene)
        if runtime is None:
            runtime = self.scene(scene)
        return self._decide(runtime, runtime.parser.parse(event), started)

    def evaluate_many(self, scene: str, events: Iterable[Mapping[str, Any]]) -> list[Decision]:
        """Decide events in order. All are validated first: one invalid event refuses the
        batch (the error names its index) and nothing changes."""
        runtime = self.scene(scene)
        parse = runtime.parser.parse
        parsed = []
        for index, event in enumerate(events):
            if index >= MAX_BATCH:
                raise EventValidationError(f"a batch holds at most {MAX_BATCH} events")
            try:
                parsed.append(parse(event))
            except EventValidationError as exc:
                raise EventValidationError(f"event {index}: {exc}", field=exc.field) from None
        decide = self._decide
        return [decide(runtime, event, time.perf_counter()) for event in parsed]

    def _decide(self, runtime: SceneRuntime, event: dict[str, Any], started: float) -> Decision:
        event_id = event["event_id"]
        previous = runtime.seen.get(event_id)
        if previous is not None and previous.timestamp > (
                runtime.features.global_max - runtime.idempotency_horizon_ms):
            return previous
        self._lsn = lsn = self._lsn + 1
        t = event["timestamp"]
        features, late = runtime.features.compute(event, lsn)
        lists = self.lists
        list_hits = tuple(name for name, field in runtime.list_checks
                          if lists.contains(name, event.get(field), t)) \
            if runtime.list_checks else ()
        ruleset = runtime.ruleset
        verdict = ruleset.evaluate(event, features, lists)
        decision = Decision(  # positional: this is the per-event path
            event_id, runtime.name, verdict.decision, verdict.score, verdict.hits,
            verdict.shadow_hits, features, list_hits, ruleset.version, late, False,
            (time.perf_counter() - started) * 1000.0, lsn, t, verdict.errors)
        runtime.remember(decision)
        return decision

    # -- state -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Entities, retained entries and remembered event ids per scene."""
        return {name: {**rt.features.stats(), "remembered_ids": len(rt.seen)}
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
                    "seen": [rt.seen[i] for i in rt.seen_order if i in rt.seen],
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
            runtime.seen.clear()
            runtime.seen_order.clear()
            for decision in data["seen"]:
                runtime.seen[decision.event_id] = decision
                runtime.seen_order.append(decision.event_id)
        return self
