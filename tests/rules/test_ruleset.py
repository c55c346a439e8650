"""Rules, policy and the ruleset: validation, decisions, shadow mode, versions, errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskengine.exceptions import ConfigError, RuleCompileError
from riskengine.lists import ListStore
from riskengine.rules import ruleset as ruleset_module
from riskengine.rules.expr import ExprNames
from riskengine.rules.ruleset import Hit, Policy, Rule, Ruleset, Verdict

NAMES = ExprNames(features=frozenset({"f"}), lists=frozenset({"blocked"}))
POLICY = {"review_at": 50, "reject_at": 80}


def build(rules: list[dict[str, Any]], policy: Mapping[str, Any] | None = None,
          version: str | None = None) -> Ruleset:
    return Ruleset.build("s", rules, POLICY if policy is None else policy, NAMES, version)


def flag(rule_id: str, *, score: float = 0, action: str | None = None,
         mode: str = "active") -> dict[str, Any]:
    """A rule that fires when the event field named after it is truthy."""
    rule: dict[str, Any] = {"id": rule_id, "when": f"event.{rule_id} == 1", "mode": mode,
                            "reason": f"{rule_id} fired"}
    if score:
        rule["score"] = score
    if action:
        rule["action"] = action
    return rule


# --- Rule ------------------------------------------------------------------------------------

def test_rule_from_dict_defaults() -> None:
    rule = Rule.from_dict({"id": "r.1:a-b", "when": "x > 1", "score": 40})
    assert rule == Rule("r.1:a-b", "x > 1", 40.0, None, "", "active")
    assert isinstance(rule.score, float)
    assert Rule.from_dict(rule.to_dict()) == rule


@pytest.mark.parametrize(("data", "fragment"), [
    ({"id": "r", "when": "x", "score": 1, "scroe": 2}, "unknown key(s) 'scroe'"),
    ({"when": "x", "score": 1}, "missing `id`"),
    ({"id": "r", "score": 1}, "rule 'r': missing `when`"),
    ({"id": "", "when": "x", "score": 1}, "rule id '' is invalid"),
    ({"id": "a b", "when": "x", "score": 1}, "rule id 'a b' is invalid"),
    ({"id": 5, "when": "x", "score": 1}, "rule id 5 is invalid"),
    ({"id": "r", "when": "", "score": 1}, "rule 'r': `when` must be"),
    ({"id": "r", "when": True, "score": 1}, "rule 'r': `when` must be"),
    ({"id": "r", "when": "x", "score": "high"}, "rule 'r': score must be a finite number"),
    ({"id": "r", "when": "x", "score": True}, "rule 'r': score must be"),
    ({"id": "r", "when": "x", "score": float("nan")}, "rule 'r': score must be"),
    ({"id": "r", "when": "x", "score": 1e308}, "rule 'r': score 1e+308 is out of range"),
    ({"id": "r", "when": "x", "score": -2e9}, "rule 'r': score -2e+09 is out of range"),
    ({"id": "r", "when": "x", "action": "block"}, "rule 'r': action 'block' is invalid"),
    ({"id": "r", "when": "x", "score": 1, "mode": "dry"}, "rule 'r': mode 'dry'"),
    ({"id": "r", "when": "x", "score": 1, "reason": 3}, "rule 'r': reason must be"),
    ({"id": "r", "when": "x"}, "rule 'r': give it a non-zero `score`"),
    ({"id": "r", "when": "x", "score": 0}, "rule 'r': give it a non-zero `score`"),
    (["id", "r"], "a rule must be a mapping"),
])
def test_rule_shape_errors_name_the_rule(data: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Rule.from_dict(data)
    assert fragment in str(info.value)


def test_rule_with_only_an_action_or_negative_score_is_valid() -> None:
    assert Rule.from_dict({"id": "r", "when": "x", "action": "review"}).score == 0.0
    assert Rule.from_dict({"id": "r", "when": "x", "score": -20}).score == -20.0


# --- Policy ----------------------------------------------------------------------------------

def test_policy_from_dict() -> None:
    assert Policy.from_dict(None) == Policy(None, None, "accept")
    assert Policy.from_dict({"review_at": 50}) == Policy(50.0, None, "accept")
    assert Policy.from_dict({"reject_at": 80, "default": "review"}).default == "review"
    assert Policy.from_dict({"review_at": 80, "reject_at": 80}).reject_at == 80.0


@pytest.mark.parametrize(("data", "fragment"), [
    ({"review_at": 90, "reject_at": 80}, "must not exceed"),
    ({"review_at": "50"}, "review_at must be a finite number"),
    ({"reject_at": True}, "reject_at must be a finite number"),
    ({"review_at": 50, "block_at": 90}, "unknown key(s) 'block_at'"),
    ({"default": "block"}, "default 'block' is invalid"),
    ([50, 80], "policy must be a mapping"),
])
def test_policy_errors(data: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Policy.from_dict(data)
    assert fragment in str(info.value)


# --- decisions -------------------------------------------------------------------------------

RULES = [flag("s30", score=30), flag("s40", score=40), flag("s60", score=60),
         flag("review", action="review"), flag("reject", action="reject"),
         flag("accept", action="accept", score=10)]


@pytest.mark.parametrize(("fired", "policy", "decision", "score"), [
    ((), POLICY, "accept", 0.0),
    (("s30",), POLICY, "accept", 30.0),
    (("s30", "s40"), POLICY, "review", 70.0),
    (("s60",), POLICY, "review", 60.0),
    (("s40", "s60"), POLICY, "reject", 100.0),
    (("s30", "s40", "s60"), POLICY, "reject", 130.0),
    (("review",), POLICY, "review", 0.0),
    (("reject",), POLICY, "reject", 0.0),
    (("review", "s60", "s30"), POLICY, "reject", 90.0),
    (("reject", "s30"), POLICY, "reject", 30.0),
    (("accept",), POLICY, "accept", 10.0),
    (("accept", "s40"), POLICY, "review", 50.0),
    (("s60", "s40"), {}, "accept", 100.0),
    (("review",), {}, "review", 0.0),
    (("s60",), {"reject_at": 50}, "reject", 60.0),
    (("s30",), {"review_at": 30}, "review", 30.0),
    ((), {"default": "review", "reject_at": 80}, "review", 0.0),
    (("s40", "s60"), {"default": "review", "reject_at": 80}, "reject", 100.0),
])
def test_decision_is_the_highest_of_action_and_thresholds(
        fired: tuple[str, ...], policy: dict[str, Any], decision: str, score: float) -> None:
    ruleset = build(RULES, policy)
    verdict = ruleset.evaluate(dict.fromkeys(fired, 1), {}, None)
    assert (verdict.decision, verdict.score) == (decision, score)
    assert [h.rule_id for h in verdict.hits] == [r["id"] for r in RULES if r["id"] in fired]
    assert verdict.shadow_hits == () and verdict.errors == ()


def test_hits_carry_reason_score_and_action() -> None:
    verdict = build(RULES).evaluate({"s30": 1, "reject": 1}, {}, None)
    assert verdict.hits == (Hit("s30", "s30 fired", 30.0, None),
                            Hit("reject", "reject fired", 0.0, "reject"))
    assert verdict.hits[1].to_dict() == {"rule_id": "reject", "reason": "reject fired",
                                         "score": 0.0, "action": "reject"}
    assert verdict.to_dict()["decision"] == "reject"


def test_shadow_rules_never_change_decision_or_score() -> None:
    shadowed = [flag("s30", score=30), flag("big", score=500, action="reject", mode="shadow"),
                flag("rev", action="review", mode="shadow")]
    ruleset = build(shadowed)
    verdict = ruleset.evaluate({"s30": 1, "big": 1, "rev": 1}, {}, None)
    assert (verdict.decision, verdict.score) == ("accept", 30.0)
    assert [h.rule_id for h in verdict.hits] == ["s30"]
    assert [h.rule_id for h in verdict.shadow_hits] == ["big", "rev"]
    only_shadow = ruleset.evaluate({"big": 1}, {}, None)
    assert (only_shadow.decision, only_shadow.score, only_shadow.hits) == ("accept", 0.0, ())
    assert [h.rule_id for h in only_shadow.shadow_hits] == ["big"]


def test_null_features_do_not_fire_and_do_not_error() -> None:
    ruleset = build([{"id": "r", "when": "f > 5 or not (f <= 5) and f != 1", "score": 90}])
    verdict = ruleset.evaluate({}, {"f": None}, None)
    assert (verdict.decision, verdict.hits, verdict.errors) == ("accept", (), ())


# --- runtime errors ----------------------------------------------------------------------------

class ExplodingFeatures(Mapping[str, Any]):
    """A features mapping whose reads fail, as a broken upstream component would."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("feature store unavailable")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("feature store unavailable")


