"""The seed's story on the example config: a stolen account drained into one mule.

Six transfers of 1000 from one account to one receiver inside an hour: the sixth trips
`mule_drain` (count > 5, sum > 5000, at most two receivers), the fifth does not.  A
seventh, an hour after the first ones, counts only what is still inside the window.
The fraud model sees nothing alarming in the story (its score stays under the review rule's
0.3): the rule catches the drain.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.oracle import Oracle
from tests.streams import BASE_TS, MIN, assert_same

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "riskengine" / "examples" / "config.yaml"

COUNT = "count(pay_account.history,1h)"
SUM = "sum(amount#rcv_account.history,1h)"
DISTINCT = "count_distinct(rcv_account#pay_account.history,1h)"
MODEL = "model:fraud_gbm"


def transfer(i: int, minute: int) -> dict[str, Any]:
    return {"event_id": f"seed-{i}", "timestamp": BASE_TS + minute * MIN,
            "pay_account": "acct-victim", "rcv_account": "acct-mule", "amount": 1000.0,
            "device_id": "dev-ok-0042", "ip": "192.0.2.10"}


# six transfers ten minutes apart, then one 70 minutes after the first
STORY = [transfer(i, 10 * i) for i in range(6)] + [transfer(6, 70)]


def expected_features(k: int, seventh: bool = False) -> dict[str, Any]:
    """By hand: k transfers of 1000 from the victim to the mule are in the 1h window."""
    return {
        COUNT: k,
        SUM: 1000.0 * k,
        DISTINCT: 1,
        "avg_amount_24h": 1000.0,
        "max_amount_24h": 1000.0,
        "stddev_amount_24h": 0.0,
        "pair_count_30d": 7 if seventh else k,   # 30 days: nothing has left
        "small_tx_device_10m": 0,                # `amount < 10` filters every transfer
        "accounts_per_device_1h": 1,
        "account_device_30d": 7 if seventh else k,
        "payments_24h": 7 if seventh else k,
        "receiver_payments_30d": 7 if seventh else k,
    }


def without_model(features: dict[str, Any]) -> dict[str, Any]:
    """The features computed by hand; the model's score is checked apart (the oracle test
    recomputes it from the model file)."""
    assert 0.0 <= features[MODEL] < 0.3
    return {k: v for k, v in features.items() if k != MODEL}


def rule_ids(hits: Any) -> list[str]:
    return [h.rule_id for h in hits]


@pytest.fixture
def decisions() -> list[Any]:
    from riskengine import Engine

    engine = Engine.from_config(EXAMPLE_CONFIG)
    return [engine.evaluate("transfer", copy.deepcopy(e)) for e in STORY]


def test_sixth_transfer_is_rejected_as_mule_drain(decisions: list[Any]) -> None:
    for k, d in enumerate(decisions[:5], start=1):
        assert "mule_drain" not in rule_ids(d.hits), k
        assert d.decision == "accept" and d.score == 0
        assert without_model(d.features) == expected_features(k)
        assert d.late is False
    sixth = decisions[5]
    assert without_model(sixth.features) == expected_features(6)
    assert rule_ids(sixth.hits) == ["mule_drain"]
    assert sixth.decision == "reject" and sixth.score == 100
    assert sixth.to_dict()["decision"] == "reject"


def test_after_the_hour_only_the_window_counts(decisions: list[Any]) -> None:
    # t = first + 70 min: the transfers at 0 and 10 min are out (10 min is exactly 1h
    # older, and an event exactly W older is out); 20, 30, 40, 50 and itself are in.
    seventh = decisions[6]
    assert without_model(seventh.features) == expected_features(5, seventh=True)
    assert seventh.decision == "accept" and rule_ids(seventh.hits) == []
    assert seventh.late is False


def test_oracle_agrees_on_the_story() -> None:
    from riskengine import Engine

    scene = yaml.safe_load(EXAMPLE_CONFIG.read_text())["scenes"]["transfer"]
    oracle = Oracle.from_scene(scene, base_dir=str(EXAMPLE_CONFIG.parent))
    engine = Engine.from_config(EXAMPLE_CONFIG)
    for i, event in enumerate(STORY):
        expected = oracle.feed(copy.deepcopy(event))
        assert without_model(expected.features) == expected_features(
            5 if i == 6 else i + 1, seventh=i == 6)
        assert_same(i, event, expected, engine.evaluate("transfer", copy.deepcopy(event)))
