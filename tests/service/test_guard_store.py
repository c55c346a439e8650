"""The guard's stores, in the process, in a real redis-server and on a Redis Cluster, pass
one contract: counts by version, the last N as whole flushes, compare-and-set watches; and
the verdict test. Two guards on one store (two workers) reach a breaching verdict and roll
back once. A flush the store did not acknowledge is sent again unchanged, before newer
counts, and Redis counts it once: applied before its timeout, or cut off between
versions. A rollback whose verdict's answer was lost is carried through once."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, Counter

from riskengine.decision import Decision
from riskengine.service.guard import RolloutGuard, breaches
from riskengine.service.guardstore import (
    Flush,
    GuardStore,
    MemoryGuardStore,
    RedisGuardStore,
    Tally,
    VersionKey,
    Watch,
)
from riskengine.service.settings import GuardSettings
from riskengine.state.redis import connect
from tests.servers import redis_cluster, redis_server

DEPTH = 10


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with redis_cluster() as url:
        yield url


def redis_store_on(url: str) -> Iterator[RedisGuardStore]:
    client = connect(url)
    client.flushall()  # the function libraries stay loaded, as on a live server
    yield RedisGuardStore(client, DEPTH)
    client.close()


@pytest.fixture(params=["memory", "redis", "cluster"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GuardStore]:
    if request.param == "memory":
        yield MemoryGuardStore(DEPTH, tmp_path / "guard.json")
        return
    yield from redis_store_on(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=["redis", "cluster"])
def redis_store(request: pytest.FixtureRequest) -> Iterator[RedisGuardStore]:
    yield from redis_store_on(request.getfixturevalue(f"{request.param}_url"))


_SEQ = itertools.count(1)


def flush(deltas: Mapping[VersionKey, Tally], source: str = "test") -> Flush:
    """The next flush of the test's process."""
    return Flush(source, next(_SEQ), deltas)


def watch(version: str, previous: str, kind: str = "ruleset", id: str = "w1") -> Watch:
    return Watch("transfer", kind, id, version, previous, 1000)


def test_counts_by_version_and_the_last_n_as_whole_flushes(store: GuardStore) -> None:
    store.add(flush({("transfer", "ruleset", "v1"): Tally(5, 4, 1, 0),
                     ("transfer", "model:m", "m1"): Tally(5, 4, 1, 0)}))
    store.add(flush({("transfer", "ruleset", "v1"): Tally(3, 1, 0, 2)}))
    store.add(flush({("transfer", "ruleset", "v1"): Tally(4, 4, 0, 0)}))
    assert store.totals("transfer", "ruleset", "v1") == Tally(12, 9, 1, 2)
    assert store.totals("transfer", "model:m", "m1") == Tally(5, 4, 1, 0)
    assert store.totals("transfer", "ruleset", "unknown") == Tally()
    # the newest flushes until they hold N: 4, then 4+3=7 >= 6
    assert store.recent("transfer", "ruleset", "v1", 6) == Tally(7, 5, 0, 2)
    assert store.recent("transfer", "ruleset", "v1", 4) == Tally(4, 4, 0, 0)
    assert store.recent("transfer", "ruleset", "v1", 100) == Tally(12, 9, 1, 2)
    for _ in range(DEPTH):  # only the newest `depth` flushes are kept
        store.add(flush({("transfer", "ruleset", "v1"): Tally(1, 0, 0, 1)}))
    assert store.recent("transfer", "ruleset", "v1", 100) == Tally(DEPTH, 0, 0, DEPTH)


def test_watches_are_compare_and_set(store: GuardStore) -> None:
    store.add(flush({("transfer", "ruleset", "v2"): Tally(7, 7, 0, 0)}))
    first = watch("v2", "v1")
    assert store.replace(None, first, None)
    assert not store.replace(None, watch("v3", "v2", id="late"), None)  # read before first
    [current] = store.watches([("transfer", "ruleset"), ("transfer", "model:m")])
    assert (current.id, current.version, current.previous, current.state, current.owner) == (
        "w1", "v2", "v1", "watching", "")
    assert current.offset == Tally(7, 7, 0, 0)  # counts from before it went live

    verdict = {"version": "v2", "state": "rolling_back"}
    assert store.conclude(current, "watching", "rolling_back", verdict, False, "a")
    assert store.conclude(current, "watching", "rolling_back", verdict, False, "a")  # again
    assert not store.conclude(current, "watching", "rolling_back", verdict, False, "b")
    assert store.verdicts("transfer", "ruleset") == []
    done = {"version": "v2", "state": "rolled_back"}
    assert store.conclude(current, "rolling_back", "rolled_back", done, True, "a")
    assert store.conclude(current, "rolling_back", "rolled_back", done, True, "a")  # again
    assert store.verdicts("transfer", "ruleset") == [done]

    [concluded] = store.watches([("transfer", "ruleset")])
    assert (concluded.state, concluded.owner, concluded.verdict) == ("rolled_back", "a", done)
    retired = {"version": "v2", "state": "superseded"}
    assert store.replace(concluded, watch("v3", "v2", id="w2"), retired)
    assert store.verdicts("transfer", "ruleset") == [retired, done]  # newest first
    assert not store.conclude(concluded, "rolled_back", "kept", done, True, "a")  # gone