def test_a_rule_that_raises_is_not_hit_and_is_reported() -> None:
    ruleset = build([
        {"id": "uses_feature", "when": "f > 1", "score": 90, "action": "reject"},
        {"id": "field_only", "when": "x > 1", "score": 60},
        {"id": "shadow_feature", "when": "f > 1", "score": 10, "mode": "shadow"},
        {"id": "overflow", "when": "x * 2.5 > 1", "score": 5},
    ])
    verdict = ruleset.evaluate({"x": 10**400}, ExplodingFeatures(), None)
    assert [h.rule_id for h in verdict.hits] == ["field_only"]
    assert verdict.errors == ("uses_feature", "shadow_feature", "overflow")
    assert (verdict.decision, verdict.score) == ("review", 60.0)


def test_in_list_without_a_store_is_a_rule_error_not_a_crash() -> None:
    ruleset = build([{"id": "bl", "when": "in_list('blocked', dev)", "action": "reject"}])
    verdict = ruleset.evaluate({"dev": "d1", "timestamp": 1}, {}, None)
    assert (verdict.decision, verdict.errors) == ("accept", ("bl",))
    store = ListStore()
    store.create("blocked")
    store.add("blocked", "d1")
    assert ruleset.evaluate({"dev": "d1", "timestamp": 1}, {}, store).decision == "reject"


