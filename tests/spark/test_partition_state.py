"""The stream job's per-key state (riskengine/spark/partition_state.py) on plain-dict stand-ins
for Spark's ValueState and MapState: a stream decided in batches, each batch seeing only
the keys it touches, equals the in-process engine event by event."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from riskengine.engine import Engine
from riskengine.spark.partition_state import IDS, PartitionState, Stores
from riskengine.state.memory import MemoryState
from riskengine.synth import generate_transfers
from tests.hostile import HOSTILE_SEEDS, hostile_config, hostile_stream
from tests.streams import HOUR, STREAM_FEATURES, random_stream, scene_config


class FakeValue:
    def __init__(self) -> None:
        self.value: tuple[Any, ...] | None = None

    def get(self) -> tuple[Any, ...] | None:
        return self.value

    def update(self, newValue: tuple[Any, ...]) -> None:
        self.value = tuple(newValue)


class FakeMap:
    def __init__(self) -> None:
        self.data: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.reads = 0

    def getValue(self, key: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self.reads += 1
        return self.data.get(tuple(key))

    def updateValue(self, key: tuple[Any, ...], value: tuple[Any, ...]) -> None:
        self.data[tuple(key)] = tuple(value)

    def removeKey(self, key: tuple[Any, ...]) -> None:
        del self.data[tuple(key)]

    def iterator(self) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
        return iter(list(self.data.items()))


def _view(d: Any) -> dict[str, Any]:
    body = d.to_dict()
    del body["latency_ms"]
    return body


Run = tuple[list[dict[str, Any]], Stores, PartitionState, Engine]


def _in_batches(config: Any, scene: str, events: list[dict[str, Any]], size: int) -> Run:
    """Decide `events` in batches of `size`, the state only in the stores between them."""
    engine = Engine.from_config(config)
    memory = engine.state
    assert isinstance(memory, MemoryState)
    state = PartitionState(memory, memory.part(scene, None))
    stores = Stores(FakeValue(), FakeMap(), FakeMap())
    parse = engine.scene(scene).parse
    out: list[dict[str, Any]] = []
    for start in range(0, len(events), size):
        batch = [parse(e) for e in events[start:start + size]]
        loaded = state.load(stores, state.keys_of(batch))
        out += [_view(d) for d in engine.decide_parsed(scene, batch)]
        state.save(stores, loaded, engine.scene(scene).idempotency_max)
    return out, stores, state, engine


def _expected(config: Any, scene: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = Engine.from_config(config)
    return [_view(engine.evaluate(scene, e)) for e in events]


@pytest.mark.parametrize("seed", HOSTILE_SEEDS)
@pytest.mark.parametrize("size", [1, 7, 100])
def test_hostile_streams_in_batches_equal_the_engine(seed: int, size: int) -> None:
    events, stats = hostile_stream(seed, 600)
    assert stats.duplicates and stats.behind_clock and stats.watermark_ties
    config = hostile_config()
    got, *_ = _in_batches(config, "s", events, size)
    assert got == _expected(config, "s", events)


def _held(stores: Stores) -> tuple[dict[Any, Any], dict[Any, Any]]:
    keys, ids = stores.keys, stores.ids
    assert isinstance(keys, FakeMap) and isinstance(ids, FakeMap)
    return keys.data, ids.data


def test_random_stream_with_idle_gaps_equals_the_engine_and_forgets_idle_keys() -> None:
    config = scene_config(STREAM_FEATURES, "5m")
    events = random_stream(7, 1500)
    got, stores, state, engine = _in_batches(config, "s", events, 50)
    assert got == _expected(config, "s", events)
    keys, ids = _held(stores)
    assert len(keys) > 20 and len(ids) > 20
    # after two quiet days, one event: every key and id the sweeps may drop is gone
    last = max(e["timestamp"] for e in events)
    after = {"event_id": "after-two-days", "timestamp": last + 50 * HOUR, "acct": "Z"}
    batch = [engine.scene("s").parse(after)]
    loaded = state.load(stores, state.keys_of(batch))
    engine.decide_parsed("s", batch)
    state.save(stores, loaded, 1_000_000)
    assert {space for space, _ in keys} <= {"f:acct"} and len(keys) <= 1
    assert list(ids) == [(IDS, "after-two-days")]
    clock = stores.clock.get()
    assert clock is not None and clock[4] == 1


def test_a_batch_reads_only_the_keys_it_touches() -> None:
    events = [{k: v for k, v in e.items() if k != "label"} for e in generate_transfers(400, 5)]
    _, stores, state, engine = _in_batches(None, "transfer", events, 200)
    keys, _ = _held(stores)
    assert isinstance(stores.keys, FakeMap) and isinstance(stores.ids, FakeMap)
    stores.keys.reads = stores.ids.reads = 0
    batch = [engine.scene("transfer").parse(events[-1] | {"event_id": "one-more"})]
    state.load(stores, state.keys_of(batch))
    assert stores.ids.reads == 1 and 1 <= stores.keys.reads <= 5 < len(keys)


def test_the_remembered_ids_are_capped_oldest_first() -> None:
    config = scene_config(["count(acct.history,1h)"], "5m")
    config["scenes"]["s"]["idempotency_max"] = 5
    t = 1_700_000_000_000
    events = [{"event_id": f"e{i}", "timestamp": t + i, "acct": "A"} for i in range(10)]
    events += [{"event_id": "e9", "timestamp": t + 9, "acct": "A"},   # held: a duplicate
               {"event_id": "e2", "timestamp": t + 2, "acct": "A"}]   # forgotten: decided
    got, stores, _, _ = _in_batches(config, "s", events, 1)
    assert [d["duplicate"] for d in got[-2:]] == [True, False]
    assert got == _expected(config, "s", events)
    _, ids = _held(stores)
    assert sorted(pickle.loads(raw)[1] for _, raw in ids.values()) == [7, 8, 9, 10, 11]
    clock = stores.clock.get()
    assert clock is not None and clock[4] == 5
