"""How many round trips to Redis a decision costs (docs in riskengine/state/redis/
backend.py): on one server two (the idempotency lookup, clock step, entities and patterns
in one atomic call; the remembering), one for a duplicate; on a cluster three (the clock
step beside the lookup; the entities and patterns, one pipeline per node; the
remembering). Counted at the client, with every feature kind and pattern of the example
configs, and the answers checked against the in-memory engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from riskengine import Engine
from riskengine.state.redis import connect, functions
from riskengine.state.redis.backend import RedisState
from riskengine.state.redis.idempotency import RedisDecisionStore
from tests.features.test_patterns import EXAMPLE as PATTERNS
from tests.features.test_patterns import T0

TRANSFERS = [
    {"pay_account": "P1", "rcv_account": "R1", "amount": 12.5, "device_id": "D1",
     "ip": "10.0.0.1"},
    {"pay_account": "P1", "rcv_account": "R2", "amount": 4.0, "device_id": "D1"},
    {"pay_account": "P2", "rcv_account": "R1", "amount": 2500.0},
    {"pay_account": "P1", "rcv_account": "R1", "amount": 7.25, "device_id": "D2"},
]
LOGINS = [{"account": "A", "kind": k} for k in ("login", "auth_fail", "auth_fail",
                                                "auth_fail", "withdraw", "view")]


class Counter:
    """Counts the client's round trips: on one server every send of a connection (one
    per command or pipeline, its replies read before the next); on a cluster every
    pipeline executed and every command sent alone (a pipeline's nodes are written
    before any reply is read: one round trip)."""

    def __init__(self) -> None:
        self.trips = 0


class CountingConnection(redis.Connection):
    counter = Counter()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.counter.trips += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def counted(redis_url: str, client: Any) -> Iterator[tuple[Any, Counter, bool]]:
    """A client on an empty Redis whose round trips are counted, its counter, and
    whether it is a cluster."""
    counter = Counter()
    if not redis_url.startswith("redis+cluster"):
        CountingConnection.counter = counter
        pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
        made: Any = redis.Redis(connection_pool=pool)
        yield made, counter, False
        made.close()
        return
    made = connect(redis_url)
    send, pipeline = made.execute_command, made.pipeline

    def counted_send(*args: Any, **options: Any) -> Any:
        counter.trips += 1
        return send(*args, **options)

    def counted_pipeline(*args: Any, **options: Any) -> Any:
        pipe = pipeline(*args, **options)
        execute = pipe.execute

        def counted_execute(*a: Any, **o: Any) -> Any:
            counter.trips += 1
            return execute(*a, **o)

        pipe.execute = counted_execute
        return pipe

    made.execute_command = counted_send
    made.pipeline = counted_pipeline
    yield made, counter, True
    made.close()


def trips_of(engine: Engine, counter: Counter, scene: str, event: dict[str, Any]
             ) -> tuple[int, Any]:
    before = counter.trips
    decision = engine.evaluate(scene, event)
    assert not decision.degraded
    return counter.trips - before, decision


@pytest.mark.parametrize(("config", "scene", "events"), [
    (None, "transfer", TRANSFERS), (PATTERNS, "account", LOGINS)])
def test_round_trips_per_decision(counted: tuple[Any, Counter, bool], config: Any,
                                  scene: str, events: list[dict[str, Any]]) -> None:
    client, counter, cluster = counted
    shared = Engine.from_config(config, state=RedisState(client, state_timeout_ms=60_000))
    memory = Engine.from_config(config)
    new = 3 if cluster else 2
    try:
        # the first decision also connects and loads the remembering script
        warm = {"event_id": "warm", "timestamp": T0 - 1, **events[0]}
        shared.evaluate(scene, dict(warm))
        memory.evaluate(scene, dict(warm))
        for i, fields in enumerate(events):
            event = {"event_id": f"e{i}", "timestamp": T0 + i * 1000, **fields}
            trips, decision = trips_of(shared, counter, scene, dict(event))
            expected = memory.evaluate(scene, dict(event))
            assert trips == new
            assert (decision.features, decision.late, decision.decision) == (
                expected.features, expected.late, expected.decision)
            # a duplicate: the lookup alone (on a cluster beside a clock step that did
            # not raise G, so nothing is put back)
            trips, duplicate = trips_of(shared, counter, scene, dict(event))
            assert trips == 1
            assert duplicate.duplicate and duplicate.features == decision.features
    finally:
        shared.close()


def test_a_duplicate_on_one_server_changes_nothing(standalone_client: Any) -> None:
    """Answered inside the one call, before its clock step: no LSN, no clock, no key."""
    engine = Engine.from_config(None, state=RedisState(standalone_client,
                                                       state_timeout_ms=60_000))
    try:
        event = {"event_id": "x", "timestamp": T0, **TRANSFERS[0]}
        first = engine.evaluate("transfer", dict(event))
        keys = {k: standalone_client.dump(k) for k in standalone_client.scan_iter()}
        clock = standalone_client.hgetall("re:{clock}")
        again = engine.evaluate("transfer", {**event, "timestamp": T0 + 3_600_000})
        assert again.duplicate and again.lsn == first.lsn == 1
        assert standalone_client.hgetall("re:{clock}") == clock
        assert {k: standalone_client.dump(k) for k in standalone_client.scan_iter()} == keys
    finally:
        engine.close()


def test_a_run_of_events_takes_two_round_trips_on_one_server(
        counted: tuple[Any, Counter, bool]) -> None:
    """`evaluate_many` (a batch, a tick of the service, a stream worker's poll): on one
    server every event's call in one round trip and every remembering in another; a run
    ends before an id seen earlier in it, whose repeat then finds the first decision. A
    cluster decides event by event. The answers are the in-memory engine's."""
    client, counter, cluster = counted
    shared = Engine.from_config(None, state=RedisState(client, state_timeout_ms=60_000))
    memory = Engine.from_config(None)
    try:
        warm = {"event_id": "warm", "timestamp": T0 - 1, **TRANSFERS[0]}
        shared.evaluate("transfer", dict(warm))
        memory.evaluate("transfer", dict(warm))
        distinct = [{"event_id": f"e{i}", "timestamp": T0 + i * 1000, **fields}
                    for i, fields in enumerate(TRANSFERS * 3)]
        distinct[5]["timestamp"] = T0 - 500  # out of order
        repeats = [distinct[0], {**distinct[1], "event_id": "n1", "timestamp": T0 + 20_000},
                   {**distinct[2], "event_id": "n2", "timestamp": T0 + 21_000},
                   {**distinct[2], "event_id": "n2", "timestamp": T0 + 21_000},
                   {**distinct[3], "event_id": "n3", "timestamp": T0 + 22_000}]
        for events, runs in ((distinct, [12]), (repeats, [3, 2])):
            before = counter.trips
            got = shared.evaluate_many("transfer", [dict(e) for e in events])
            expected = memory.evaluate_many("transfer", [dict(e) for e in events])
            assert [(d.event_id, d.features, d.late, d.decision, d.duplicate)
                    for d in got] == [
                (d.event_id, d.features, d.late, d.decision, d.duplicate)
                for d in expected]
            if not cluster:  # (a cluster's duplicate takes a clock step: an LSN gap)
                assert [d.lsn for d in got] == [d.lsn for d in expected]
            assert not any(d.degraded for d in got)
            fresh = sum(not d.duplicate for d in got)
            if cluster:
                assert counter.trips - before == 3 * fresh + (len(events) - fresh)
            else:
                assert counter.trips - before == 2 * len(runs)
        assert [d.duplicate for d in got] == [True, False, False, True, False]
    finally:
        shared.close()


def test_a_failed_round_trip_answers_its_whole_run_as_one_event(
        standalone_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The events' calls fail: every event of the run gets the fallback, and none is
    remembered (a retry is decided). The rememberings fail: every event gets its
    decision, none remembered, and a retry of the latest of an entity is answered from
    the entity's guard record, not counted twice."""
    engine = Engine.from_config(None, state=RedisState(standalone_client,
                                                       state_timeout_ms=60_000))
    events = [{"event_id": f"e{i}", "timestamp": T0 + i * 1000, **TRANSFERS[0]}
              for i in range(3)]
    try:
        engine.evaluate("transfer", {"event_id": "warm", "timestamp": T0 - 1,
                                     **TRANSFERS[2]})  # another payer

        def refused(*args: Any, **options: Any) -> Any:
            raise redis.exceptions.ConnectionError("Connection refused")

        monkeypatch.setattr(functions, "exchange", refused)
        down = engine.evaluate_many("transfer", [dict(e) for e in events])
        assert [(d.degraded, d.lsn) for d in down] == [(True, 0)] * 3
        monkeypatch.undo()
        monkeypatch.setattr(RedisDecisionStore, "remember_many", refused)
        lost = engine.evaluate_many("transfer", [dict(e) for e in events])
        assert [d.features["count(pay_account.history,1h)"] for d in lost] == [1, 2, 3]
        assert not any(d.degraded or d.duplicate for d in lost)
        assert engine.stats()["transfer"]["unremembered"] == 3
        monkeypatch.undo()
        again = engine.evaluate("transfer", dict(events[2]))
        assert again.features == lost[2].features and not again.degraded
        after = engine.evaluate("transfer", {**events[2], "event_id": "e3",
                                             "timestamp": T0 + 3000})
        assert after.features["count(pay_account.history,1h)"] == 4
    finally:
        engine.close()
