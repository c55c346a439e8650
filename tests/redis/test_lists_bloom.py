"""The Bloom filter, and lists in Redis behind it: same answers as the in-memory store.

Filters are made small and loose here (few bits, high false-positive rates) so that
rebuilds and false positives happen often in a short run.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from riskengine.exceptions import ConfigError, ListError
from riskengine.lists import ListEntry, ListStore
from riskengine.state.redis.bloom import BloomFilter, optimal_size
from riskengine.state.redis.bus import RulesetBus
from riskengine.state.redis.connect import connect
from riskengine.state.redis.functions import Client
from riskengine.state.redis.lists import RedisListStore, value_key
from tests.waiting import eventually

# -- the filter


def _words(rng: random.Random, n: int, tag: str) -> list[str]:
    """`n` distinct random words starting with `tag`."""
    words: set[str] = set()
    while len(words) < n:
        words.add(tag + "".join(rng.choices(string.ascii_letters + "é中",
                                            k=rng.randint(6, 16))))
    return sorted(words)


def test_sizes_follow_the_formulas() -> None:
    for n, p in [(1, 0.5), (100, 0.01), (10_000, 0.001), (1_000_000, 0.0001)]:
        m, k = optimal_size(n, p)
        assert m == max(8, math.ceil(-n * math.log(p) / math.log(2) ** 2))
        assert k == max(1, round(m / n * math.log(2)))
    for bad in [(0, 0.01), (10, 0.0), (10, 1.0), (True, 0.1)]:
        with pytest.raises(ValueError):
            optimal_size(*bad)  # type: ignore[arg-type]


def test_no_false_negatives_and_the_measured_rate_is_near_the_target() -> None:
    rng = random.Random(7)
    n, p = 20_000, 0.01
    bloom = BloomFilter(n, p)
    inserted = set(_words(rng, n, "in:"))
    for word in inserted:
        bloom.add(word)
    assert all(word in bloom for word in inserted)
    assert not bloom.full
    assert bloom.count > 0.99 * n  # only an item already a false positive adds no bit
    probes = _words(rng, 50_000, "out:")
    rate = sum(w in bloom for w in probes) / len(probes)
    assert 0.6 * p < rate < 1.5 * p, rate
    assert bloom.expected_fp_rate() == pytest.approx(p, rel=0.3)


def test_count_and_full() -> None:
    bloom = BloomFilter(10, 0.01)
    assert bloom.add("a") and not bloom.add("a")
    for i in range(20):
        bloom.add(f"v{i}")
    assert bloom.count >= 19 and bloom.full
    assert "v3" in bloom and "a" in bloom
    bloom.add("\ud800")  # a lone surrogate (valid in JSON) hashes without error
    assert "\ud800" in bloom


# -- lists in Redis


NAMES = {"block": "blocked", "allow": ""}
POOL: list[Any] = [
    "acct-1", "acct-2", "123", 123, 123.0, 124, "124", -5, "-5", 1.5, float("nan"),
    float("inf"), True, False, None, "é中", "\ud800", "", "x" * 1001, [1], {"a": 1}, 0, "0",
    " acct-1", "ACCT-1",
]


@pytest.fixture
def store(client: Client) -> RedisListStore:
    return RedisListStore(client, NAMES, min_capacity=4, fp_rate=0.3)


def _memory() -> ListStore:
    memory = ListStore()
    for name, reason in NAMES.items():
        memory.create(name, reason)
    return memory


def _both(memory: ListStore, store: RedisListStore, method: str, *args: Any,
          **kwargs: Any) -> list[Any]:
    """What `method` gives on each store: its result, or "ListError"."""
    results = []
    for each in (memory, store):
        try:
            results.append(getattr(each, method)(*args, **kwargs))
        except ListError:
            results.append("ListError")
    return results


def test_same_answers_as_the_memory_store_over_random_operations(
        store: RedisListStore) -> None:
    rng = random.Random(11)
    memory = _memory()
    names = [*NAMES, "nope"]
    for step in range(1500):
        name = rng.choice(names)
        value = rng.choice(POOL)
        op = rng.random()
        if op < 0.35:
            expires = rng.choice([None, None, 1000, 2000, True, "3000"])
            reason = rng.choice(["", "fraud", 7])
            results = _both(memory, store, "add", name, value, expires_at_ms=expires,
                            reason=reason)
        elif op < 0.5:
            results = _both(memory, store, "remove", name, value)
        elif op < 0.8:
            at = rng.choice([None, 0, 999, 1000, 1999, 2000, 5000])
            results = _both(memory, store, "contains", name, value, at)
        else:
            at = rng.choice([None, 999, 1000, 2500])
            results = _both(memory, store, "lookup", name, value, at)
        assert results[0] == results[1], (step, name, value, results)
    for name in NAMES:
        assert sorted(map(repr, memory.entries(name))) == sorted(map(repr, store.entries(name)))
    stats = store.stats()
    assert stats["rebuilds"] > len(NAMES) and stats["hits"] and stats["false_positives"]
    assert memory.purge_expired(1500) == store.purge_expired(1500)
    for name in NAMES:
        assert sorted(map(repr, memory.entries(name))) == sorted(map(repr, store.entries(name)))


def test_value_key_matches_by_string_form() -> None:
    memory = _memory()
    memory.add("block", "123")
    for value in POOL:
        key = value_key(value)
        assert (key == "123") == memory.contains("block", value), value


def test_false_positives_are_confirmed_against_redis_and_answered_false(
        client: Client) -> None:
    store = RedisListStore(client, NAMES, min_capacity=64, fp_rate=0.4)
    for i in range(64):
        store.add("block", f"bad-{i}")
    probes = [f"good-{i}" for i in range(2000)]
    maybe = [p for p in probes if p in store.bloom("block")]
    assert maybe, "a loose filter gives false positives"
    before = store.stats()
    assert not any(store.contains("block", p) for p in probes)
    after = store.stats()
    assert after["false_positives"] - before["false_positives"] == len(maybe)
    assert after["confirmations"] - before["confirmations"] == len(maybe)
    assert after["filtered"] - before["filtered"] == len(probes) - len(maybe)
    assert all(store.contains("block", f"bad-{i}") for i in range(64))


def test_removed_values_stay_in_the_filter_until_a_rebuild(store: RedisListStore) -> None:
    store.add("block", "gone")
    assert store.remove("block", "gone") and not store.remove("block", "gone")
    assert "gone" in store.bloom("block")
    before = store.stats()["false_positives"]
    assert not store.contains("block", "gone")
    assert store.stats()["false_positives"] == before + 1
    store.rebuild("block")
    assert "gone" not in store.bloom("block")


def test_a_full_filter_is_rebuilt_larger_without_losing_values(client: Client) -> None:
    store = RedisListStore(client, NAMES, min_capacity=16, fp_rate=0.01)
    values = [f"v{i}" for i in range(500)]
    for value in values:
        store.add("block", value)
    assert store.stats()["rebuilds"] >= 2 + 3  # one per list at creation, then growth
    assert store.bloom("block").capacity >= 500 and not store.bloom("block").full
    assert all(store.contains("block", v) for v in values)


def test_expiry_is_judged_against_event_time(store: RedisListStore) -> None:
    store.add("block", 42, expires_at_ms=1000, reason="chargeback")
    assert store.contains("block", "42", 999) and store.contains("block", 42.0, None)
    assert not store.contains("block", 42, 1000)
    assert store.lookup("block", 42, 5) == ListEntry(42, 1000, "chargeback")
    assert store.entries("block") == [ListEntry(42, 1000, "chargeback")]


def test_unknown_lists_and_a_decoding_client_are_refused(
        store: RedisListStore, standalone_url: str) -> None:
    with pytest.raises(ListError, match="unknown list"):
        store.contains("nope", "x")
    with pytest.raises(ListError, match="known lists: allow, block"):
        store.add("nope", "x")
    decoding = redis.Redis.from_url(standalone_url, decode_responses=True)
    with pytest.raises(Exception, match="decode_responses"):
        RedisListStore(decoding, NAMES)
    decoding.close()


# -- seeding from the config


def _section(values: list[Any]) -> dict[str, Any]:
    return {"block": {"reason": "blocked", "values": values}}


def test_config_seeding_keeps_api_changes_across_restarts(client: Client) -> None:
    config = _section(["a", {"value": "b", "reason": "old"}, "c", 7])
    first = RedisListStore.from_config(config, None, client)
    assert all(first.contains("block", v) for v in ["a", "b", "c", 7])
    first.add("block", "api-added")
    first.remove("block", "a")                  # an API delete of a config entry
    first.add("block", "c", reason="by api")    # an API change of a config entry

    again = RedisListStore.from_config(config, None, client)  # same config: nothing written
    assert again.contains("block", "api-added") and not again.contains("block", "a")
    assert again.lookup("block", "c") == ListEntry("c", None, "by api")

    changed = _section([{"value": "b", "reason": "new"}, "d"])  # b changed; a, c, 7 left
    third = RedisListStore.from_config(changed, None, client)
    assert third.lookup("block", "b") == ListEntry("b", None, "new")
    assert third.contains("block", "d") and third.contains("block", "api-added")
    assert not third.contains("block", 7)                        # left the config: deleted
    assert third.lookup("block", "c") == ListEntry("c", None, "by api")  # API's: stays
    assert not third.contains("block", "a")


def test_config_errors_name_the_list(client: Client) -> None:
    with pytest.raises(ConfigError, match="block"):
        RedisListStore.from_config({"block": {"values": [True]}}, None, client)


def test_replace_with_and_reload_config(client: Client) -> None:
    store = RedisListStore.from_config(_section(["a"]), None, client)
    store.add("block", "api")
    other = ListStore()
    other.create("fresh", "new list")
    other.add("fresh", "z", expires_at_ms=10)
    store.replace_with(other)
    assert store.names() == ["fresh"] and store.reason("fresh") == "new list"
    assert store.contains("fresh", "z", 9) and not store.contains("fresh", "z", 10)
    assert store.reload_config(_section(["a", "b"]), None) == 1  # "a" was written before
    assert store.names() == ["block"] and store.contains("block", "b")
    assert store.contains("block", "api")  # API entries stay through a config reload


# -- two workers


@pytest.fixture
def two_workers(redis_url: str, client: Client
                ) -> Iterator[tuple[RedisListStore, RedisListStore, RulesetBus]]:
    clients = [connect(redis_url) for _ in range(2)]
    buses = [RulesetBus(c, []) for c in clients]
    stores = [RedisListStore.from_config(_section(["seed"]), None, c, bus=b, min_capacity=8)
              for c, b in zip(clients, buses, strict=True)]
    for bus in buses:
        bus.start()
    try:
        yield stores[0], stores[1], buses[1]
    finally:
        for bus in buses:
            bus.stop()
        for c in clients:
            c.close()


def test_workers_see_each_others_adds_through_the_bus(
        two_workers: tuple[RedisListStore, RedisListStore, RulesetBus]) -> None:
    a, b, _ = two_workers
    assert a.contains("block", "seed") and b.contains("block", "seed")
    values = [f"mule-{i}" for i in range(100)]  # enough to make b rebuild its filter
    for value in values:
        a.add("block", value, reason="mule")
    assert eventually(lambda: all(v in b.bloom("block") for v in values),
                      interval=0.005)
    assert all(b.contains("block", v) for v in values)
    assert b.lookup("block", "mule-3") == ListEntry("mule-3", None, "mule")
    assert b.remove("block", "mule-3")
    assert not a.contains("block", "mule-3")


def test_a_worker_that_missed_messages_rebuilds_on_resubscribe(
        two_workers: tuple[RedisListStore, RedisListStore, RulesetBus]) -> None:
    a, b, b_bus = two_workers
    b_bus.stop()
    a.add("block", "while-away")  # b is not subscribed: it gets no message
    resyncs, old_filter = b_bus.resyncs, b.bloom("block")
    b_bus.start()  # subscribing again re-reads the lists before start returns
    assert b_bus.resyncs == resyncs + 1 and b.bloom("block") is not old_filter
    assert "while-away" in b.bloom("block") and b.contains("block", "while-away")
