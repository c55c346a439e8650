"""Per-scene feature computation: the fork by key, lateness, storage, and the join.

`SceneFeatures.fast(event, lsn)` (the generated in-order path) returns the features or
None; `compute_general(event, lsn)` returns `(features, late, degraded)` for any event.
The semantics are docs/semantics.md, checked event by event against tests/oracle.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riskengine.features.dsl import FeatureSpec
from riskengine.features.fastpath import build_fast_path
from riskengine.features.history import NEVER
from riskengine.features.keytable import BufferOps, Entity, KeyTable
from riskengine.features.plan import KEY, MAXTS, PARTIAL, KeyPlan, Predicate, build_key_plans
from riskengine.lists import Lists

_EMPTY: dict[str, Any] = {}
_PROBE_LSN = 1 << 62  # after every stored event


class SceneFeatures:
    """Prepared features of one scene and their in-memory state."""

    def __init__(self, specs: tuple[FeatureSpec, ...], lateness_ms: int, max_entities: int,
                 compile_where: Callable[[FeatureSpec], Predicate], lists: Lists) -> None:
        self.lateness_ms = lateness_ms
        self.lists = lists
        self.plans: tuple[KeyPlan, ...] = build_key_plans(specs, compile_where)
        self.tables = tuple(KeyTable(p, lateness_ms, max_entities) for p in self.plans)
        self.template: dict[str, Any] = dict.fromkeys(spec.name for spec in specs)
        self.global_max = NEVER
        """G, the scene clock (docs/semantics.md)."""
        self.sweep_at = NEVER  # the clock G at which some table has a bucket of keys due
        self._layout = tuple(
            (table, plan.by[0] if len(plan.by) == 1 else None, plan.by,
             table.idle_ms,
             tuple((ops, ops.plan.predicate) for ops in table.ops))
            for table, plan in zip(self.tables, self.plans, strict=True)
        )
        self.fast = build_fast_path(self)

    def sweep(self) -> None:
        """Evict the idle keys of every bucket the clock has made due (see KeyTable)."""
        global_max = self.global_max
        for table in self.tables:
            if global_max >= table.sweep_at:
                table.sweep(global_max)
        self.sweep_at = min((t.sweep_at for t in self.tables), default=-NEVER)

    def compute_general(self, event: dict[str, Any], lsn: int
                        ) -> tuple[dict[str, Any], bool, bool]:
        """The general path: any order, late events, every kind (see fastpath.py).

        Late iff `t < G − L` (G: the scene clock before the event). A late event is read
        above the floor `G − L − W` and stored nowhere; any other event is stored on each
        of its keys, in (time, LSN) order."""
        out = self.template.copy()
        t = event["timestamp"]
        lateness = self.lateness_ms
        global_max = self.global_max
        late = global_max != NEVER and t < global_max - lateness
        degraded = False
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
            if state is not None and state[MAXTS] <= global_max - idle_ms:
                del entities[key]  # idle: no event from now on can read it
                state[KEY] = None  # no longer its key's: its bucket will drop it
                state = None
            # a key evicted for size that this event could read: marked (docs/semantics.md)
            reach = global_max if late else t + lateness
            fresh = state is None
            if reach < (table.partial_until if state is None else state[PARTIAL]):
                degraded = True  # (a key kept: started afresh while one could be read)
            if late:
                self._score_late(event, lsn, state, table, buffers, out)
                continue
            if state is None:
                state = table.new_entity()
                state[KEY] = key
                if reach < table.partial_until:
                    state[PARTIAL] = table.partial_until
            stored = self._store(state, buffers, idle_ms, event, lsn, out)
            if stored and fresh:
                clock = t if t > global_max else global_max
                entities[key] = state
                table.file(state, clock)
                if len(entities) > table.max_entities:
                    table.shrink(clock)
        if not late and t > global_max:
            self.global_max = t
            if t >= self.sweep_at:
                self.sweep()
        return out, late, degraded

    def _store(self, state: Entity, buffers: tuple[tuple[BufferOps, Any], ...],
               idle_ms: int, event: dict[str, Any], lsn: int, out: dict[str, Any]) -> bool:
        """Store an event that is not late on one key's `state` (any order), read its
        values into `out`, and trim; whether any buffer stored it."""
        t = event["timestamp"]
        stored = False
        for ops, predicate in buffers:
            passes = predicate is None or bool(predicate(event, _EMPTY, self.lists))
            entry = ops.plan.make_entry(event, lsn) if passes else (t, lsn)
            if t >= ops.anchor(state):
                ops.step(state, entry, passes, out)
            else:
                ops.compute(state, entry, passes, None, out)
                if passes:
                    ops.insert(state, entry)
            stored = stored or passes
        if stored:
            if t > state[MAXTS]:
                state[MAXTS] = t
            maxts = state[MAXTS]
            for ops, _ in buffers:
                ops.trim(state, maxts - idle_ms, maxts, self.lateness_ms)
        return stored

    def store_out_of_order(self, k: int, state: Entity, event: dict[str, Any], lsn: int
                           ) -> tuple[Any, ...]:
        """For the fast path: an event that is not late but earlier than a buffer of the
        held key of table `k` (whose keys are not in a partial zone), stored there as the
        general path stores it; that table's values, in its plan's output order."""
        out: dict[str, Any] = {}
        _, _, _, idle_ms, buffers = self._layout[k]
        self._store(state, buffers, idle_ms, event, lsn, out)
        return tuple(out[name] for name in self.plans[k].output_names)

    def compute_at(self, event: dict[str, Any], lsn: int, clock: int
                   ) -> tuple[dict[str, Any], bool, bool]:
        """`compute_general` for a forked runtime that computes a key group alone: the
        scene clock G before the event (NEVER before the first) comes from the runtime's
        one ordered pass over every event of the scene, not from the events this instance
        saw. Since whether an event is stored on a key depends on G alone
        (docs/semantics.md), the values equal the whole engine's."""
        self.global_max = clock
        values = self.fast(event, lsn)
        if values is not None:
            return values, False, False
        return self.compute_general(event, lsn)

    def _score_late(self, event: dict[str, Any], lsn: int, state: Entity | None,
                    table: KeyTable, buffers: tuple[tuple[BufferOps, Any], ...],
                    out: dict[str, Any]) -> None:
        """Values of a late event: stored entries above the floor `G − L − W`, plus it."""
        t = event["timestamp"]
        if state is None:
            state = table.new_entity()
        floor = self.global_max - self.lateness_ms
        for ops, predicate in buffers:
            passes = predicate is None or bool(predicate(event, _EMPTY, self.lists))
            entry = ops.plan.make_entry(event, lsn) if passes else (t, lsn)
            ops.compute(state, entry, passes, floor, out)

    def _held(self, field: str, value: Any) -> tuple[Any, Entity | None] | None:
        """(layout, live entity or None) of the features keyed by exactly `field`, for key
        `value` (a string of digits also finds an integer key: the path gives strings);
        None when no feature is keyed by `field` alone."""
        for layout in self._layout:
            table, _, by, idle_ms, _ = layout
            if by != (field,):
                continue
            state = table.entities.get(value)
            digits = value.removeprefix("-") if isinstance(value, str) else ""
            if state is None and digits.isascii() and digits.isdigit() and len(digits) < 19:
                state = table.entities.get(int(value))
            if state is not None and state[MAXTS] <= self.global_max - idle_ms:
                state = None
            return layout, state
        return None

    def holds(self, field: str, value: Any) -> bool:
        """Whether a live entity of key `value` is kept for the features keyed by `field`."""
        found = self._held(field, value)
        return found is not None and found[1] is not None

    def peek(self, field: str, value: Any) -> dict[str, Any] | None:
        """Current values of the features keyed by exactly `field`, for key `value`, at
        the scene clock G: what an event at G that no filter lets in would read (it is
        not counted and nothing is stored). None if no feature is keyed by `field` alone.
        """
        found = self._held(field, value)
        if found is None:
            return None
        (table, _, _, _, buffers), state = found
        if state is None:
            state = table.new_entity()
        t = self.global_max
        out: dict[str, Any] = {}
        for ops, _ in buffers:
            ops.compute(state, (t, _PROBE_LSN), False, None, out)
        return out

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
            "partial_until": {"+".join(t.plan.by): t.partial_until for t in self.tables},
        }

    def load(self, data: dict[str, Any]) -> None:
        self.global_max = data["global_max"]
        self.sweep_at = NEVER
        for table in self.tables:
            name = "+".join(table.plan.by)
            rows = data["tables"].get(name)
            if rows is not None:
                table.load(rows)
            table.partial_until = data["partial_until"].get(name, NEVER)