def test_memory_verdicts_survive_a_restart(tmp_path: Path) -> None:
    store = MemoryGuardStore(DEPTH, tmp_path / "guard.json")
    store.replace(None, watch("v2", "v1"), None)
    [current] = store.watches([("transfer", "ruleset")])
    store.conclude(current, "watching", "kept", {"version": "v2", "state": "kept"}, True, "a")
    again = MemoryGuardStore(DEPTH, tmp_path / "guard.json")
    assert again.verdicts("transfer", "ruleset") == [{"version": "v2", "state": "kept"}]
    (tmp_path / "guard.json").write_text('{"not": "a list"}')
    assert MemoryGuardStore(DEPTH, tmp_path / "guard.json").verdicts("transfer", "ruleset") == []


@pytest.mark.parametrize(("new", "old", "expected"), [
    (Tally(100, 0, 0, 100), Tally(100, 100, 0, 0), ["reject"]),  # 100 % vs 0 %
    (Tally(1000, 995, 0, 5), Tally(1000, 1000, 0, 0), []),  # 0.5 % vs 0 %: under min_delta
    (Tally(1000, 980, 0, 20), Tally(1000, 1000, 0, 0), ["reject"]),  # 2 % vs 0 %
    (Tally(100, 25, 75, 0), Tally(100, 75, 25, 0), []),  # 75 % = 3 x 25 %: not above
    (Tally(100, 24, 76, 0), Tally(100, 75, 25, 0), ["review"]),
    (Tally(100, 38, 31, 31), Tally(100, 80, 10, 10), ["reject", "review"]),
    (Tally(100, 80, 10, 10), Tally(100, 40, 30, 30), []),  # fewer: never a breach
    (Tally(100, 100, 0, 0), Tally(), []),  # no baseline decisions, no breach
])
def test_a_rate_breaches_above_factor_times_and_min_delta_above(
        new: Tally, old: Tally, expected: list[str]) -> None:
    assert breaches(new, old, GuardSettings(decisions=100, factor=3.0,
                                            min_delta=0.01)) == expected


def test_two_guards_on_one_store_roll_back_once(store: GuardStore) -> None:
    settings = GuardSettings(decisions=20)
    calls: list[tuple[str, str, str, str]] = []
    registry = CollectorRegistry()
    total = Counter("rollbacks", "", ["scene", "kind"], registry=registry)
    guards = []
    for name in ("a", "b"):
        guard = RolloutGuard(settings, store, ["transfer"], total)

        def rollback(scene: str, version: str, previous: str, name: str = name) -> bool:
            calls.append((name, scene, version, previous))
            return True

        guard.register_rollback("ruleset", rollback)
        guards.append(guard)
    a, b = guards
    store.add(flush({("transfer", "ruleset", "v1"): Tally(30, 30, 0, 0)}))
    a.on_version_live("transfer", "ruleset", "v2", "v1")
    b.on_version_live("transfer", "ruleset", "v2", "v1")  # the same change: one watch
    store.add(flush({("transfer", "ruleset", "v2"): Tally(12, 0, 0, 12)}))
    store.add(flush({("transfer", "ruleset", "v2"): Tally(12, 0, 0, 12)}))
    assert a.report("transfer")["watching"][0]["decisions"] == 24
    a_report = a.report("transfer")
    assert a_report == b.report("transfer")
    for guard in (b, a, b, a):
        guard.review()
    assert [call[1:] for call in calls] == [("transfer", "v2", "v1")]
    [verdict] = a.report("transfer")["verdicts"]
    assert verdict["state"] == "rolled_back" and verdict["exceeded"] == ["reject"]
    assert (verdict["decisions"], verdict["baseline"]["decisions"]) == (24, 30)
    assert registry.get_sample_value("rollbacks_total",
                                     {"scene": "transfer", "kind": "ruleset"}) == 1.0
    assert a.rolled_back("transfer", "ruleset") == {"v2": verdict}


def test_unknown_kinds_are_refused(store: GuardStore) -> None:
    registry = CollectorRegistry()
    guard = RolloutGuard(GuardSettings(), store, ["transfer"],
                         Counter("rollbacks", "", ["scene", "kind"], registry=registry))
    with pytest.raises(ValueError, match="no rollback registered"):
        guard.on_version_live("transfer", "model:fraud", "m2", "m1")
    with pytest.raises(ValueError, match="'ruleset' or 'model:<name>'"):
        guard.register_rollback("models", lambda scene, version, previous: True)
    guard.register_rollback("model:fraud", lambda scene, version, previous: True)
    guard.on_version_live("transfer", "model:fraud", "m2", "m1")
    assert [w["version"] for w in guard.report("transfer")["watching"]] == ["m2"]


