"""Value texts, key texts, micro-units and the whole-event idempotency store."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from riskengine import Engine
from riskengine.config import load_config
from riskengine.exceptions import EventValidationError
from riskengine.state.redis import RedisDecisionStore, RedisSceneFeatures, RedisStateError
from riskengine.state.redis.codec import (
    decode_value,
    distinct_text,
    key_text,
    micro_units,
    slot_text,
    value_text,
)
from tests.redis.redis_harness import RedisDecider
from tests.streams import BASE_TS, SEC, scene_config

VALUES = st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=False),
                   st.text(), st.booleans(), st.lists(st.integers(), max_size=3))


@given(VALUES)
def test_value_text_round_trips(v: object) -> None:
    back = decode_value(value_text(v).encode())
    assert back == v and type(back) is type(v)


@given(VALUES, VALUES)
def test_distinct_text_is_python_equality(a: object, b: object) -> None:
    assert (distinct_text(a) == distinct_text(b)) == (a == b)


def test_slot_texts() -> None:
    """Micro-units for sum/avg/stddev, computed here; the value text for the others, with
    the distinct key only when count_distinct reads it and it differs."""
    assert slot_text(0.1, quantized=True, distinct=False) == "100000"
    assert slot_text(2.5e-6, quantized=True, distinct=False) == "2"  # half to even
    assert slot_text(-0.5e-6, quantized=True, distinct=False) == "0"
    assert slot_text(10**15, quantized=True, distinct=False) == str(10**21)
    assert slot_text(5e9, quantized=True, distinct=False) == "5000000000000000"
    assert slot_text(0.1, quantized=False, distinct=True) == "0.1"
    assert slot_text(3.0, quantized=False, distinct=True) == "3.0\x023"
    assert slot_text(3.0, quantized=False, distinct=False) == "3.0"
    assert slot_text(True, quantized=False, distinct=True) == "T\x021"
    assert slot_text("a\x02b", quantized=False, distinct=True) == "'a\x02b"
    with pytest.raises(RedisStateError, match="must be a number"):
        micro_units("12", "amount")
    with pytest.raises(RedisStateError, match="must be a number"):
        slot_text(True, quantized=True, distinct=False)


# -- the same sums in Redis as in memory, on awkward values ------------------------------

AWKWARD: list[Any] = [
    0.1, 0.2, 0.1 + 0.2, 0.3, -0.1, 1 / 3, 33.333333333,
    0.0000025, 0.0000035, 2.5e-6, 3.5e-6, 4.5e-6, -0.5e-6, -1.5e-6, -2.5e-6, 1.0000005,
    1e-7, 5e-7, 0, -0.0, 1e9 + 0.5, 1e9 - 0.5, 123456.789, -123456789012.345678,
    4503599627.370495, 4503599627.370496, -4503599627.370496,  # q = 2^52 - 1, ±2^52
    9007199254.740991, 9007199254.740993, 10**15, 10**15 - 1, -(10**15), 999999999999999.9,
    None,
]
"""Micro-units q(v) = round(v * 1e6): IEEE products such as 0.1 + 0.2, halves that round
to even (2.5e-6 → 2, 3.5e-6 → 4, -0.5e-6 → 0), q on either side of 2^52 (a number in the
script below it, decimal text summed by limbs from it on) and the largest numbers the
engine accepts (10^15: q = 10^21)."""
QUANTISED = [{"name": f"{f}_{w}", "func": f, "target": "v", "by": ["k"], "window": w}
             for f in ("sum", "avg", "stddev") for w in ("1m", "10m")]
TILED = [{"name": f"tiled_{f}", "func": f, "target": "v", "by": ["k"], "window": "20m",
          "kind": "window", "hop": "5m"} for f in ("sum", "avg", "stddev")]
TEXTS = [  # the value text of v beside its micro-units; booleans where a feature allows
    "last(v#k.history,10m)", "max(v#k.history,10m)", "count_distinct(v#k.history,10m)",
    "count_distinct(flag#k.history,10m)", "first(flag#k.history,10m)",
    "last(flag#k.history,1m)", "count_distinct(mix#k.history,10m)"]
AWKWARD_FEATURES = [*QUANTISED, *TILED, *TEXTS]


def awkward_events(values: list[Any], rounds: int = 3) -> list[dict[str, Any]]:
    """`values` on two keys, every 15 s: windows of 1 and 10 minutes see values come and
    go, the busy key holds running states (32 entries and more)."""
    events = []
    for i, v in enumerate(values * rounds):
        events.append({"event_id": f"q{i}", "timestamp": BASE_TS + 15 * SEC * i,
                       "k": "busy" if i % 5 else "quiet", "v": v, "flag": i % 3 == 0,
                       "mix": (1, 1.0, True, 2, 2.0)[i % 5]})
    return events


def test_awkward_values_sum_alike_in_redis_and_in_memory(client: redis.Redis) -> None:
    """Python computes every q; the script only adds integers: sums, averages and
    standard deviations in Redis are the in-memory engine's, bit for bit."""
    config = scene_config(AWKWARD_FEATURES, "5m")
    engine = Engine.from_config(config)
    decider = RedisDecider(client, AWKWARD_FEATURES, "5m")
    events = awkward_events(AWKWARD)
    for event in events:
        expected = engine.evaluate("s", copy.deepcopy(event)).features
        got = decider.evaluate("s", copy.deepcopy(event)).features
        assert got == expected, event
    assert expected["sum_10m"] is not None and expected["stddev_10m"] is not None


