"""The live comparison on a small crafted stream, every figure checked by hand, on
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from riskengine.batch.experiment_report import compare_experiments
from riskengine.decisionlog import DecisionLog
from riskengine.decisionlog.labels import parse_label
from tests.decisionlog.logsupport import BASE_TS, record, write_all


def _hit(rule: str) -> dict[str, Any]:
    return {"rule_id": rule, "reason": "", "score": 0, "action": None}


def decided(lsn: int, *, arm: str, decision: str, hits: tuple[str, ...],
            other: str, other_decision: str, other_hits: list[str], amount: float,
            latency: float, experiment: str | None = "xA") -> Any:
    """A logged decision of an experiment with two arms: `arm` answered, `other` did not."""
    document = {"event_id": f"ev-{lsn}", "scene": "transfer", "decision": decision,
                "score": 0, "hits": [_hit(h) for h in hits], "shadow_hits": [],
                "rule_errors": [], "ruleset_version": f"r-{arm}", "latency_ms": latency,
                "timestamp": BASE_TS + lsn * 1000, "arm": arm, "experiment": experiment,
                "arms": {} if experiment is None else {other: {
                    "mode": "decide", "version": f"r-{other}", "decision": other_decision,
                    "score": 0, "hits": other_hits, "shadow_hits": [], "rule_errors": []}}}
    event = {"event_id": f"ev-{lsn}", "timestamp": BASE_TS + lsn * 1000, "amount": amount}
    return record(lsn, decision=decision, latency_ms=latency, document=document, event=event)


STREAM = [
    decided(1, arm="champion", decision="accept", hits=(), other="strict",
            other_decision="reject", other_hits=["big"], amount=100.0, latency=1.0),
    decided(2, arm="strict", decision="reject", hits=("big",), other="champion",
            other_decision="accept", other_hits=[], amount=50.0, latency=3.0),
    decided(3, arm="champion", decision="review", hits=("r1",), other="strict",
            other_decision="reject", other_hits=["big", "r1"], amount=200.0, latency=2.0),
    decided(4, arm="champion", decision="accept", hits=(), other="strict",
            other_decision="accept", other_hits=[], amount=7.0, latency=9.0,
            experiment=None),
    decided(5, arm="champion", decision="accept", hits=(), other="strict",
            other_decision="accept", other_hits=[], amount=10.0, latency=4.0),
]


def test_the_report_of_a_crafted_stream(log: DecisionLog) -> None:
    log.add_labels([parse_label({"event_id": "ev-1", "label": "fraud"}, received_at=1)])
    write_all(log, STREAM)
    log.add_labels([parse_label({"event_id": e, "label": name}, received_at=2)
                    for e, name in (("ev-2", "legit"), ("ev-3", "mule_drain"),
                                    ("ev-4", "fraud"))])
    report = compare_experiments(log, "transfer", chunk_size=2)
    assert report["without_experiment"] == 1
    (tally,) = report["experiments"]
    assert tally["version"] == "xA"
    assert (tally["first_event"], tally["last_event"]) == (BASE_TS + 1000, BASE_TS + 5000)
    assert tally["ruleset_versions"] == {"champion": ["r-champion"], "strict": ["r-strict"]}
    doc = tally["comparison"]
    assert doc["arms"] == ["champion", "strict"] and doc["events"] == 4
    assert doc["decisions"]["champion"] == {"accept": 3, "review": 1, "reject": 0}
    assert doc["decisions"]["strict"] == {"accept": 1, "review": 0, "reject": 3}
    assert doc["answered"] == {"champion": 3, "strict": 1}
    champion_latency = doc["latency_ms"]["champion"]
    assert champion_latency["count"] == 3 and champion_latency["max"] == 4.0
    assert champion_latency["mean"] == pytest.approx(7.0 / 3)
    assert champion_latency["p50"] == pytest.approx(2.0, rel=0.022)
    assert doc["latency_ms"]["strict"]["mean"] == 3.0
    assert doc["labels"] == {"legit": 1, "fraud": 1, "mule_drain": 1}
    assert doc["positives"] == 2
    assert doc["money"] == {"positive_amount": 300.0, "positives_without_amount": 0,
                            "caught": {"champion": 200.0, "strict": 300.0},
                            "blocked": {"champion": 0.0, "strict": 300.0}}
    assert doc["detection"]["champion"] == {"precision": 1.0, "recall": 0.5,
                                            "f1": pytest.approx(2 / 3)}
    assert doc["detection"]["strict"]["precision"] == pytest.approx(2 / 3)
    assert doc["detection"]["strict"]["recall"] == 1.0
    rules = {rule["rule_id"]: rule for rule in doc["rules"]}
    assert rules["big"]["money"]["strict"] == {"caught": 300.0, "blocked": 300.0}
    assert rules["r1"]["money"] == {"champion": {"caught": 200.0, "blocked": 0.0},
                                    "strict": {"caught": 200.0, "blocked": 200.0}}
    steps = {(t["from"], t["to"]): t for t in doc["transitions"]["strict"]}
    assert steps[("accept", "reject")]["count"] == 2
    assert steps[("accept", "reject")]["samples"] == ["ev-1", "ev-2"]
    assert steps[("review", "reject")]["count"] == 1


def test_the_window_and_versions_split_the_report(log: DecisionLog) -> None:
    write_all(log, [*STREAM, decided(6, arm="strict", decision="reject", hits=("big",),
                                     other="champion", other_decision="accept",
                                     other_hits=[], amount=1.0, latency=1.0,
                                     experiment="xB")])
    report = compare_experiments(log, "transfer", since=BASE_TS + 3000)
    assert [t["version"] for t in report["experiments"]] == ["xB", "xA"]
    assert [t["comparison"]["events"] for t in report["experiments"]] == [1, 2]
    assert report["experiments"][1]["comparison"]["labelled"] == 0
    assert "money" not in report["experiments"][1]["comparison"]
    assert compare_experiments(log, "login")["experiments"] == []
