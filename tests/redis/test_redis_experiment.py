"""Experiments on Redis state: workers sharing Redis deal the same arms, and a duplicate
answered by another worker keeps the arm that answered it first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from riskengine import Engine
from riskengine.experiment import CHAMPION
from riskengine.state.redis.backend import RedisState
from riskengine.state.redis.functions import Client
from tests.engine.test_experiment import example_with, experiment, transfer


@pytest.fixture
def workers(redis_url: str, client: Client) -> Iterator[list[Engine]]:
    engines = [Engine.from_config(example_with(experiment()),
                                  state=RedisState.connect(redis_url, state_timeout_ms=5000))
               for _ in range(2)]
    yield engines
    for engine in engines:
        engine.close()


def test_two_workers_deal_the_same_arms_and_remember_them(workers: list[Engine]) -> None:
    one, two = workers
    arms: Counter[str] = Counter()
    decided = {}
    for i in range(600):
        worker = one if i % 2 else two
        decision = worker.evaluate("transfer", transfer(i, f"acct-{i % 300}"))
        assert not decision.duplicate
        arms[decision.arm] += 1
        previous = decided.setdefault(f"acct-{i % 300}", decision.arm)
        assert previous == decision.arm  # the account's arm on either worker
        assert {a.arm for a in decision.arms} | {decision.arm} == {
            CHAMPION, "strict", "loose", "watch"}
    assert arms["strict"] and arms["loose"] and arms[CHAMPION]
    challenger = next(i for i in range(600) if decided[f"acct-{i % 300}"] != CHAMPION)
    first_worker, other = (one, two) if challenger % 2 else (two, one)
    again = other.evaluate("transfer", transfer(challenger, "changed-account"))
    assert again.duplicate and again.arm == decided[f"acct-{challenger % 300}"]
    assert again.arms == ()  # a duplicate carries the answer only
    champion = next(i for i in range(600) if decided[f"acct-{i % 300}"] == CHAMPION)
    assert first_worker.evaluate("transfer", transfer(champion, "x")).arm == CHAMPION
