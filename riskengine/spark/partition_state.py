"""One source partition's engine state in Spark's state store, one entry per key.

The contract (docs/semantics.md) makes each key's state depend only on its own events and
the scene clock G, so a micro-batch needs only the keys its events touch. Per source
partition (the grouping key of the stateful operator) the store holds:

- one *clock* value: G, the partition's LSN counter, each key table's `partial_until`,
  the G of the last sweeps, and how many event ids are remembered;
- in the *keys* map one entry per key, ``(space, key) → (newest, row)``: a feature key
  table's entity (space ``f:<by fields>``) or a sequence pattern's key (``p:<pattern>``);
  in the *ids* map one per remembered event id (space ``i``). `row` is the entry's row as
  the in-memory state dumps it (pickled), `newest` its newest event time (for a
  remembered id, the event's time).

Per batch `PartitionState.load` reads the clock and the entries of the batch's keys into
a `MemoryPart` (riskengine/state/memory.py), the engine decides the batch there in offset
order, and `save` writes back the entries that changed, removes the ones the engine
dropped (a key gone idle on a touch), and stores the clock. The cost of a batch grows
with the keys it touches, not with the state.

Idle keys that nothing touches again are removed by a sweep over the partition's keys
once G has moved on by their smallest horizon since the last one (a key table's entity
when ``newest ≤ G − L − Rmax(B)``, a pattern key past its keep span: exactly what the
engine would treat as forgotten on a touch), and remembered ids by a sweep over the ids
once G has moved on by the idempotency horizon (those past it). The cap on remembered
ids (`idempotency_max`) is applied after each batch, oldest LSN first.
`max_entities` does not bound the store (it is on disk, not in memory): no key is evicted
for size, so no decision is marked `degraded` for it.

Key values are written with `key_text` (riskengine/state/redis/codec.py): values equal in
Python (``1``, ``1.0``) are one key, as in memory.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from riskengine.features.history import NEVER
from riskengine.state.memory import MemoryPart, MemoryState
from riskengine.state.redis.codec import key_text

__all__ = ["CLOCK_SCHEMA", "ENTRY_SCHEMA", "KEY_SCHEMA", "ClockStore", "EntryStore",
           "PartitionState", "Stores"]

CLOCK_SCHEMA = ("clock BIGINT, lsn BIGINT, keys_swept_at BIGINT, ids_swept_at BIGINT, "
                "held_ids BIGINT, partial_until STRING")
KEY_SCHEMA = "space STRING, key STRING"
ENTRY_SCHEMA = "newest BIGINT, row BINARY"

IDS = "i"
"""The space of remembered event ids."""

Key = tuple[str, str]
Entry = tuple[int, bytes]


class ClockStore(Protocol):
    """What the stateful operator's ValueState offers (one row per source partition)."""

    def get(self) -> tuple[Any, ...] | None: ...

    def update(self, newValue: tuple[Any, ...]) -> None: ...


class EntryStore(Protocol):
    """What the stateful operator's MapState offers (entries of one source partition)."""

    def getValue(self, key: tuple[Any, ...]) -> tuple[Any, ...] | None: ...

    def updateValue(self, key: tuple[Any, ...], value: tuple[Any, ...]) -> None: ...

    def removeKey(self, key: tuple[Any, ...]) -> None: ...

    def iterator(self) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]: ...


def _text(value: Any) -> str:
    return key_text(value if isinstance(value, tuple) else (value,))


@dataclass(frozen=True)
class Stores:
    """One source partition's state in the store: its clock, its keys, its ids."""

    clock: ClockStore
    keys: EntryStore
    ids: EntryStore

    def of(self, key: Key) -> EntryStore:
        return self.ids if key[0] == IDS else self.keys


@dataclass
class _Clock:
    clock: int = NEVER
    lsn: int = 0
    keys_swept_at: int = NEVER
    ids_swept_at: int = NEVER
    held_ids: int = 0
    partial_until: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, store: ClockStore) -> _Clock:
        row = store.get()
        if row is None:
            return cls()
        clock, lsn, keys_swept_at, ids_swept_at, held_ids, partial = row
        return cls(int(clock), int(lsn), int(keys_swept_at), int(ids_swept_at),
                   int(held_ids), orjson.loads(partial))

    def write(self, store: ClockStore) -> None:
        store.update((self.clock, self.lsn, self.keys_swept_at, self.ids_swept_at,
                      self.held_ids, orjson.dumps(self.partial_until).decode()))


@dataclass
class Loaded:
    """What `load` read: the clock and each entry's stored bytes (to write back only what
    changed, and remove what the engine dropped)."""

    clock: _Clock
    rows: dict[Key, bytes]