def decided(outcome: str, version: str, arm: str = "champion",
            models: dict[str, str] | None = None) -> Decision:
    return Decision("e", "transfer", outcome, 0.0, (), (), {}, (), version, False, False, 0.1,
                    1, 0, arm=arm, models=models or {})


def guard_on(store: GuardStore) -> RolloutGuard:
    registry = CollectorRegistry()
    return RolloutGuard(GuardSettings(), store, ["transfer"],
                        Counter("rollbacks", "", ["scene", "kind"], registry=registry))


def test_champion_decisions_are_counted_by_ruleset_and_model_version(
        store: GuardStore) -> None:
    guard = guard_on(store)
    for decision in (decided("accept", "v1", models={"fraud": "m1"}),
                     decided("reject", "v1", models={"fraud": "m1"}),
                     decided("review", "v1", models={"fraud": "m2"}),
                     decided("reject", "v9", arm="strict")):  # a challenger answered
        guard.count(decision)
    asyncio.run(guard.flush_now())
    assert store.totals("transfer", "ruleset", "v1") == Tally(3, 1, 1, 1)
    assert store.totals("transfer", "ruleset", "v9") == Tally()
    assert store.totals("transfer", "model:fraud", "m1") == Tally(2, 1, 0, 1)
    assert store.totals("transfer", "model:fraud", "m2") == Tally(1, 0, 1, 0)
    asyncio.run(guard.flush_now())  # nothing new: nothing added
    assert store.totals("transfer", "ruleset", "v1") == Tally(3, 1, 1, 1)


class FlakyStore(MemoryGuardStore):
    """A store whose next `failures` adds raise, as Redis does when it is away."""

    failures = 0
    added: list[Flush]

    def add(self, flush: Flush) -> None:
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("Redis went away")
        self.added.append(flush)
        super().add(flush)


def test_a_refused_flush_is_sent_again_unchanged_before_newer_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(DEPTH)
    store.added = []
    guard = guard_on(store)
    store.failures = 2
    guard.count(decided("reject", "v1"))
    asyncio.run(guard.flush_now())
    guard.count(decided("accept", "v1"))
    asyncio.run(guard.flush_now())
    assert store.totals("transfer", "ruleset", "v1") == Tally()
    guard.count(decided("review", "v1"))
    asyncio.run(guard.flush_now())  # the first flush, as it was
    assert store.totals("transfer", "ruleset", "v1") == Tally(1, 0, 0, 1)
    asyncio.run(guard.flush_now())  # then the counts made meanwhile
    assert store.totals("transfer", "ruleset", "v1") == Tally(3, 1, 1, 1)
    first, second = store.added
    key = ("transfer", "ruleset", "v1")
    assert (first.source, first.seq, dict(first.deltas)) == (
        guard.source, 1, {key: Tally(1, 0, 0, 1)})
    assert (second.source, second.seq, dict(second.deltas)) == (
        guard.source, 2, {key: Tally(2, 1, 1, 0)})
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Redis went away" in errors[0].getMessage()  # once


def test_redis_applies_a_flush_once_per_version(redis_store: RedisGuardStore) -> None:
    v1, m1 = ("transfer", "ruleset", "v1"), ("transfer", "model:m", "m1")
    w1 = ("login", "ruleset", "w1")  # another scene: another slot of a cluster
    first = {v1: Tally(3, 1, 1, 1), m1: Tally(3, 1, 1, 1), w1: Tally(1, 1, 0, 0)}
    redis_store.add(Flush("a", 1, first))
    redis_store.add(Flush("a", 1, first))  # sent again: applied already
    redis_store.add(Flush("b", 1, {v1: Tally(2, 2, 0, 0)}))  # another process's first
    redis_store.add(Flush("a", 2, {m1: Tally(1, 0, 0, 1)}))
    redis_store.add(Flush("a", 1, {v1: Tally(3, 1, 1, 1)}))  # older than the last: seen
    redis_store.add(Flush("a", 3, {v1: Tally(1, 0, 0, 1), w1: Tally(1, 0, 1, 0)}))
    assert redis_store.totals(*v1) == Tally(6, 3, 1, 2)
    assert redis_store.totals(*m1) == Tally(4, 1, 1, 2)
    assert redis_store.totals(*w1) == Tally(2, 1, 1, 0)
    assert redis_store.recent(*v1, 100) == Tally(6, 3, 1, 2)
    assert redis_store.recent(*v1, 1) == Tally(1, 0, 0, 1)  # one tally per applied flush
    assert redis_store.recent(*m1, 100) == Tally(4, 1, 1, 2)
    assert redis_store.recent(*w1, 100) == Tally(2, 1, 1, 0)


