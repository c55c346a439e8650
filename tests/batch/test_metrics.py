"""`ArmComparison`: counts per arm, transitions against the baseline, precision, recall and
F1, merges of partial accumulators."""

from __future__ import annotations

import pickle
import random

import pytest

from riskengine.batch.metrics import ArmComparison, ArmResult, Detection

DAY = 86_400_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z

ACCEPT = ArmResult("accept", 0.0)


def arm(decision: str, *hits: str, shadow: tuple[str, ...] = (), score: float = 0.0
        ) -> ArmResult:
    return ArmResult(decision, score, hits, shadow)


def random_events(seed: int, n: int) -> list[tuple[str, int, str | None, dict[str, ArmResult]]]:
    rng = random.Random(seed)
    rules = ["r1", "r2", "r3"]
    events = []
    for i in range(n):
        results = {}
        for name in ("live", "candidate"):
            hits = tuple(r for r in rules if rng.random() < 0.2)
            shadow = ("s1",) if rng.random() < 0.1 else ()
            results[name] = ArmResult(rng.choice(["accept", "accept", "review", "reject"]),
                                      10.0 * len(hits), hits, shadow,
                                      ("r3",) if rng.random() < 0.02 else ())
        label = rng.choice([None, "legit", "legit", "mule_drain", "card_testing"])
        events.append((f"e{seed}-{i}", T0 + rng.randrange(3 * DAY), label, results))
    return events


def fed(events: list[tuple[str, int, str | None, dict[str, ArmResult]]]) -> ArmComparison:
    comparison = ArmComparison(["live", "candidate"], samples=3,
                               rules={"live": {"r1": "active", "r2": "active"},
                                      "candidate": {"r2": "active", "r4": "shadow"}})
    for event in events:
        comparison.add(*event)
    return comparison


def test_merge_equals_one_accumulator_fed_everything() -> None:
    first, second, third = (random_events(seed, 400) for seed in (1, 2, 3))
    whole = fed(first + second + third).to_dict()
    assert fed(first).merge(fed(second)).merge(fed(third)).to_dict() == whole
    assert fed(third).merge(fed(first).merge(fed(second))).to_dict() == whole
    assert fed([]).merge(fed(first + second + third)).to_dict() == whole


def test_pickled_partials_merge_like_live_ones() -> None:
    first, second = random_events(4, 300), random_events(5, 300)
    partials = [pickle.loads(pickle.dumps(fed(part))) for part in (first, second)]
    assert partials[0].merge(partials[1]).to_dict() == fed(first + second).to_dict()


def test_merge_refuses_a_different_comparison() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        ArmComparison(["live", "candidate"]).merge(ArmComparison(["live", "other"]))
    with pytest.raises(ValueError, match="cannot merge"):
        ArmComparison(["a", "b"]).merge(ArmComparison(["a", "b"], baseline="b"))
    with pytest.raises(ValueError, match="baseline"):
        ArmComparison(["a", "b"], baseline="c")
    with pytest.raises(ValueError, match="distinct"):
        ArmComparison(["a", "a"])


def test_transitions_count_changes_against_the_baseline_with_the_earliest_samples() -> None:
    comparison = ArmComparison(["live", "candidate"], samples=2)
    comparison.add("late", T0 + 50, None, {"live": ACCEPT, "candidate": arm("review")})
    comparison.add("same", T0 + 10, None, {"live": ACCEPT, "candidate": ACCEPT})
    comparison.add("early", T0 + 5, None, {"live": ACCEPT, "candidate": arm("review")})
    comparison.add("first", T0 + 1, None, {"live": ACCEPT, "candidate": arm("review")})
    comparison.add("up", T0 + 7, None, {"live": arm("review"), "candidate": arm("reject")})
    data = comparison.to_dict()
    assert data["transitions"] == {"candidate": [
        {"from": "accept", "to": "review", "count": 3, "samples": ["first", "early"]},
        {"from": "review", "to": "reject", "count": 1, "samples": ["up"]},
    ]}
    assert data["changed"] == {"candidate": 4}
    assert data["decisions"] == {"live": {"accept": 4, "review": 1, "reject": 0},
                                 "candidate": {"accept": 1, "review": 3, "reject": 1}}
    assert data["alert_rate"] == {"live": 0.2, "candidate": 0.8}


def test_rule_hits_per_arm_and_their_change() -> None:
    comparison = ArmComparison(["live", "candidate"],
                               rules={"live": {"a": "active", "b": "shadow", "quiet": "active"},
                                      "candidate": {"a": "active", "b": "active",
                                                    "new": "active"}})
    comparison.add("e1", T0, None, {"live": arm("review", "a", shadow=("b",)),
                                    "candidate": arm("reject", "a", "b", "new")})
    comparison.add("e2", T0, None, {"live": arm("accept", shadow=("b",)),
                                    "candidate": arm("review", "b")})
    comparison.add("e3", T0, None, {"live": arm("accept", "undeclared"),
                                    "candidate": ACCEPT})
    rules = {r["rule_id"]: r for r in comparison.to_dict()["rules"]}
    assert list(rules) == ["a", "b", "quiet", "new", "undeclared"]
    assert rules["a"]["hits"] == {"live": 1, "candidate": 1}
    assert rules["b"]["mode"] == {"live": "shadow", "candidate": "active"}
    assert rules["b"]["hits"] == {"live": 2, "candidate": 2}
    assert rules["new"]["mode"] == {"live": None, "candidate": "active"}
    assert rules["new"]["change"] == {"candidate": 1}
    assert rules["quiet"]["hits"] == {"live": 0, "candidate": 0}
    assert rules["undeclared"]["mode"] == {"live": "active", "candidate": None}
    assert rules["undeclared"]["change"] == {"candidate": -1}
    assert "detection" not in rules["a"]