class PartitionState:
    """Moves one source partition's state between the store and the `MemoryPart` of one
    scene (see the module docstring); `memory` is the part's backend (its LSN counter)."""

    def __init__(self, memory: MemoryState, part: MemoryPart) -> None:
        self.memory = memory
        self.part = part
        features = part.features
        self._tables = tuple(("f:" + "+".join(t.plan.by), t.plan.by, t.idle_ms)
                             for t in features.tables)
        self._patterns = tuple(("p:" + p.spec.name, p) for p in part.patterns.patterns)
        self._horizons = {space: idle for space, _, idle in self._tables}
        self._horizons.update({space: p.keep_ms for space, p in self._patterns})
        self.keys_sweep_every = max(1, min(self._horizons.values(), default=1))
        self._horizons[IDS] = part.ids.horizon_ms
        self.ids_sweep_every = max(1, part.ids.horizon_ms)

    # reading ----------------------------------------------------------------------------

    def keys_of(self, events: Iterable[dict[str, Any]]) -> set[Key]:
        """The entries the events can read or change (their keys and event ids)."""
        wanted: set[Key] = set()
        for event in events:
            for space, by, _ in self._tables:
                if len(by) == 1:
                    value = event.get(by[0])
                    if value is not None:
                        wanted.add((space, _text(value)))
                else:
                    values = tuple(event.get(f) for f in by)
                    if None not in values:
                        wanted.add((space, _text(values)))
            for space, pattern in self._patterns:
                value = pattern.key_of(event)
                if value is not None:
                    wanted.add((space, _text(value)))
            event_id = event.get("event_id")
            if isinstance(event_id, str):
                wanted.add((IDS, event_id))
        return wanted

    def load(self, stores: Stores, keys: Iterable[Key]) -> Loaded:
        """Put the partition's clock and the entries of `keys` into the part (everything
        else in it is cleared)."""
        clock = _Clock.read(stores.clock)
        rows: dict[Key, bytes] = {}
        for key in keys:
            found = stores.of(key).getValue(key)
            if found is not None:
                rows[key] = bytes(found[1])
        tables: dict[str, list[Any]] = {space[2:]: [] for space, _, _ in self._tables}
        patterns: dict[str, list[Any]] = {space[2:]: [] for space, _ in self._patterns}
        seen: list[tuple[str, Any]] = []
        for (space, text), raw in rows.items():
            row = pickle.loads(raw)  # the job's own state store
            if space == IDS:
                seen.append((text, row))
            elif space.startswith("f:"):
                tables[space[2:]].append(row)
            else:
                patterns[space[2:]].append(row)
        seen.sort(key=lambda item: item[1][1])  # arrival (LSN) order
        self.part.load({
            "features": {"global_max": clock.clock, "tables": tables,
                         "partial_until": clock.partial_until},
            "seen": seen, "patterns": patterns})
        self.memory.lsn = clock.lsn
        return Loaded(clock, rows)

    # writing ----------------------------------------------------------------------------

    def _dumped(self) -> Iterator[tuple[Key, int, Any]]:
        """Every entry the part holds now: (key, newest, row)."""
        data = self.part.dump()
        tables = data["features"]["tables"]
        for space, _, _ in self._tables:
            for row in tables[space[2:]]:
                yield (space, _text(row[0])), row[1], row
        for space, _ in self._patterns:
            for row in data["patterns"][space[2:]]:
                yield (space, _text(row[0])), row[2], row
        for event_id, record in data["seen"]:
            yield (IDS, event_id), record[0], record

    def save(self, stores: Stores, loaded: Loaded, idempotency_max: int) -> None:
        """Write back what the batch changed, then the clock; sweep idle entries when G
        has moved on far enough, and cap the remembered ids."""
        clock = loaded.clock
        before = loaded.rows
        kept: set[Key] = set()
        for key, newest, row in self._dumped():
            kept.add(key)
            raw = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
            if before.get(key) != raw:
                stores.of(key).updateValue(key, (newest, raw))
                if key not in before and key[0] == IDS:
                    clock.held_ids += 1
        for key in before.keys() - kept:
            stores.of(key).removeKey(key)
            if key[0] == IDS:
                clock.held_ids -= 1
        features = self.part.features
        clock.clock = features.global_max
        clock.lsn = self.memory.lsn
        clock.partial_until = {space[2:]: table.partial_until for (space, _, _), table
                               in zip(self._tables, features.tables, strict=True)}
        g = clock.clock
        if clock.keys_swept_at == NEVER:
            clock.keys_swept_at = clock.ids_swept_at = g
        if g - clock.keys_swept_at >= self.keys_sweep_every:
            self._sweep(stores.keys, g)
            clock.keys_swept_at = g
        if g - clock.ids_swept_at >= self.ids_sweep_every:
            clock.held_ids -= self._sweep(stores.ids, g)
            clock.ids_swept_at = g
        if clock.held_ids > idempotency_max:
            self._cap_ids(stores.ids, clock, idempotency_max)
        clock.write(stores.clock)

    def _sweep(self, entries: EntryStore, g: int) -> int:
        """Remove the entries no event can need any more at clock `g` (see the module
        docstring); returns how many."""
        horizons = self._horizons
        gone = [key for key, (newest, _) in entries.iterator()
                if newest <= g - horizons.get(key[0], 0)]
        for key in gone:
            entries.removeKey(key)
        return len(gone)

    def _cap_ids(self, ids: EntryStore, clock: _Clock, idempotency_max: int) -> None:
        """Forget the remembered ids of the lowest LSNs past `idempotency_max`."""
        held = sorted((pickle.loads(raw)[1], tuple(key)) for key, (_, raw) in ids.iterator())
        for _, key in held[:len(held) - idempotency_max]:
            ids.removeKey(key)
        clock.held_ids = min(len(held), idempotency_max)
