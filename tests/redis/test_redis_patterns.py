"""Sequence patterns with shared state: an engine on Redis state (`RedisState`) answers as
the in-memory engine on random streams (the oracle test's generator), on the example
config's traffic, on a single Redis and a 3-primary cluster; a retried event changes no
pattern state."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskengine.engine import Engine
from riskengine.state.redis.backend import RedisState
from tests.features.test_patterns import EXAMPLE, T0, _traffic, _view, scene

_RUNS = itertools.count()


@pytest.fixture
def engines(redis_url: str) -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.close()


def shared(url: str, config: Any, made: list[Engine]) -> Engine:
    engine = Engine.from_config(config, state=RedisState.connect(
        url, state_timeout_ms=5000, prefix=f"pt{next(_RUNS)}", guard_depth=2))
    made.append(engine)
    return engine


def test_the_example_patterns_equal_the_in_memory_engine(
        redis_url: str, engines: list[Engine]) -> None:
    events = _traffic(300, seed=5)
    redis_engine = shared(redis_url, EXAMPLE, engines)
    memory = Engine.from_config(EXAMPLE)
    got = [_view(redis_engine.evaluate("account", e).to_dict()) for e in events]
    expected = [_view(memory.evaluate("account", e).to_dict()) for e in events]
    assert got == expected
    assert any(v[2] for v in expected) and any(v[3] for v in expected)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("AB"),
                          st.sampled_from(["login", "fail", "withdraw", "confirm", "x"]),
                          st.integers(min_value=-20, max_value=60)), max_size=30),
       st.integers(min_value=1, max_value=3))
def test_random_streams_equal_the_in_memory_engine(standalone_url: str,
                                                   steps: list[tuple[str, str, int]],
                                                   times: int) -> None:
    config = scene([
        {"name": "seq", "by": ["account"], "within": 60_000,
         "steps": ["kind == 'login'", {"when": "kind == 'fail'", "times": times}]},
        {"name": "gap", "by": ["account"], "within": 60_000, "first": "kind == 'withdraw'",
         "not_followed_by": "kind == 'confirm'"}], lateness="10m")
    made: list[Engine] = []
    try:
        redis_engine = shared(standalone_url, config, made)
        memory = Engine.from_config(config)
        t = T0
        for i, (account, kind, step) in enumerate(steps):
            t = max(T0, t + step * 1000)
            event = {"event_id": f"e{i}", "timestamp": t, "account": account, "kind": kind}
            a = redis_engine.evaluate("s", event).features
            b = memory.evaluate("s", event).features
            assert (a["pattern:seq"], a["pattern:gap"]) == \
                (b["pattern:seq"], b["pattern:gap"]), i
    finally:
        for engine in made:
            engine.close()


def test_a_retried_event_changes_no_pattern_state(redis_url: str,
                                                  engines: list[Engine]) -> None:
    redis_engine = shared(redis_url, EXAMPLE, engines)
    memory = Engine.from_config(EXAMPLE)
    steps = [("login", 0), ("auth_fail", 10), ("auth_fail", 20), ("auth_fail", 30)]
    events = [{"event_id": f"r{i}", "timestamp": T0 + s * 1000, "account": "A", "kind": k}
              for i, (k, s) in enumerate(steps)]
    for event in events[:3]:
        redis_engine.evaluate("account", event)
        memory.evaluate("account", event)
    # the decision record of the last event is lost (a crash before it was written):
    # its retry reaches the entities and the patterns again, and counts nothing
    store = redis_engine.state._scenes["account"].store
    redis_engine.state.client.delete(store.key("r2"))
    again = redis_engine.evaluate("account", events[2])
    assert again.features["pattern:login_then_3_auth_fails"] is False
    last = redis_engine.evaluate("account", events[3]).features
    assert last == memory.evaluate("account", events[3]).features
    assert last["pattern:login_then_3_auth_fails"] is True
