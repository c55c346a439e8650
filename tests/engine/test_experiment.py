"""Champion and challengers in the engine: the split, stable arms, every arm on the same
features, the remembered arm of a duplicate, and refused experiments."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from riskengine import Engine
from riskengine.config import load_config
from riskengine.exceptions import ConfigError, RuleCompileError
from riskengine.experiment import CHAMPION, Experiment, arm_bucket, parse_experiment
from tests.example_config import example_config

T0 = 1_767_225_600_000

STRICT = [{"id": "big", "when": "amount >= 100", "action": "review", "reason": "big"}]
WATCH = [{"id": "any", "when": "amount > 0", "score": 1, "reason": "all"}]


def example_with(experiment: dict[str, Any] | None) -> dict[str, Any]:
    raw = example_config()
    raw["scenes"]["transfer"]["experiment"] = experiment
    return raw


def experiment(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "key": "pay_account", "salt": "2026-12",
        "split": {"champion": 70, "strict": 15, "loose": 15},
        "challengers": {"strict": {"mode": "decide", "rules": STRICT},
                        "loose": {"rules": [], "policy": {"default": "accept"}},
                        "watch": {"mode": "shadow", "rules": WATCH}}}
    spec.update(changes)
    return spec


def transfer(i: int, account: str, amount: float = 150.0) -> dict[str, Any]:
    return {"event_id": f"e{i}", "timestamp": T0 + i, "pay_account": account,
            "rcv_account": "R", "amount": amount}


def test_shares_over_20000_accounts_are_within_two_percent_of_the_split() -> None:
    engine = Engine.from_config(example_with(experiment()))
    arms = Counter(engine.evaluate("transfer", transfer(i, f"acct-{i}")).arm
                   for i in range(20_000))
    assert set(arms) == {CHAMPION, "strict", "loose"}  # a shadow arm never answers
    for arm, share in {CHAMPION: 70, "strict": 15, "loose": 15}.items():
        assert abs(arms[arm] / 20_000 * 100 - share) <= 2.0, (arm, arms)


def test_an_account_keeps_its_arm_across_engines_and_processes() -> None:
    accounts = [f"acct-{i}" for i in range(300)]
    first = Engine.from_config(example_with(experiment()))
    second = Engine.from_config(example_with(experiment()))
    arms = [first.evaluate("transfer", transfer(i, a)).arm for i, a in enumerate(accounts)]
    again = [second.evaluate("transfer", transfer(1000 + i, a)).arm
             for i, a in reversed(list(enumerate(accounts)))]
    assert arms == list(reversed(again))
    # A new interpreter (another hash seed) deals the same buckets.
    code = ("from riskengine.experiment import arm_bucket; "
            "print([arm_bucket('2026-12', f'acct-{i}') for i in range(300)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123"}).stdout
    assert out.strip() == str([arm_bucket("2026-12", a) for a in accounts])


def test_a_new_salt_deals_the_accounts_afresh() -> None:
    accounts = [f"acct-{i}" for i in range(2000)]
    one = [arm_bucket("a", x) for x in accounts]
    two = [arm_bucket("b", x) for x in accounts]
    moved = sum(1 for x, y in zip(one, two, strict=True) if (x < 7000) != (y < 7000))
    assert moved > 300  # independent draws: about 42 % change side


def test_every_arm_decides_on_the_same_features_and_the_others_are_carried() -> None:
    engine = Engine.from_config(example_with(experiment()))
    seen: Counter[str] = Counter()
    for i in range(400):
        decision = engine.evaluate("transfer", transfer(i, f"acct-{i}", 150.0 + i))
        others = {a.arm: a for a in decision.arms}
        assert decision.arm not in others
        assert set(others) | {decision.arm} == {CHAMPION, "strict", "loose", "watch"}
        strict = others.get("strict")
        # strict reviews every amount >= 100 whoever answered
        if decision.arm == "strict":
            assert decision.decision == "review" and decision.hit_ids == ["big"]
        else:
            assert strict is not None and strict.outcome[0] == "review"
        watch = others["watch"]
        assert watch.mode == "shadow" and [h.rule_id for h in watch.outcome[2]] == ["any"]
        if decision.arm != CHAMPION:
            champion = others[CHAMPION]
            assert champion.version == engine.ruleset("transfer").version
            assert champion.mode == "decide"
        seen[decision.arm] += 1
        document = decision.to_dict()
        assert document["arm"] == decision.arm
        assert set(document["arms"]) == set(others)
    assert seen["strict"] and seen["loose"] and seen[CHAMPION]


def test_without_an_experiment_nothing_changes_but_the_arm_name() -> None:
    engine = Engine.from_config(None)
    decision = engine.evaluate("transfer", transfer(1, "A"))
    assert decision.arm == CHAMPION and decision.arms == ()
    assert decision.to_dict()["arms"] == {}


def test_a_duplicate_returns_the_remembered_arm_in_memory_and_after_a_snapshot(
        tmp_path: Any) -> None:
    engine = Engine.from_config(example_with(experiment()))
    decisions = [engine.evaluate("transfer", transfer(i, f"acct-{i}")) for i in range(50)]
    challenger = next(d for d in decisions if d.arm != CHAMPION)
    engine.snapshot(tmp_path / "s.pkl")
    for target in (engine, Engine.from_config(example_with(experiment())).restore(
            tmp_path / "s.pkl")):
        again = target.evaluate("transfer", transfer(int(challenger.event_id[1:]),
                                                     "someone-else"))
        assert again.duplicate
        assert (again.arm, again.ruleset_version, again.decision) == (
            challenger.arm, challenger.ruleset_version, challenger.decision)


def test_an_event_without_the_key_goes_to_the_champion() -> None:
    raw = example_with(experiment(key="device_id", split={"champion": 0, "strict": 100,
                                                           "loose": 0}))
    engine = Engine.from_config(raw)
    assert engine.evaluate("transfer", transfer(1, "A")).arm == CHAMPION
    with_device = {**transfer(2, "A"), "device_id": "d1"}
    assert engine.evaluate("transfer", with_device).arm == "strict"


def test_promotion_leaves_the_other_arms_and_gives_the_share_to_the_champion() -> None:
    engine = Engine.from_config(example_with(experiment()))
    current = engine.scene("transfer").experiment
    assert current is not None
    rest = current.without("strict")
    assert rest is not None
    assert dict(rest.split) == {CHAMPION: 85.0, "loose": 15.0}
    assert [a.name for a in rest.challengers] == ["loose", "watch"]
    assert rest.version != current.version
    only_shadow = parse_experiment(experiment(split={"champion": 100},
                                              challengers={"watch": {"mode": "shadow",
                                                                     "rules": WATCH}}),
                                   "transfer")
    assert only_shadow is not None
    assert Experiment(only_shadow, {}).without("watch") is None


@pytest.mark.parametrize("change, message", [
    ({"split": {"champion": 70, "strict": 15, "loose": 10}}, "add up to 95, not 100"),
    ({"split": {"champion": 70, "strict": 15, "loose": 15, "nobody": 0}},
     "unknown arm 'nobody'"),
    ({"split": {"champion": 85, "strict": 15}}, "leaves out 'loose'"),
    ({"split": {"champion": 55, "strict": 15, "loose": 15, "watch": 15}},
     "shadow mode"),
    ({"split": {"champion": 70.001, "strict": 14.999, "loose": 15}}, "two decimals"),
    ({"split": {"champion": -10, "strict": 95, "loose": 15}}, "percentage"),
    ({"split": {"champion": True, "strict": 84, "loose": 15}}, "percentage"),
    ({"split": "70/15/15"}, "map arm names"),
    ({"key": "no_such_field"}, "not a field"),
    ({"key": ""}, "`key` must name"),
    ({"colour": "red"}, "unknown key(s) 'colour'"),
    ({"challengers": {"champion": {"rules": []}}}, "arm name 'champion'"),
    ({"challengers": {"x y": {"rules": []}}}, "arm name 'x y'"),
    ({"challengers": {"strict": {"mode": "sometimes", "rules": []}}}, "mode 'sometimes'"),
    ({"challengers": {"strict": {"rules": "amount > 1"}}}, "list of rules"),
    ({"challengers": {"strict": {"rules": [], "colour": 1}}}, "unknown key(s) 'colour'"),
])
def test_an_invalid_experiment_is_refused_with_what_is_wrong(
        change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(example_with(experiment(**change)))
    assert message in str(info.value)


def test_a_challenger_with_a_bad_rule_refuses_the_config_naming_the_arm() -> None:
    broken = [{"id": "x", "when": "amount >", "score": 1}]
    bad = experiment(challengers={"strict": {"rules": broken}, "loose": {"rules": []}})
    with pytest.raises(RuleCompileError, match="experiment arm 'strict'"):
        Engine.from_config(example_with(bad))
    unknown_feature = experiment(challengers={
        "strict": {"rules": [{"id": "x", "when": 'features["no_such"] > 1', "score": 1}]},
        "loose": {"rules": []}})
    with pytest.raises(RuleCompileError, match="experiment arm 'strict'"):
        Engine.from_config(example_with(unknown_feature))
