"""In-memory feature state: one entity per key value, idle keys evicted in time buckets.

An entity is one flat list laid out by its `KeyPlan` (see `features.plan`); a touch costs
a dict lookup and nothing else. For eviction each new entity is filed under the bucket of
the scene clock G (buckets of `idle_ms / 16`). Once G is `idle_ms` past the end of a
bucket, every entity filed there is either forgotten, if it is idle (`maxts ≤ G − L −
Rmax(B)`, see docs/semantics.md), or filed again under the bucket of its `maxts`: O(1) per
key per `idle_ms` of its life, nothing per event. An entity forgotten on a touch (see
`features.fastpath`) has its key slot cleared and is dropped when its bucket comes up.
Over `max_entities`, keys go oldest bucket first (by when they were last stored to, to
a bucket's width). Evicting a key still inside its horizon could change a value, so
every event of a key started afresh while its windows could reach such a key
(`partial_until`, kept in the new entity's PARTIAL slot) is marked degraded
(docs/semantics.md, Memory).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

from riskengine.features.history import NEVER, HistoryOps
from riskengine.features.plan import KEY, MAXTS, PARTIAL, KeyPlan
from riskengine.features.tileops import TiledOps

BufferOps = HistoryOps | TiledOps
Entity = list[Any]
BUCKETS_PER_HORIZON = 16


def buffer_ops(plan: KeyPlan) -> tuple[BufferOps, ...]:
    last = len(plan.buffers) - 1
    return tuple(
        HistoryOps(b, at, plan.width if j == last else None) if b.kind == "history"
        else TiledOps(b, at)
        for j, (b, at) in enumerate(zip(plan.buffers, plan.offsets, strict=True)))


def entity_source(plan: KeyPlan, env: dict[str, Any], prefix: str) -> str:
    """Source of a list display that builds a fresh entity of `plan` (objects into `env`)."""
    env["NEVER"] = NEVER
    parts = [ops.init_source(env, f"{prefix}{j}_") for j, ops in enumerate(buffer_ops(plan))]
    return "[NEVER, None, NEVER, " + ", ".join(parts) + "]"


class KeyTable:
    """All entities of one `KeyPlan` in a scene, and their eviction buckets."""

    __slots__ = ("bucket_ms", "buckets", "entities", "evicted_for_size", "idle_ms", "low",
                 "max_entities", "new_entity", "ops", "partial_until", "plan", "sweep_at")

    def __init__(self, plan: KeyPlan, lateness_ms: int, max_entities: int) -> None:
        self.plan = plan
        self.idle_ms = lateness_ms + plan.reach_ms
        self.max_entities = max_entities
        self.entities: dict[Hashable, Entity] = {}
        self.evicted_for_size = 0
        self.partial_until = NEVER
        """The largest `maxts + L + Rmax(B)` of a key evicted for size: an event that starts
        a key afresh with `t + L` (a late one: with G) below it may be missing that key's
        events, so it is marked."""
        self.ops = buffer_ops(plan)
        env: dict[str, Any] = {}
        source = entity_source(plan, env, "b")
        self.new_entity: Callable[[], Entity] = eval(f"lambda: {source}", env)
        self.bucket_ms = max(1, self.idle_ms // BUCKETS_PER_HORIZON)
        self.buckets: dict[int, list[Entity]] = {}
        self.low = NEVER  # the lowest bucket not swept yet
        self.sweep_at = NEVER  # the clock G at which bucket `low` is due

    def file(self, entity: Entity, clock: int) -> None:
        """File an entity (new, or still alive) under the bucket of `clock`."""
        bucket = clock // self.bucket_ms
        filed = self.buckets.get(bucket)
        if filed is None:
            self.buckets[bucket] = [entity]
        else:
            filed.append(entity)

    def sweep(self, global_max: int) -> None:
        """Forget the idle keys of every bucket that `global_max` has made due."""
        size = self.bucket_ms
        limit = (global_max - self.idle_ms + 1) // size - 1
        if limit >= self.low:
            buckets = self.buckets
            if limit - self.low > len(buckets):
                due = sorted(b for b in buckets if b <= limit)
            else:
                due = [b for b in range(self.low, limit + 1) if b in buckets]
            self.low = limit + 1
            entities = self.entities
            horizon = global_max - self.idle_ms
            for bucket in due:
                for entity in buckets.pop(bucket):
                    maxts = entity[MAXTS]
                    if maxts <= horizon:
                        key = entity[KEY]
                        if key is not None:  # else forgotten on a touch already
                            del entities[key]
                    else:  # still alive: file it again under the bucket of its maxts
                        again = maxts // size
                        filed = buckets.get(again)
                        if filed is None:
                            buckets[again] = [entity]
                        else:
                            filed.append(entity)
        self.sweep_at = (self.low + 1) * size - 1 + self.idle_ms

    def shrink(self, global_max: int) -> None:
        """Evict keys, oldest `maxts` bucket first, until the table is under
        `max_entities` by a small margin (1/256 of it), so a full table pays this now
        and then rather than on every new key."""
        entities = self.entities
        buckets = self.buckets
        size = self.bucket_ms
        horizon = global_max - self.idle_ms
        target = self.max_entities - self.max_entities // 256
        while len(entities) > target and buckets:
            bucket = min(buckets)
            filed = buckets.pop(bucket)
            for i, entity in enumerate(filed):
                if len(entities) <= target:
                    buckets[bucket] = filed[i:]
                    break
                key = entity[KEY]
                if key is None:
                    continue  # forgotten on a touch
                if entity[MAXTS] // size > bucket:
                    self.file(entity, entity[MAXTS])  # stored to since it was filed
                    continue
                del entities[key]
                entity[KEY] = None
                if entity[MAXTS] > horizon:
                    self.evicted_for_size += 1
                    self.partial_until = max(self.partial_until, entity[MAXTS] + self.idle_ms)

    def retained_entries(self) -> int:
        ops = self.ops
        return sum(o.retained(e) for e in self.entities.values() for o in ops)

    def dump(self) -> list[tuple[Any, int, int, dict[str, Any]]]:
        ops = self.ops
        return [(key, e[MAXTS], e[PARTIAL], {o.plan.signature: o.dump(e) for o in ops})
                for key, e in self.entities.items()]

    def load(self, rows: list[tuple[Any, int, int, dict[str, Any]]]) -> None:
        """Rebuild from `dump` rows; buffers whose definition changed start empty."""
        self.entities.clear()
        self.buckets.clear()
        self.low = self.sweep_at = NEVER
        for key, maxts, partial, buffers in rows:
            entity = self.new_entity()
            entity[MAXTS] = maxts
            entity[KEY] = key
            entity[PARTIAL] = partial
            for ops in self.ops:
                saved = buffers.get(ops.plan.signature)
                if saved is not None and saved[0] == ops.plan.kind:
                    ops.load(entity, saved)
            self.entities[key] = entity
            self.file(entity, maxts)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.entities)