# --- build ------------------------------------------------------------------------------------

def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(RuleCompileError) as info:
        build([flag("a", score=1), flag("b", score=1), flag("a", score=2)])
    assert info.value.rule_id == "a"
    assert "duplicate" in str(info.value)


def test_first_compile_error_raises_with_rule_id_and_position() -> None:
    rules = [flag("good", score=1), {"id": "bad", "when": "x > 1 and open('f')", "score": 1},
             {"id": "worse", "when": "__import__('os')", "score": 1}]
    with pytest.raises(RuleCompileError) as info:
        build(rules)
    assert (info.value.rule_id, info.value.line, info.value.column) == ("bad", 1, 11)


def test_rules_must_be_a_list() -> None:
    with pytest.raises(ConfigError):
        Ruleset.build("s", {"id": "r"}, {}, NAMES)  # type: ignore[arg-type]


def test_rule_objects_and_dicts_mix() -> None:
    ruleset = Ruleset.build("s", [Rule("a", "x == 1", 10.0), flag("b", score=20)],
                            Policy(review_at=25), NAMES)
    assert ruleset.evaluate({"a": 0, "x": 1, "b": 1}, {}, None).decision == "review"


def test_empty_ruleset_answers_the_default() -> None:
    verdict = Ruleset.build("s", [], None, NAMES).evaluate({}, {}, None)
    assert verdict == Verdict("accept", 0.0, (), (), ())


# --- versions -----------------------------------------------------------------------------------

def test_version_is_a_content_hash() -> None:
    one = build(RULES)
    assert one.version.startswith("r") and len(one.version) == 13
    assert build(RULES).version == one.version
    reordered_keys = [dict(reversed(list(r.items()))) for r in RULES]
    assert build(reordered_keys).version == one.version
    as_floats = [{**r, "score": float(r["score"])} if "score" in r else r for r in RULES]
    assert build(as_floats).version == one.version
    assert build(RULES, {"review_at": 50.0, "reject_at": 80.0}).version == one.version
    changed = [*RULES[:-1], {**RULES[-1], "score": 11}]
    assert build(changed).version != one.version
    assert build(RULES, {"review_at": 51, "reject_at": 80}).version != one.version
    assert build(RULES[::-1]).version != one.version
    assert build(RULES, version="2024-06-01").version == "2024-06-01"


def test_version_is_stable_across_processes() -> None:
    code = (
        "from riskengine.rules.expr import ExprNames\n"
        "from riskengine.rules.ruleset import Ruleset\n"
        "rules = [{'id': 'a', 'when': 'x > 1', 'score': 10, 'reason': 'é'},\n"
        "         {'id': 'b', 'when': 'f < 2', 'action': 'review', 'mode': 'shadow'}]\n"
        "names = ExprNames(features=frozenset({'f'}))\n"
        "print(Ruleset.build('s', rules, {'review_at': 5}, names).version)\n"
    )
    root = Path(ruleset_module.__file__).parents[2]
    versions = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=root, env={"PYTHONHASHSEED": seed,
                                                  "PYTHONPATH": str(root)}).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(versions) == 1
    version = versions.pop()
    assert version.startswith("r") and len(version) == 13


