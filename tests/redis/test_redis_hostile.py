"""The hostile streams (tests/hostile.py, fixed seeds) on the shared state: two engines
on Redis state (`RedisState`) on two clients (two workers) decide in turns, one event at
a time, on one Redis and on a 3-primary cluster. Every event's features and late flag equal the
oracle's, every decision (patterns included) the in-memory engine's, and a second run on
fresh state gives the very same answers, LSNs included."""

from __future__ import annotations

import copy
import functools
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from riskengine import Engine
from riskengine.config import load_config
from riskengine.decision import Decision
from riskengine.state.redis import connect
from riskengine.state.redis.backend import RedisState
from tests.hostile import HOSTILE_FEATURES, HOSTILE_LATENESS_MS, HOSTILE_SEEDS, hostile_config
from tests.hostile import hostile_stream as make_stream
from tests.oracle import Oracle, OracleResult
from tests.streams import decision_view, mismatches

N = 3000


@functools.cache
def expected(seed: int) -> tuple[list[dict[str, Any]], list[OracleResult],
                                 list[dict[str, Any]]]:
    """The stream, the oracle's answers and the in-memory engine's decisions."""
    events, _ = make_stream(seed, N)
    oracle = Oracle(HOSTILE_FEATURES, HOSTILE_LATENESS_MS)
    engine = Engine.from_config(hostile_config())
    return (events, [oracle.feed(copy.deepcopy(e)) for e in events],
            [decision_view(engine.evaluate("s", copy.deepcopy(e))) for e in events])


def in_turns(url: str, events: list[dict[str, Any]]) -> list[Decision]:
    clients = [connect(url) for _ in range(2)]
    clients[0].flushall()
    config = load_config(hostile_config())
    workers = [Engine(config, RedisState(c, state_timeout_ms=60_000, guard_depth=2))
               for c in clients]
    try:
        return [workers[i % 2].evaluate("s", copy.deepcopy(e)) for i, e in enumerate(events)]
    finally:
        for worker in workers:
            worker.close()


def without_lsn(view: dict[str, Any]) -> dict[str, Any]:
    """LSNs: the engine counts decisions, the shared clock every arrival (duplicates are
    gaps); everything else is equal."""
    return {k: v for k, v in view.items() if k != "lsn"}


@pytest.mark.parametrize("seed", HOSTILE_SEEDS)
def test_two_workers_equal_the_oracle_and_the_engine_run_after_run(redis_url: str,
                                                                   seed: int) -> None:
    events, answers, reference = expected(seed)
    first = in_turns(redis_url, events)
    assert not any(d.degraded for d in first)
    found: list[tuple[str, str]] = []
    for i, (event, answer, got) in enumerate(zip(events, answers, first, strict=True)):
        features = {k: v for k, v in got.features.items() if not k.startswith("pattern:")}
        found += mismatches(i, event, answer, SimpleNamespace(features=features,
                                                              late=got.late))
    assert not found, (f"{found[0][1]}\n{len(found)} differences: "
                       f"{dict(Counter(name for name, _ in found))}")
    views = [decision_view(d) for d in first]
    assert [without_lsn(v) for v in views] == [without_lsn(v) for v in reference]
    assert sum(a.late and not a.duplicate for a in answers) > 50
    assert any(d.features["pattern:login_then_2_fails"] for d in first)
    assert [decision_view(d) for d in in_turns(redis_url, events)] == views