def test_precision_recall_and_f1_on_a_hand_labelled_input() -> None:
    comparison = ArmComparison(["live", "candidate"])
    rows = [  # label, live decision and hits, candidate decision and hits
        ("legit", arm("accept"), arm("review", "wide")),
        ("legit", arm("review", "narrow"), arm("review", "narrow", "wide")),
        ("legit", arm("accept"), arm("accept")),
        ("mule_drain", arm("reject", "narrow"), arm("reject", "narrow", "wide")),
        ("mule_drain", arm("accept"), arm("review", "wide")),
        ("card_testing", arm("accept"), arm("accept")),
        (None, arm("reject", "narrow"), arm("reject", "narrow")),  # unlabelled: left out
    ]
    for i, (label, live, candidate) in enumerate(rows):
        comparison.add(f"e{i}", T0, label, {"live": live, "candidate": candidate})
    data = comparison.to_dict()
    assert data["labelled"] == 6 and data["positives"] == 3
    assert data["labels"] == {"legit": 3, "mule_drain": 2, "card_testing": 1}
    # live flags 2 labelled events (1 positive): precision 1/2, recall 1/3, F1 0.4
    assert data["detection"]["live"] == pytest.approx(
        {"precision": 0.5, "recall": 1 / 3, "f1": 0.4})
    # candidate flags 4 (2 positives): precision 2/4, recall 2/3, F1 4/7
    assert data["detection"]["candidate"] == pytest.approx(
        {"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7})
    rules = {r["rule_id"]: r for r in data["rules"]}
    assert rules["narrow"]["detection"]["live"] == pytest.approx(
        {"precision": 0.5, "recall": 1 / 3, "f1": 0.4})
    assert rules["wide"]["detection"]["live"] == {"precision": None, "recall": 0.0,
                                                  "f1": None}
    assert rules["wide"]["detection"]["candidate"] == pytest.approx(
        {"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7})
    outcomes = data["label_outcomes"]["candidate"]
    assert outcomes["legit"] == {"events": 3, "accept": 1, "review": 2, "reject": 0,
                                 "caught": 2, "caught_rate": 2 / 3}
    assert outcomes["mule_drain"]["caught_rate"] == 1.0


def test_detection_edges() -> None:
    assert Detection.of(0, 0, 0) == Detection(None, None, None)
    assert Detection.of(0, 5, 4) == Detection(0.0, 0.0, 0.0)
    assert Detection.of(2, 2, 2) == Detection(1.0, 1.0, 1.0)


def test_without_labels_there_is_no_label_section() -> None:
    comparison = ArmComparison(["live", "candidate"])
    comparison.add("e1", T0, None, {"live": ACCEPT, "candidate": arm("review")})
    data = comparison.to_dict()
    assert data["labelled"] == 0
    for key in ("detection", "labels", "positives", "label_outcomes"):
        assert key not in data


def test_alert_rate_per_utc_day() -> None:
    comparison = ArmComparison(["live", "candidate"])
    moments = [T0, T0 + DAY - 1, T0 + DAY, T0 + 3 * DAY + 5]
    decisions = [("review", "review"), ("accept", "reject"), ("accept", "accept"),
                 ("reject", "accept")]
    for i, (t, (live, candidate)) in enumerate(zip(moments, decisions, strict=True)):
        comparison.add(f"e{i}", t, None, {"live": arm(live), "candidate": arm(candidate)})
    assert comparison.to_dict()["daily"] == [
        {"day": "2026-01-05", "events": 2, "alerts": {"live": 1, "candidate": 2},
         "alert_rate": {"live": 0.5, "candidate": 1.0}},
        {"day": "2026-01-06", "events": 1, "alerts": {"live": 0, "candidate": 0},
         "alert_rate": {"live": 0.0, "candidate": 0.0}},
        {"day": "2026-01-08", "events": 1, "alerts": {"live": 1, "candidate": 0},
         "alert_rate": {"live": 1.0, "candidate": 0.0}},
    ]


def test_one_arm_and_rule_errors() -> None:
    comparison = ArmComparison(["champion"])
    comparison.add("e1", T0, "legit", {"champion": ArmResult("accept", 0.0, (), (), ("bad",))})
    data = comparison.to_dict()
    assert data["transitions"] == {} and data["changed"] == {}
    assert data["rule_errors"] == {"champion": {"bad": 1}}
    assert data["detection"]["champion"] == {"precision": None, "recall": None, "f1": None}