class TimedOutAfterApplying(RedisGuardStore):
    """A Redis store whose next `timeouts` adds are applied, then time out: the reply was
    lost, as when the server is slow to answer."""

    timeouts = 0

    def add(self, flush: Flush) -> None:
        super().add(flush)
        if self.timeouts:
            self.timeouts -= 1
            raise redis.TimeoutError("Timeout reading from socket")


def test_a_flush_applied_before_its_timeout_is_counted_once(redis_url: str) -> None:
    client = connect(redis_url)
    client.flushdb()
    store = TimedOutAfterApplying(client, DEPTH)
    guard = guard_on(store)
    store.timeouts = 2
    for outcome in ("reject", "reject", "accept"):
        guard.count(decided(outcome, "v1"))
    asyncio.run(guard.flush_now())  # applied, timed out
    guard.count(decided("review", "v1"))
    asyncio.run(guard.flush_now())  # the same flush again: applied already, timed out
    for _ in range(2):
        asyncio.run(guard.flush_now())
    assert store.totals("transfer", "ruleset", "v1") == Tally(4, 1, 1, 2)
    assert store.recent("transfer", "ruleset", "v1", 100) == Tally(4, 1, 1, 2)
    client.close()


def test_a_flush_cut_off_between_versions_is_completed_once(
        redis_store: RedisGuardStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = redis_store._caller.run

    def first_call_then_timeout(calls: list[Any]) -> list[Any]:
        run(calls[:1])
        raise redis.TimeoutError("Timeout reading from socket")

    guard = guard_on(redis_store)
    for decision in (decided("reject", "v1", models={"fraud": "m1"}),
                     decided("accept", "v1", models={"fraud": "m1"})):
        guard.count(decision)
    monkeypatch.setattr(redis_store._caller, "run", first_call_then_timeout)
    asyncio.run(guard.flush_now())  # the ruleset's counts applied, the model's not
    assert redis_store.totals("transfer", "ruleset", "v1") == Tally(2, 1, 0, 1)
    assert redis_store.totals("transfer", "model:fraud", "m1") == Tally()
    monkeypatch.undo()
    asyncio.run(guard.flush_now())
    assert redis_store.totals("transfer", "ruleset", "v1") == Tally(2, 1, 0, 1)
    assert redis_store.totals("transfer", "model:fraud", "m1") == Tally(2, 1, 0, 1)
    assert redis_store.recent("transfer", "ruleset", "v1", 100) == Tally(2, 1, 0, 1)


@pytest.mark.parametrize(("lost", "applied"), [
    ("rolling_back", True),  # the rollback is this worker's, though the reply was lost
    ("rolled_back", True),  # rolled back and recorded, the reply lost
    ("rolled_back", False),  # rolled back, not recorded
])
def test_a_verdict_whose_reply_was_lost_is_carried_through_once(
        store: GuardStore, monkeypatch: pytest.MonkeyPatch, lost: str,
        applied: bool) -> None:
    calls: list[tuple[str, str, str]] = []

    def rollback(scene: str, version: str, previous: str) -> bool:
        calls.append((scene, version, previous))
        return True

    registry = CollectorRegistry()
    guard = RolloutGuard(GuardSettings(decisions=20), store, ["transfer"],
                         Counter("rollbacks", "", ["scene", "kind"], registry=registry))
    guard.register_rollback("ruleset", rollback)
    store.add(flush({("transfer", "ruleset", "v1"): Tally(30, 30, 0, 0)}))
    guard.on_version_live("transfer", "ruleset", "v2", "v1")
    store.add(flush({("transfer", "ruleset", "v2"): Tally(20, 0, 0, 20)}))
    conclude = store.conclude

    def reply_lost(watch: Watch, expect: str, state: str, verdict: Mapping[str, Any],
                   *args: Any, **kwargs: Any) -> bool:
        if state != lost:
            return conclude(watch, expect, state, verdict, *args, **kwargs)
        monkeypatch.undo()  # once
        if applied:
            conclude(watch, expect, state, verdict, *args, **kwargs)
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(store, "conclude", reply_lost)
    with pytest.raises(redis.TimeoutError):
        guard.review()
    guard.review()
    guard.review()
    assert calls == [("transfer", "v2", "v1")]
    [verdict] = guard.report("transfer")["verdicts"]
    assert (verdict["state"], verdict["decisions"]) == ("rolled_back", 20)
    assert guard.report("transfer")["watching"] == []
    assert registry.get_sample_value("rollbacks_total",
                                     {"scene": "transfer", "kind": "ruleset"}) == 1.0
