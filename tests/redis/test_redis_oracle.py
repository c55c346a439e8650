"""The Redis feature state against the brute-force oracle, event by event.

Same streams and hand-made scenarios as tests/features/test_oracle_streams.py: ties,
events exactly one window apart, late events inside and beyond the lateness, duplicates,
null and composite keys, negative and awkward amounts, tiled features, idle keys.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from riskengine.config import load_config
from riskengine.decision import Decision
from riskengine.state.redis import RedisSceneFeatures, connect
from tests.features.test_oracle_streams import SCENARIOS, scenario_events
from tests.oracle import Oracle, OracleResult, parse_duration
from tests.redis.redis_harness import RedisDecider
from tests.streams import (
    BASE_TS,
    STREAM_FEATURES,
    STREAM_LATENESS,
    STREAM_LATENESS_MS,
    mismatches,
    random_stream,
    run_against_oracle,
    scene_config,
)


def compare_stream(decider: RedisDecider, events: list[dict[str, Any]], oracle: Oracle
                   ) -> None:
    compare_answers(decider, events, [oracle.feed(copy.deepcopy(event)) for event in events])


@functools.cache
def oracle_answers(seed: int, n: int) -> tuple[OracleResult, ...]:
    """The oracle's answers to `random_stream(seed, n)`, computed once: every backend and
    layout is held to the same list."""
    oracle = Oracle(STREAM_FEATURES, STREAM_LATENESS_MS)
    return tuple(oracle.feed(copy.deepcopy(event)) for event in random_stream(seed, n))


def compare_answers(decider: RedisDecider, events: list[dict[str, Any]],
                    answers: Sequence[OracleResult]) -> None:
    found: list[tuple[str, str]] = []
    for i, (event, expected) in enumerate(zip(events, answers, strict=True)):
        found += mismatches(i, event, expected, decider.evaluate("s", copy.deepcopy(event)))
    if found:
        per_feature = Counter(name for name, _ in found)
        raise AssertionError(f"{found[0][1]}\n{len(found)} differences over {len(events)} "
                             f"events: {dict(per_feature)}")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(client: redis.Redis, name: str) -> None:
    features, lateness, _ = SCENARIOS[name]
    run_against_oracle(RedisDecider(client, features, lateness), "s", scenario_events(name),
                       Oracle(features, parse_duration(lateness)))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_stream_matches_oracle(client: redis.Redis, seed: int) -> None:
    compare_answers(RedisDecider(client, STREAM_FEATURES, STREAM_LATENESS),
                    random_stream(seed, 1500), oracle_answers(seed, 1500))


LAYOUTS: dict[str, dict[str, Any]] = {
    # every entity in one bucket: the sweep runs against live siblings all the time
    "one-bucket": {"buckets": 1, "sweep": 4},
    # tiny bucket fields: entities move between their bucket and their own key
    "own-keys": {"bucket_value_max": 40},
    # no guard records, no TTL
    "no-guard": {"guard_depth": 0, "ttl_ms": 0},
    # a deeper guard
    "deep-guard": {"guard_depth": 3, "prefix": "alt"},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_give_the_same_values(standalone_client: redis.Redis, layout: str) -> None:
    """Storage inside one function call: one server is enough (the cluster runs the
    default layout in every other test here)."""
    compare_answers(RedisDecider(standalone_client, STREAM_FEATURES, STREAM_LATENESS,
                                 **LAYOUTS[layout]),
                    random_stream(11, 1000), oracle_answers(11, 1000))


def test_scripts_flushed_mid_stream_are_reloaded(client: redis.Redis) -> None:
    events = random_stream(12, 400)
    decider = RedisDecider(client, STREAM_FEATURES, STREAM_LATENESS)
    oracle = Oracle(STREAM_FEATURES, STREAM_LATENESS_MS)
    compare_stream(decider, events[:200], oracle)
    client.script_flush()
    compare_stream(decider, events[200:], oracle)


FEATURES = ["count(a.history,1h)", "sum(v#a.history,1h)", "stddev(v#a.history,1h)",
            "last(v#a.history,1h)", "count(b.history,1h)"]


def scene(features: list[Any], lateness: str = "5m") -> Any:
    return load_config(scene_config(features, lateness)).scenes["s"]


def test_entity_guard_returns_the_stored_answer(client: redis.Redis) -> None:
    """The same event computed twice (a retry after a crash) is applied once."""
    features = RedisSceneFeatures(client, scene(FEATURES))
    first = {"event_id": "x", "timestamp": BASE_TS, "a": "k", "b": "m", "v": 5}
    assert features.compute(dict(first)) == features.compute(dict(first))
    values, late = features.compute({"event_id": "y", "timestamp": BASE_TS + 1, "a": "k",
                                     "v": 7})
    assert not late
    assert values["count(a.history,1h)"] == 2 and values["sum(v#a.history,1h)"] == 12.0


def test_guard_applies_an_id_again_past_the_horizon(client: redis.Redis) -> None:
    features = RedisSceneFeatures(client, scene(["count(a.history,1s)"], "0ms"))
    ev = {"event_id": "x", "timestamp": BASE_TS, "a": "k"}
    assert features.compute(dict(ev))[0] == {"count(a.history,1s)": 1}
    features.compute({"event_id": "z", "timestamp": BASE_TS + 1000, "a": "other"})
    # x's time is no longer > G - L - Wmax: the same id is a new event
    again = dict(ev, timestamp=BASE_TS + 1000)
    assert features.compute(again)[0] == {"count(a.history,1s)": 1}
    assert features.compute(again)[0] == {"count(a.history,1s)": 1}  # guarded now


def test_exact_sums_beyond_double_precision(client: redis.Redis) -> None:
    """Micro-unit sums and squares far beyond 2**53, positive and negative."""
    big = [10**15, 999_999_999_999_999.5, -(10**15) + 0.25, 4503599627.370497, 1e-6, 0.3,
           -123456789012.345678, 10**15 - 1, 2**52 / 1e6, -(2**52) / 1e6]
    features = [{"name": f, "func": f, "target": "v", "by": ["a"], "window": "1h"}
                for f in ("sum", "avg", "stddev", "min", "max", "first", "last")]
    tiled = [{"name": f"t_{f}", "func": f, "target": "v", "by": ["a"], "window": "2h",
              "kind": "window", "hop": "10m"} for f in ("sum", "avg", "stddev")]
    events = [{"event_id": f"b{i}", "timestamp": BASE_TS + 60_000 * (i % 7) + i, "a": "k",
               "v": v} for i, v in enumerate(big * 20)]
    run_against_oracle(RedisDecider(client, features + tiled, "1h"), "s", events,
                       Oracle(features + tiled, 3_600_000))


def alternate(redis_url: str, events: list[dict[str, Any]]) -> list[Decision]:
    """Two engines on Redis state (`RedisState`) on two clients (two workers) on an empty
    Redis, deciding `events` in turns, one at a time."""
    clients = [connect(redis_url) for _ in range(2)]
    clients[0].flushall()
    try:
        workers = [RedisDecider(c, STREAM_FEATURES, STREAM_LATENESS) for c in clients]
        return [workers[i % 2].evaluate("s", copy.deepcopy(event))
                for i, event in enumerate(events)]
    finally:
        for c in clients:
            c.close()


def test_two_workers_in_turns_answer_as_one_run_after_run(redis_url: str) -> None:
    """Two workers taking turns decide as the oracle does, on every event, with no clock
    of their own to keep in step; twice on fresh state, the very same answers and LSNs
    (one arrival order: 1, 2, 3, ...; on a cluster with a gap for each duplicate, whose
    clock step is taken beside its lookup)."""
    events = random_stream(21, 800)
    answers = oracle_answers(21, 800)
    first = alternate(redis_url, events)
    found: list[tuple[str, str]] = []
    for i, (event, expected, got) in enumerate(zip(events, answers, first, strict=True)):
        found += mismatches(i, event, expected, got)
    assert not found, f"{found[0][1]} ({len(found)} differences)"
    assert sum(a.late for a in answers) > 10 and sum(a.duplicate for a in answers) > 10
    view = [(d.features, d.late, d.lsn) for d in first]
    assert [(d.features, d.late, d.lsn) for d in alternate(redis_url, events)] == view
    fresh = [d.lsn for d, a in zip(first, answers, strict=True) if not a.duplicate]
    assert fresh == sorted(fresh) and len(set(fresh)) == len(fresh)
    if redis_url.startswith("redis+cluster"):
        assert fresh[-1] == len(events)  # every event took a step: duplicates are gaps
    else:
        assert fresh == list(range(1, len(fresh) + 1))  # duplicates take no step


def test_concurrent_writers_lose_no_update(redis_url: str, client: redis.Redis) -> None:
    """Many clients on one hot entity at once: every event is counted once."""
    features_def = ["count(a.history,1h)", "sum(v#a.history,1h)",
                    "count_distinct(w#a.history,1h)"]
    per_thread, threads = 40, 6
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            connection = connect(redis_url)
            features = RedisSceneFeatures(connection, scene(features_def, "1h"))
            for i in range(per_thread):
                features.compute({"event_id": f"w{n}-{i}", "timestamp": BASE_TS + i,
                                  "a": "hot", "v": 0.1, "w": f"{n}-{i}"})
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors
    total = per_thread * threads
    values, late = RedisSceneFeatures(client, scene(features_def, "1h")).compute(
        {"event_id": "last", "timestamp": BASE_TS + per_thread, "a": "hot", "v": 0.1,
         "w": "last"})
    assert not late
    assert values == {"count(a.history,1h)": total + 1,
                      "sum(v#a.history,1h)": (total + 1) * 100_000 / 1_000_000,
                      "count_distinct(w#a.history,1h)": total + 1}
