"""An engine on Redis state (`RedisState`) decides as the in-memory `Engine` does.

The example config (both scenes), generated transfers and logins, with late events,
disorder, null keys and duplicate ids; on one Redis and on a Redis Cluster.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest

from riskengine import Engine
from riskengine.config import load_config
from riskengine.decision import Decision
from riskengine.exceptions import (
    ConfigError,
    EventValidationError,
    SnapshotError,
    UnknownSceneError,
)
from riskengine.rules.ruleset import Hit
from riskengine.state.redis.backend import (
    RedisState,
    StateUnavailableError,
    redact,
)
from riskengine.state.redis.codec import RedisStateError
from riskengine.state.redis.functions import Client
from riskengine.state.redis.records import DecisionRecords
from riskengine.synth import generate_transfers

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
COMPARED = ("event_id", "scene", "decision", "score", "hits", "shadow_hits", "features",
            "list_hits", "ruleset_version", "late", "degraded", "timestamp", "rule_errors")


@pytest.fixture
def engines(redis_url: str, client: Client) -> Iterator[list[Engine]]:
    """engines on Redis state (`RedisState`) on an empty Redis, closed after the test."""
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.close()


@pytest.fixture
def make(redis_url: str, engines: list[Engine]) -> Any:
    def build(**options: Any) -> Engine:
        state = RedisState.connect(redis_url, **{"state_timeout_ms": 5000, **options})
        engine = Engine.from_config(None, state=state)
        engines.append(engine)
        return engine
    return build


def essence(decision: Decision) -> dict[str, Any]:
    """Everything but latency and LSN."""
    return {name: getattr(decision, name) for name in COMPARED}


def with_late_and_duplicates(events: list[dict[str, Any]], seed: int, lateness_ms: int
                             ) -> list[dict[str, Any]]:
    """`events` in order, plus copies sent again (same id) and copies under a new id
    whose time is well behind the allowed lateness (late on their keys)."""
    rng = random.Random(seed)
    sent: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        sent.append(event)
        if i > 20 and rng.random() < 0.06:
            sent.append(dict(sent[rng.randrange(max(0, len(sent) - 300), len(sent))]))
        if i > 20 and rng.random() < 0.06:
            late = dict(events[rng.randrange(i - 20, i)])
            late["event_id"] = f"late-{i}"
            late["timestamp"] -= lateness_ms + rng.randrange(MIN, 20 * MIN)
            sent.append(late)
    return sent


def logins(n: int, seed: int) -> list[dict[str, Any]]:
    """Logins of a small population: failure bursts, new devices, shared IPs, nulls."""
    rng = random.Random(seed)
    accounts = [f"u{i}" for i in range(40)]
    t = T0
    out = []
    for i in range(n):
        t += rng.randrange(0, 20_000)
        account = rng.choice(accounts[:5] if rng.random() < 0.3 else accounts)
        event: dict[str, Any] = {
            "event_id": f"login-{i}",
            "timestamp": t - rng.randrange(0, 90_000),  # disorder inside the lateness
            "account": account,
            "result": "fail" if rng.random() < 0.35 else "ok",
            "device_id": rng.choice([None, f"d-{account}", f"d{rng.randrange(30)}"]),
            "ip": rng.choice([None, "203.0.113.66", *(f"10.0.0.{k}" for k in range(8))]),
        }
        out.append(event)
    return out


def run_both(shared: Engine, memory: Engine, scene: str,
             events: list[dict[str, Any]]) -> list[Decision]:
    decisions = []
    for event in events:
        expected = memory.evaluate(scene, event)
        got = shared.evaluate(scene, event)
        assert essence(got) == essence(expected), event
        decisions.append(got)
    return decisions


def test_same_decisions_as_the_memory_engine(make: Any) -> None:
    shared = make()
    memory = Engine.from_config(None)
    transfers = with_late_and_duplicates(list(generate_transfers(3000, 11)), 1, 5 * MIN)
    login_events = with_late_and_duplicates(logins(1500, 2), 3, 2 * MIN)
    decided = run_both(shared, memory, "transfer", transfers)
    decided += run_both(shared, memory, "login", login_events)
    assert sum(d.late for d in decided) > 100
    times = Counter(d.event_id for d in decided)
    assert any(d.late and times[d.event_id] > 1 for d in decided)  # a late one sent again
    assert {d.decision for d in decided} == {"accept", "review", "reject"}
    assert any(d.list_hits for d in decided) and any(d.shadow_hits for d in decided)
    stats = shared.stats()
    assert stats["transfer"]["duplicates"] > 20 and stats["login"]["duplicates"] > 10
    assert stats["transfer"]["degraded_decisions"] == 0
    lsns = [d.lsn for d in decided]
    assert len(set(lsns)) + stats["transfer"]["duplicates"] + stats["login"]["duplicates"] \
        == len(lsns)


def test_batches_match_single_events(make: Any) -> None:
    shared = make()
    memory = Engine.from_config(None)
    events = with_late_and_duplicates(list(generate_transfers(400, 5)), 4, 5 * MIN)
    got: list[Decision] = []
    for start in range(0, len(events), 64):
        got += shared.evaluate_many("transfer", events[start:start + 64])
    expected = memory.evaluate_many("transfer", events)
    assert [essence(d) for d in got] == [essence(d) for d in expected]
    with pytest.raises(EventValidationError, match="event 1"):
        shared.evaluate_many("transfer", [events[0], {"timestamp": T0}])


def test_workers_share_lsns_ids_and_state(make: Any) -> None:
    """Two engines on one Redis: one arrival order of LSNs, one count, a duplicate seen
    by the other."""
    a, b = make(), make()
    base = {"pay_account": "A", "rcv_account": "M", "amount": 1000.0}
    decisions = [(a if i % 3 else b).evaluate(
        "transfer", {**base, "event_id": f"e{i}", "timestamp": T0 + i * 1000})
        for i in range(40)]
    assert [d.lsn for d in decisions] == list(range(1, 41))
    assert [d.features["count(pay_account.history,1h)"] for d in decisions] == \
        list(range(1, 41))
    assert decisions[-1].decision == "reject"
    again = a.evaluate("transfer", {**base, "event_id": "e0", "timestamp": T0})
    assert essence(again) == essence(decisions[0]) and again.lsn == decisions[0].lsn
    assert a.stats()["transfer"]["duplicates"] == 1


def test_decision_records_round_trip() -> None:
    decision = Decision("e-1", "transfer", "review", 40.0,
                        (Hit("r1", "why", 40.0, None),), (Hit("s", "", 1.5, "reject"),),
                        {"a": 2**70, "b": "\ud800x", "c": None, "d": 0.1, "e": True},
                        ("blocked_ips",), "v1", True, False, 1.25, 17, T0, ("bad_rule",))
    records = DecisionRecords("transfer", ("a", "b", "c", "d", "e"))
    again = replace(decision, duplicate=True)  # a record is read back as the stored answer
    assert records.decode(f"{T0}|".encode() + records.encode(decision), "e-1") == again
    plain = Decision("e-2", "login", "accept", 0.0, (), (), {"n": 3}, (), "v", False, False,
                     0.5, 1, T0)
    login = DecisionRecords("login", ("n",))
    raw = f"{T0}|".encode() + login.encode(plain)
    assert login.decode(raw, "e-2") == replace(plain, duplicate=True)
    assert len(raw) < len(orjson.dumps(plain.to_dict())) / 2


def test_a_record_written_under_other_feature_names_decodes_with_them(make: Any) -> None:
    engine = make()  # registers the scene's names in Redis
    old = DecisionRecords("login", ("old_feature",), engine.state.client)
    old.register()
    plain = Decision("e-9", "login", "accept", 0.0, (), (), {"old_feature": 7}, (), "v",
                     False, False, 0.5, 1, T0)
    raw = f"{T0}|".encode() + old.encode(plain)
    now = DecisionRecords("login", engine.scene("login").feature_names, engine.state.client)
    assert now.decode(raw, "e-9") == replace(plain, duplicate=True)  # names by tag
    stranger = DecisionRecords("login", ("x",))
    with pytest.raises(RedisStateError, match="does not hold"):
        stranger.decode(f"{T0}|".encode() + DecisionRecords("login", ("y",)).encode(
            Decision("e", "login", "accept", 0.0, (), (), {"y": 1}, (), "v", False, False,
                     0.5, 1, T0)), "e")


def test_api_around_the_shared_state(make: Any, tmp_path: Any) -> None:
    engine = make()
    assert engine.scenes == ("transfer", "login") and engine.lsn == 0
    with pytest.raises(UnknownSceneError):
        engine.evaluate("nope", {"timestamp": T0})
    with pytest.raises(EventValidationError):
        engine.evaluate("transfer", {"timestamp": T0, "pay_account": "A"})
    assert engine.lsn == 0
    ruleset = engine.activate_ruleset("transfer", [{"id": "big", "when": "amount > 10",
                                                    "action": "reject"}], {}, "v-big")
    assert engine.ruleset("transfer") is ruleset
    decision = engine.evaluate("transfer", {"timestamp": T0, "pay_account": "A",
                                            "rcv_account": "B", "amount": 50.0})
    assert (decision.decision, decision.ruleset_version, engine.lsn) == ("reject", "v-big", 1)
    with pytest.raises(SnapshotError, match="Redis"):
        engine.snapshot(tmp_path / "s.pkl")
    with pytest.raises(SnapshotError, match="Redis"):
        engine.restore(tmp_path / "s.pkl")
    as_of, features = engine.entity("transfer", "pay_account", "A")  # see the entity test
    assert as_of is not None and "count(pay_account.history,1h)" in features
    health = engine.state.state_health()
    assert health["breaker"]["state"] == "closed" and health["last_lsn"] == 1


def test_fallback_is_a_validated_scene_setting() -> None:
    raw: dict[str, Any] = {"scenes": {"s": {"features": ["count(a.history,1h)"]}}}
    assert load_config(raw).scenes["s"].fallback == "review"
    raw["scenes"]["s"]["fallback"] = "reject"
    assert load_config(raw).scenes["s"].fallback == "reject"
    raw["scenes"]["s"]["fallback"] = "deny"
    with pytest.raises(ConfigError, match="fallback must be one of accept, review, reject"):
        load_config(raw)


def test_state_urls() -> None:
    assert redact("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    with pytest.raises(StateUnavailableError, match="expected redis://"):
        Engine.from_config(None, state=RedisState.connect("http://h:1/0"))
    with pytest.raises(StateUnavailableError, match="positive"):
        Engine.from_config(None, state=RedisState.connect("redis://h:1/0", state_timeout_ms=0))


def test_entity_reads_equal_the_in_memory_engine(make: Any) -> None:
    """`entity` reads the features keyed by one field at the shared clock, as the
    in-memory engine does, counting nothing; unknown and forgotten keys read empty."""
    shared = make(guard_depth=2)
    memory = Engine.from_config(None)
    events = [{k: v for k, v in e.items() if k != "label"}
              for e in generate_transfers(1500, 19)]
    for event in events:
        shared.evaluate("transfer", event)
        memory.evaluate("transfer", event)
    probes = [("pay_account", e["pay_account"]) for e in events[-40:]] + \
        [("rcv_account", e["rcv_account"]) for e in events[-40:]] + \
        [("device_id", e["device_id"]) for e in events[-40:] if e.get("device_id")] + \
        [("pay_account", "nobody"), ("pay_account", events[0]["pay_account"])]
    for field, value in probes:
        assert shared.entity("transfer", field, value) == \
            memory.entity("transfer", field, value), (field, value)
    clock, before = shared.entity("transfer", "pay_account", events[-1]["pay_account"])
    assert shared.entity("transfer", "pay_account", events[-1]["pay_account"]) == \
        (clock, before)  # reading counted nothing
    with pytest.raises(KeyError):
        shared.entity("transfer", "amount", "5")
    with pytest.raises(UnknownSceneError):
        shared.entity("nope", "pay_account", "A")


def test_an_integer_key_is_found_from_a_string(redis_url: str,
                                               engines: list[Engine]) -> None:
    config = {"scenes": {"s": {"schema": {"acct": "int"}, "features": [
        {"name": "n", "func": "count", "by": ["acct"], "window": "1h"}]}}}
    shared = Engine.from_config(config,
                                state=RedisState.connect(redis_url, state_timeout_ms=5000))
    engines.append(shared)
    memory = Engine.from_config(config)
    for i in range(3):
        event = {"event_id": f"i{i}", "timestamp": T0 + i, "acct": 12345}
        shared.evaluate("s", event)
        memory.evaluate("s", event)
    assert shared.entity("s", "acct", "12345") == memory.entity("s", "acct", "12345") == \
        (T0 + 2, {"n": 3})