def test_to_dict_round_trips_to_the_same_version() -> None:
    ruleset = build(RULES)
    data = ruleset.to_dict()
    assert data["version"] == ruleset.version and data["scene"] == "s"
    again = Ruleset.build("s", data["rules"], data["policy"], NAMES)
    assert again.version == ruleset.version
    assert again.to_dict() == data


# --- the example config ----------------------------------------------------------------

def example_ruleset(scene: str) -> tuple[Ruleset, ListStore]:
    path = Path(ruleset_module.__file__).parents[1] / "examples" / "config.yaml"
    config = yaml.safe_load(path.read_text("utf-8"))
    body = config["scenes"][scene]
    features = frozenset(f if isinstance(f, str) else f["name"] for f in body["features"])
    store = ListStore.from_config(config["lists"], path.parent)
    names = ExprNames(features=features, lists=frozenset(store.names()),
                      models=frozenset(body.get("models", {})))
    return Ruleset.build(scene, body["rules"], body["policy"], names), store


def test_example_transfer_scene_decides_the_seed_story() -> None:
    ruleset, store = example_ruleset("transfer")
    assert "avg_amount_24h" in ruleset.features_read
    assert "stddev_amount_24h" not in ruleset.features_read
    event = {"timestamp": 1_700_000_000_000, "pay_account": "A", "rcv_account": "M",
             "amount": 1000.0, "device_id": "dev-ok"}
    quiet = {"count(pay_account.history,1h)": 1, "sum(amount#rcv_account.history,1h)": 1000.0,
             "count_distinct(rcv_account#pay_account.history,1h)": 1, "avg_amount_24h": 900.0,
             "pair_count_30d": 3, "small_tx_device_10m": 0, "accounts_per_device_1h": 5,
             "model:fraud_gbm": 0.01}
    verdict = ruleset.evaluate(event, quiet, store)
    assert (verdict.decision, verdict.score, verdict.hits) == ("accept", 0.0, ())
    assert [h.rule_id for h in verdict.shadow_hits] == ["shared_device"]
    draining = {**quiet, "count(pay_account.history,1h)": 6,
                "sum(amount#rcv_account.history,1h)": 6000.0}
    verdict = ruleset.evaluate(event, draining, store)
    assert verdict.decision == "reject"
    assert [h.rule_id for h in verdict.hits] == ["mule_drain"]
    blocked = ruleset.evaluate({**event, "device_id": "dev-blocked-0003"}, quiet, store)
    assert [h.rule_id for h in blocked.hits] == ["blocked_device"]
    # dev-blocked-0003 expires at 2030-01-01T00:00:00Z (event time, not wall clock).
    later = ruleset.evaluate({**event, "device_id": "dev-blocked-0003",
                              "timestamp": 1_893_456_000_000}, quiet, store)
    assert later.decision == "accept"
    suspected = ruleset.evaluate(event, {**quiet, "model:fraud_gbm": 0.5}, store)
    assert (suspected.decision, [h.rule_id for h in suspected.hits]) == (
        "review", ["model_high_risk"])
    certain = ruleset.evaluate(event, {**quiet, "model:fraud_gbm": 0.99}, store)
    assert certain.decision == "reject"
    assert [h.rule_id for h in certain.hits] == ["model_high_risk", "model_near_certain"]
    failed = ruleset.evaluate(event, {**quiet, "model:fraud_gbm": None}, store)
    assert (failed.decision, failed.hits, failed.errors) == ("accept", (), ())


def test_example_login_scene() -> None:
    ruleset, store = example_ruleset("login")
    features = {"failed_logins_5m": 2, "devices_per_account_1d": 3,
                "accounts_per_ip_1h": 1, "account_device_seen_30d": 1}
    verdict = ruleset.evaluate({"timestamp": 0, "ip": "10.0.0.1"}, features, store)
    assert (verdict.decision, [h.rule_id for h in verdict.hits]) == ("accept", ["new_device"])
    verdict = ruleset.evaluate({"timestamp": 0, "ip": "10.0.0.1"},
                               {**features, "accounts_per_ip_1h": 25}, store)
    assert (verdict.decision, verdict.score) == ("reject", 100.0)
