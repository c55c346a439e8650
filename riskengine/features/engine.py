"""Per-scene feature computation: the fork by key, lateness, storage, and the join.

`SceneFeatures.compute(event, lsn)` returns `(features, late, stored)`; the semantics are
docs/semantics.md, checked event by event against tests/oracle.py.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from riskengine.features.dsl import FeatureSpec
from riskengine.features.fastpath import build_fast_path
from riskengine.features.plan import KeyPlan, Predicate, build_key_plans
from riskengine.state.memory import EntityState, KeyTable

_NEVER = -1 << 62
_EMPTY: dict[str, Any] = {}
_EVICT_EVERY = 16


class SceneFeatures:
    """Prepared features of one scene and their in-memory state."""

    def __init__(self, specs: tuple[FeatureSpec, ...], lateness_ms: int, max_entities: int,
                 compile_where: Callable[[FeatureSpec], Predicate], lists: Any) -> None:
        self.specs = specs
        self.lateness_ms = lateness_ms
        self.lists = lists
        self.plans: tuple[KeyPlan, ...] = build_key_plans(specs, compile_where)
        self.tables = tuple(KeyTable(p, lateness_ms, max_entities) for p in self.plans)
        self.template: dict[str, Any] = dict.fromkeys(spec.name for spec in specs)
        self.max_window_ms = max((s.window_ms for s in specs), default=0)
        self.global_max = _NEVER
        self._layout = tuple(
            (table, plan.by[0] if len(plan.by) == 1 else None, plan.by,
             plan.max_window_ms + lateness_ms,
             tuple((i, b, b.predicate, b.kind == "history") for i, b in enumerate(plan.buffers)))
            for table, plan in zip(self.tables, self.plans, strict=True)
        )
        self._countdown = _EVICT_EVERY
        self.fast = build_fast_path(self)

    def key_of(self, plan: KeyPlan, event: dict[str, Any]) -> Hashable | None:
        if len(plan.by) == 1:
            return event.get(plan.by[0])
        values = tuple(event.get(f) for f in plan.by)
        return None if None in values else values

    def compute(self, event: dict[str, Any], lsn: int) -> tuple[dict[str, Any], bool]:
        """Feature values for `event` and whether it is late; stores it unless late."""
        out = self.fast(event, lsn)
        if out is None:
            out, late = self.compute_general(event, lsn)
        else:
            late = False
        self._countdown -= 1
        if not self._countdown:
            self._countdown = _EVICT_EVERY
            for table in self.tables:
                if table.entities:
                    table.evict_idle(self.global_max, _EVICT_EVERY * 2)
        return out, late

    def compute_general(self, event: dict[str, Any], lsn: int) -> tuple[dict[str, Any], bool]:
        """The general path: any order, late events, every kind (see fastpath.py)."""
        out = self.template.copy()
        t = event["timestamp"]
        lateness = self.lateness_ms
        global_max = self.global_max
        touched: list[tuple[Any, Hashable, EntityState | None, Any]] = []
        late = False
        for layout in self._layout:
            table, single, by, idle_ms, buffers = layout
            if single is not None:
                key = event.get(single)
                if key is None:
                    continue
            else:
                values = tuple(event.get(f) for f in by)
                if None in values:
                    continue
                key = values
            entities = table.entities
            state = entities.get(key)
            if state is not None:
                if state.maxts <= global_max - idle_ms:
                    del entities[key]
                    state = None
                elif t < state.maxts - lateness:
                    late = True
            touched.append((layout, key, state, entities))
        for layout, key, state, entities in touched:
            table, _, _, idle_ms, buffers = layout
            if late:
                self._score_late(event, lsn, state, table.plan, buffers, out)
                continue
            if state is None:
                state = EntityState(table.plan)
                fresh = True
            else:
                fresh = False
            stored = False
            for i, plan, predicate, _ in buffers:
                passes = predicate is None or bool(predicate(event, _EMPTY, self.lists))
                buffer = state.buffers[i]
                entry = plan.make_entry(event, lsn) if passes else (t, lsn)
                if t >= buffer.anchor:
                    buffer.step(entry, passes, out)
                else:
                    buffer.compute(entry, passes, None, out)
                    if passes:
                        buffer.insert(entry)
                stored = stored or passes
            if stored:
                if t > state.maxts:
                    state.maxts = t
                horizon = state.maxts - idle_ms
                for buffer in state.buffers:
                    buffer.trim(horizon, state.maxts, lateness)
                if fresh:
                    entities[key] = state
                else:
                    entities.move_to_end(key)
            elif not fresh:
                entities.move_to_end(key)
        if not late and t > self.global_max:
            self.global_max = t
        return out, late

    def _score_late(self, event: dict[str, Any], lsn: int, state: EntityState | None,
                    plan: KeyPlan, buffers: tuple[Any, ...], out: dict[str, Any]) -> None:
        t = event["timestamp"]
        if state is None:
            state = EntityState(plan)
            floor = None
        else:
            floor = state.maxts - self.lateness_ms
        for i, bplan, predicate, _ in buffers:
            passes = predicate is None or bool(predicate(event, _EMPTY, self.lists))
            entry = bplan.make_entry(event, lsn) if passes else (t, lsn)
            state.buffers[i].compute(entry, passes, floor, out)

    def stats(self) -> dict[str, int]:
        return {
            "entities": sum(len(t.entities) for t in self.tables),
            "retained_entries": sum(t.retained_entries() for t in self.tables),
            "evicted_for_size": sum(t.evicted_for_size for t in self.tables),
        }

    def dump(self) -> dict[str, Any]:
        return {
            "global_max": self.global_max,
            "tables": {"+".join(t.plan.by): t.dump() for t in self.tables},
        }

    def load(self, data: dict[str, Any]) -> None:
        self.global_max = data["global_max"]
        for table in self.tables:
            rows = data["tables"].get("+".join(table.plan.by))
            if rows is not None:
                table.load(rows)
