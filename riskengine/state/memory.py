"""In-memory feature state: one `EntityState` per key value, idle keys evicted.

Entities sit in an insertion-ordered table that is re-ordered on every touch, so the
least recently touched entity is always first; eviction pops from the front while that
entity is idle (`maxts ≤ G − L − Wmax`, see docs/semantics.md) or the table is over its
`max_entities` bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any

from riskengine.features.history import HistoryBuffer
from riskengine.features.plan import BufferPlan, KeyPlan
from riskengine.features.tiles import TiledBuffer

Buffer = HistoryBuffer | TiledBuffer


def new_buffer(plan: BufferPlan) -> Buffer:
    return HistoryBuffer(plan) if plan.kind == "history" else TiledBuffer(plan)


class EntityState:
    """State of one key value: the newest stored time and one buffer per `BufferPlan`."""

    __slots__ = ("buffers", "maxts")

    def __init__(self, plan: KeyPlan) -> None:
        self.maxts = -1 << 62
        self.buffers: list[Buffer] = [new_buffer(b) for b in plan.buffers]


class KeyTable:
    """All entity states of one `KeyPlan` in a scene."""

    __slots__ = ("entities", "evicted_for_size", "idle_ms", "max_entities", "plan")

    def __init__(self, plan: KeyPlan, lateness_ms: int, max_entities: int) -> None:
        self.plan = plan
        self.idle_ms = lateness_ms + plan.max_window_ms
        self.max_entities = max_entities
        self.entities: OrderedDict[Hashable, EntityState] = OrderedDict()
        self.evicted_for_size = 0

    def evict_idle(self, global_max: int, budget: int = 2) -> None:
        """Forget up to `budget` least-recently touched entities that are idle or excess."""
        entities = self.entities
        horizon = global_max - self.idle_ms
        while budget and entities:
            key = next(iter(entities))
            if entities[key].maxts <= horizon:
                del entities[key]
            elif len(entities) > self.max_entities:
                del entities[key]
                self.evicted_for_size += 1
            else:
                return
            budget -= 1

    def retained_entries(self) -> int:
        return sum(b.retained for state in self.entities.values() for b in state.buffers)

    def dump(self) -> list[tuple[Any, int, dict[str, Any]]]:
        rows = []
        for key, state in self.entities.items():
            buffers: dict[str, Any] = {}
            for buffer in state.buffers:
                if isinstance(buffer, HistoryBuffer):
                    buffers[buffer.plan.signature] = ("history", buffer.dump(), buffer.anchor)
                else:
                    buffers[buffer.plan.signature] = ("window", buffer.dump(), buffer.anchor)
            rows.append((key, state.maxts, buffers))
        return rows

    def load(self, rows: list[tuple[Any, int, dict[str, Any]]]) -> None:
        self.entities.clear()
        for key, maxts, buffers in rows:
            state = EntityState(self.plan)
            state.maxts = maxts
            for i, plan in enumerate(self.plan.buffers):
                saved = buffers.get(plan.signature)
                if saved is None or saved[0] != plan.kind:
                    continue
                if plan.kind == "history":
                    state.buffers[i] = HistoryBuffer.load(plan, saved[1], saved[2])
                else:
                    state.buffers[i] = TiledBuffer.load(plan, saved[1])
            self.entities[key] = state

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.entities)
