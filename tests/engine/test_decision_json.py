"""`Decision.to_json()` is `to_dict()` as orjson writes it, byte for byte, whatever the
decision holds: hits, shadow hits, list hits, model scores, experiment arms, duplicates,
late events, and strings that spell the JSON around them."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import orjson

from riskengine import Engine
from riskengine.decision import Decision
from riskengine.stream.codec import decision_message
from tests.example_config import example_config

T0 = 1_767_225_600_000
NASTY = ['x,"arms":[],"models":{}', '","arms":[],', "中文\u2028", "\\", '"', "\x00", "e+1"]


def decisions(engine: Engine, n: int, seed: int) -> list[Decision]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        event: dict[str, Any] = {
            "event_id": f"{rnd.choice(NASTY)}-{i}" if i % 7 == 0 else f"e{i % 150}",
            "timestamp": T0 + i * 1000 - rnd.choice([0, 0, 0, 600_000]),
            "pay_account": rnd.choice(["A", "B", rnd.choice(NASTY)]),
            "rcv_account": rnd.choice(["R1", "R2"]), "amount": rnd.choice([5.0, 1200.0, 9000.0]),
            "device_id": rnd.choice(["dev-blocked-0001", "d1", None])}
        out.append(engine.evaluate("transfer", event))
    return out


def test_to_json_is_to_dict_written_by_orjson() -> None:
    found = decisions(Engine.from_config(None), 600, seed=3)
    assert any(d.hits for d in found) and any(d.shadow_hits for d in found)
    assert any(d.list_hits for d in found) and any(d.duplicate for d in found)
    assert any(d.late for d in found)
    for decision in found:
        assert decision.to_json() == orjson.dumps(decision.to_dict())


def test_to_json_with_experiment_arms() -> None:
    raw = example_config()
    raw["scenes"]["transfer"]["experiment"] = {
        "key": "pay_account", "salt": "s", "split": {"champion": 50, "strict": 50},
        "challengers": {"strict": {"mode": "decide", "rules": [
            {"id": "big", "when": "amount >= 100", "action": "review", "reason": "big"}]},
            "watch": {"mode": "shadow", "rules": []}}}
    found = decisions(Engine.from_config(raw), 300, seed=4)
    assert all(d.arms for d in found if not d.duplicate)
    for decision in found:
        assert decision.to_json() == orjson.dumps(decision.to_dict())


def test_every_field_is_in_to_dict_in_order() -> None:
    decision = decisions(Engine.from_config(None), 1, seed=5)[0]
    assert [f.name for f in dataclasses.fields(Decision)] == list(decision.to_dict())


def test_the_stream_message_is_to_dict_with_its_source() -> None:
    """A stream worker's decision message: the decision's JSON with `source` and
    `redelivery` added, for every kind of decision above (arms included)."""
    raw = example_config()
    raw["scenes"]["transfer"]["experiment"] = {
        "key": "pay_account", "salt": "s", "split": {"champion": 50, "other": 50},
        "challengers": {"other": {"mode": "decide", "rules": []}}}
    found = (decisions(Engine.from_config(None), 300, seed=6)
             + decisions(Engine.from_config(raw), 100, seed=7))
    source = {"topic": 'a"b', "partition": 3, "offset": 17}
    for i, decision in enumerate(found):
        redelivery = i % 2 == 0
        expected = {**decision.to_dict(), "source": source, "redelivery": redelivery}
        assert orjson.loads(decision_message(decision, source, redelivery)) == \
            orjson.loads(orjson.dumps(expected))


def test_to_dict_is_a_copy_and_a_read_only_models_mapping_is_written() -> None:
    """`json_fields` shares the decision's containers; `to_dict` must not: changing what
    it returned leaves the decision (and its JSON) as it was. A `models` mapping that is
    not a dict (a library caller's) is written as an object."""
    from types import MappingProxyType

    decision = next(d for d in decisions(Engine.from_config(None), 200, seed=8)
                    if d.list_hits)
    before = decision.to_json()
    copy = decision.to_dict()
    copy["features"]["injected"] = 1
    copy["list_hits"].append("x")
    copy["rule_errors"].append("x")
    copy["models"]["m"] = "v1"
    assert decision.to_json() == before
    assert "injected" not in decision.features and "x" not in decision.list_hits
    proxied = dataclasses.replace(decision, models=MappingProxyType({"fraud": "v3"}))
    assert orjson.loads(proxied.to_json())["models"] == {"fraud": "v3"}
    assert proxied.to_json() == orjson.dumps(proxied.to_dict())
