"""Engine API: decisions, idempotency, refusals that change nothing, snapshots."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from riskengine import Engine
from riskengine.exceptions import (
    ConfigError,
    EventValidationError,
    RuleCompileError,
    SnapshotError,
    UnknownSceneError,
)

TS = 1_700_000_000_000


def transfer(i: int, **fields: Any) -> dict[str, Any]:
    event = {"event_id": f"t{i}", "timestamp": TS + i * 1000, "pay_account": "A",
             "rcv_account": "M", "amount": 1000.0, "device_id": "d-ok"}
    event.update(fields)
    return event


def test_example_config_loads_with_both_scenes() -> None:
    engine = Engine.from_config(None)
    assert engine.scenes == ("transfer", "login")


def test_decision_is_json_ready() -> None:
    decision = Engine.from_config(None).evaluate("transfer", transfer(1))
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["decision"] == "accept" and data["event_id"] == "t1"
    assert data["features"]["count(pay_account.history,1h)"] == 1
    assert data["ruleset_version"].startswith("r") and data["late"] is False


def test_block_list_hit_rejects_and_is_reported() -> None:
    decision = Engine.from_config(None).evaluate("transfer",
                                                 transfer(1, device_id="dev-blocked-0001"))
    assert decision.decision == "reject"
    assert decision.list_hits == ("blocked_devices",)
    assert "blocked_device" in decision.hit_ids


def test_list_expiry_follows_event_time() -> None:
    engine = Engine.from_config(None)
    before = engine.evaluate("transfer", transfer(1, device_id="dev-blocked-0003"))
    after = engine.evaluate("transfer", transfer(2, device_id="dev-blocked-0003",
                                                 timestamp="2030-01-01T00:00:00Z"))
    assert before.list_hits == ("blocked_devices",) and after.list_hits == ()


def test_duplicate_event_id_returns_the_stored_decision_and_changes_nothing() -> None:
    engine = Engine.from_config(None)
    first = engine.evaluate("transfer", transfer(1))
    again = engine.evaluate("transfer", transfer(1, amount=999_999.0))
    assert again.duplicate and not first.duplicate
    assert {**again.to_dict(), "duplicate": False} == first.to_dict()
    assert again.to_dict()["duplicate"] is True
    nxt = engine.evaluate("transfer", transfer(2))
    assert nxt.features["count(pay_account.history,1h)"] == 2
    assert nxt.lsn == first.lsn + 1


def test_unknown_scene() -> None:
    with pytest.raises(UnknownSceneError, match="unknown scene 'payout'"):
        Engine.from_config(None).evaluate("payout", transfer(1))


@pytest.mark.parametrize("bad", [
    "not an object", [1, 2], None,
    {"timestamp": TS, "pay_account": "A", "rcv_account": "M"},            # amount missing
    {"timestamp": TS, "pay_account": "A", "rcv_account": "M", "amount": "10"},
    {"timestamp": "soon", "pay_account": "A", "rcv_account": "M", "amount": 1.0},
    {"timestamp": TS, "pay_account": ["A"], "rcv_account": "M", "amount": 1.0},
    {"timestamp": TS, "pay_account": "A", "rcv_account": "M", "amount": 1e300},
    {"timestamp": TS, "pay_account": "A" * 10, "rcv_account": "M", "amount": 1.0,
     "event_id": {"x": 1}},
])
def test_refused_events_change_nothing(bad: Any) -> None:
    engine = Engine.from_config(None)
    engine.evaluate("transfer", transfer(1))
    before = (engine.lsn, engine.stats())
    with pytest.raises(EventValidationError):
        engine.evaluate("transfer", bad)
    assert (engine.lsn, engine.stats()) == before
    assert engine.evaluate("transfer", transfer(2)).features[
        "count(pay_account.history,1h)"] == 2


def test_huge_payload_is_decided_without_harm() -> None:
    engine = Engine.from_config(None)
    decision = engine.evaluate("transfer", transfer(1, memo="x" * 1_000_000,
                                                    tags=list(range(10_000))))
    assert decision.decision == "accept"


def test_evaluate_many_validates_everything_first() -> None:
    engine = Engine.from_config(None)
    events = [transfer(i) for i in range(5)]
    events[3] = {**events[3], "amount": "lots"}
    with pytest.raises(EventValidationError, match="event 3: field 'amount'"):
        engine.evaluate_many("transfer", events)
    assert engine.lsn == 0
    decisions = engine.evaluate_many("transfer", [transfer(i) for i in range(7)])
    assert [d.decision for d in decisions] == ["accept"] * 5 + ["reject"] * 2


def test_activate_ruleset_is_all_or_nothing() -> None:
    engine = Engine.from_config(None)
    live = engine.ruleset("transfer")
    with pytest.raises(RuleCompileError, match="'broken'"):
        engine.activate_ruleset("transfer", [{"id": "broken", "when": "amount >", "score": 1}],
                                {"review_at": 1})
    assert engine.ruleset("transfer") is live
    new = engine.activate_ruleset("transfer", [{"id": "big", "when": "amount > 10",
                                                "action": "review"}], {})
    decision = engine.evaluate("transfer", transfer(1))
    assert decision.decision == "review" and decision.ruleset_version == new.version


@pytest.mark.parametrize(("config", "message"), [
    ({}, "'scenes'"),
    ({"scenes": {"s": {"features": ["count(a.history,1h)"], "colour": 1}}}, "unknown keys"),
    ({"scenes": {"s": {"features": ["count(a.hist,1h)"]}}}, "scene 's': feature"),
    ({"scenes": {"s": {"features": ["count(a.history,1h)", "count(a.history,1h)"]}}},
     "two features"),
    ({"scenes": {"s": {"lateness": "soon"}}}, "lateness"),
    ({"scenes": {"s": {"lists": [{"list": "nope", "field": "ip"}]}}}, "unknown list 'nope'"),
    ({"scenes": {"s": {"rules": [{"id": "r", "when": "__import__('os')", "score": 1}]}}},
     "rule 'r'"),
    ({"scenes": {"s": {"rules": [{"id": "r", "when": "x > 1", "score": 1}],
                       "features": [{"func": "count", "by": ["a"], "window": "1h",
                                     "where": "open('f')"}]}}}, "where"),
    ({"scenes": {"bad scene!": {}}}, "scene names"),
    ({"scenes": {"s": {"idempotency_max": 0}}}, "idempotency_max"),
])
def test_invalid_configs_are_refused_clearly(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Engine.from_config(config)
    assert message in str(info.value)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        Engine.from_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenes: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Engine.from_config(bad)


def test_no_drift_after_many_add_evict_steps() -> None:
    config = {"scenes": {"s": {"features": ["sum(v#a.history,1s)", "avg(v#a.history,1s)"]}}}
    engine = Engine.from_config(config)
    rng = random.Random(5)
    window: list[int] = []
    values = [0.1, 0.2, 0.3, 1e-6, 123456.789, -0.7, 99.99]
    for i in range(200_000):
        v = rng.choice(values)
        d = engine.evaluate("s", {"event_id": str(i), "timestamp": TS + i * 100, "a": "k",
                                  "v": v})
        window.append(round(v * 1_000_000))
        if len(window) > 10:
            window.pop(0)
    assert d.features["sum(v#a.history,1s)"] == sum(window) / 1_000_000
    assert d.features["avg(v#a.history,1s)"] == sum(window) / (len(window) * 1_000_000)


def test_snapshot_is_atomic_and_checked(tmp_path: Path) -> None:
    engine = Engine.from_config(None)
    for i in range(5):
        engine.evaluate("transfer", transfer(i))
    path = engine.snapshot(tmp_path / "state.snap")
    assert [p.name for p in tmp_path.iterdir()] == ["state.snap"]
    restored = Engine.from_config(None).restore(path)
    assert restored.lsn == engine.lsn
    assert restored.evaluate("transfer", transfer(5)).hit_ids == \
        engine.evaluate("transfer", transfer(5)).hit_ids == ["mule_drain"]
    junk = tmp_path / "junk.snap"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(SnapshotError):
        Engine.from_config(None).restore(junk)
    with pytest.raises(SnapshotError):
        Engine.from_config(None).restore(tmp_path / "missing.snap")


def test_changed_feature_definition_starts_fresh_after_restore(tmp_path: Path) -> None:
    old = {"scenes": {"s": {"features": ["count(a.history,1h)", "sum(v#a.history,1h)"]}}}
    new = {"scenes": {"s": {"features": ["count(a.history,1h)", "sum(v#a.history,2h)"]}}}
    engine = Engine.from_config(old)
    for i in range(3):
        engine.evaluate("s", {"timestamp": TS + i, "a": "k", "v": 1.0})
    path = engine.snapshot(tmp_path / "s.snap")
    restored = Engine.from_config(new).restore(path)
    d = restored.evaluate("s", {"timestamp": TS + 10, "a": "k", "v": 1.0})
    assert d.features["sum(v#a.history,2h)"] == 1.0  # new definition: fresh state
    same = Engine.from_config(old).restore(path).evaluate(
        "s", {"timestamp": TS + 10, "a": "k", "v": 1.0})
    assert same.features == {"count(a.history,1h)": 4, "sum(v#a.history,1h)": 4.0}


def test_entity_values_equal_what_a_filtered_out_event_at_the_clock_would_read() -> None:
    """`Engine.entity` reads the window ending at the scene clock G, like the oracle's
    value for an event at G that is not itself counted."""
    engine = Engine.from_config(None)
    base = 1_767_571_200_000
    for i, (t, amount) in enumerate([(0, 10.0), (1_000, 20.0), (3_600_000, 30.0),
                                      (3_600_500, 40.0)]):
        engine.evaluate("transfer", {"event_id": f"x{i}", "timestamp": base + t,
                                     "pay_account": "P", "rcv_account": "R",
                                     "amount": amount})
    as_of, values = engine.entity("transfer", "pay_account", "P")
    assert as_of == base + 3_600_500
    assert values["count(pay_account.history,1h)"] == 3  # t=0 is exactly 1h old: out
    assert values["avg_amount_24h"] == 25.0
    assert values["max_amount_24h"] == 40.0
    assert engine.entity("transfer", "pay_account", "Q")[1][
        "count(pay_account.history,1h)"] == 0
    with pytest.raises(KeyError):
        engine.entity("transfer", "amount", "1")