def test_booleans_and_numbers_beyond_the_engine_are_refused_alike(client: redis.Redis
                                                                 ) -> None:
    """A boolean is never a number, and numbers beyond ±10^15 are refused: by the engine
    and by the shared state, before anything is stored."""
    engine = Engine.from_config(scene_config(AWKWARD_FEATURES, "5m"))
    decider = RedisDecider(client, AWKWARD_FEATURES, "5m")
    for v in (True, False, 2**53, -(2**53) - 1, 1e16):
        event = {"event_id": "x", "timestamp": BASE_TS, "k": "a", "v": v}
        for decide in (engine.evaluate, decider.engine.evaluate):
            with pytest.raises(EventValidationError, match="'v'"):
                decide("s", dict(event))
    with pytest.raises(RedisStateError, match="must be a number"):
        decider.features.compute({"event_id": "y", "timestamp": BASE_TS, "k": "a",
                                  "v": True})


def test_integers_near_2_to_the_53_sum_exactly(client: redis.Redis) -> None:
    """Integers the engine's parser refuses, given to both states directly: their q (about
    9·10^21) goes through the script's limbs, exactly as Python's integers add them.
    (Only the sums are compared: min/max compare such integers as their nearest double.)"""
    near = [2**53, 2**53 + 1, -(2**53) - 1, 2**53 - 1, 2**52 + 1, 1, 0.5e-6, 1.5e-6]
    scene = load_config(scene_config(AWKWARD_FEATURES, "5m")).scenes["s"]
    state = RedisSceneFeatures(client, scene)
    engine = Engine.from_config(scene_config(AWKWARD_FEATURES, "5m"))
    names = [f["name"] for f in QUANTISED + TILED]
    for event in awkward_events(near, rounds=8):
        expected = engine.decide_parsed("s", [copy.deepcopy(event)])[0].features
        got, late = state.compute(copy.deepcopy(event))
        assert not late
        assert [got[n] for n in names] == [expected[n] for n in names], event


def test_key_text() -> None:
    assert key_text((1,)) == key_text((1.0,)) == key_text((True,)) == "1"
    assert key_text(("1",)) == "'1"
    assert key_text(("a", 2)) != key_text(("a", "2"))
    assert key_text(("x" * 500,)).startswith("#")


def test_decision_store_horizon(client: redis.Redis) -> None:
    store = RedisDecisionStore(client, "s", horizon_ms=1000)

    def lookup(clock: int | None) -> bytes | None:
        return store.live(client.get(store.key("x")), clock)

    assert lookup(None) is None
    assert store.remember("x", 5000, '{"n": 1}', None) is None
    assert lookup(5999) == b'5000|{"n": 1}'  # the whole record, time first
    assert store.remember("x", 5999, '{"n": 2}', 5999) == b'5000|{"n": 1}'  # first wins
    assert lookup(6000) is None  # 5000 > 6000 - 1000 fails: forgotten
    assert store.remember("x", 6000, '{"n": 3}', 6000) is None
    assert lookup(6000) == b'6000|{"n": 3}'
    assert 0 < client.pttl(store.key("x")) <= 600_000


def test_entity_and_pattern_keys_expire_a_day_or_more_after_their_last_write(
        redis_url: str, client: redis.Redis) -> None:
    """The wall-clock TTL is a safety net far beyond the event-time horizon (1 h + 1 m
    here): at least a day after the last write, so a stream that stands still for less
    than that loses nothing an on-time event needs (docs/semantics.md, Memory); it is
    set to two days when a write finds less than one left, so that most writes leave it
    alone."""
    from riskengine import Engine
    from riskengine.state.redis import RedisState

    config = {"scenes": {"s": {"lateness": "1m", "features": ["count(a.history,1h)"],
                               "patterns": [{"name": "p", "by": ["a"], "within": "5m",
                                             "steps": ["k == 'x'", "k == 'y'"]}]}}}
    with Engine.from_config(config, state=RedisState.connect(redis_url,
                                                             state_timeout_ms=5000)) as engine:
        engine.evaluate("s", {"event_id": "e", "timestamp": 1_700_000_000_000, "a": "A",
                              "k": "x"})
        state_keys = [k for k in client.scan_iter(match="re:{s|*", count=1000)]
        assert any(b"|pattern|" in k for k in state_keys) and len(state_keys) >= 2
        # set to two TTLs when written with less than one left (here: none yet)
        first = {key: client.pttl(key) for key in state_keys}
        for key, left in first.items():
            assert 2 * 86_400_000 - 60_000 < left <= 2 * 86_400_000, key
        # a later write with more than one TTL left leaves it (no PEXPIREAT in the AOF)
        engine.evaluate("s", {"event_id": "f", "timestamp": 1_700_000_001_000, "a": "A",
                              "k": "y"})
        for key, left in first.items():
            assert 0 < client.pttl(key) <= left, key
        # with less than one TTL left, a write sets it to two again
        for key in state_keys:
            client.pexpire(key, 86_400_000 - 1)
        engine.evaluate("s", {"event_id": "g", "timestamp": 1_700_000_002_000, "a": "A",
                              "k": "x"})
        for key in state_keys:
            assert 2 * 86_400_000 - 60_000 < client.pttl(key) <= 2 * 86_400_000, key
