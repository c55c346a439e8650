"""Models in the decision path: scores in features, versions in decisions, failures null."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest

from riskengine import Engine
from riskengine.exceptions import ConfigError, ModelError, RuleCompileError
from riskengine.models import ModelSet, content_version
from tests.models.onnx_files import linear, logistic, lookup, sigmoid

T0 = 1_767_571_200_000


def config(models: dict[str, Any], rules: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    return {"scenes": {"pay": {
        "schema": {"acct": "str", "amount": "float", "note": "str?"},
        "features": [{"name": "n_1h", "func": "count", "by": ["acct"], "window": "1h"}],
        "models": models,
        "rules": rules or [],
        "policy": {"review_at": 50, "reject_at": 80}}}}


def event(i: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"e{i}", "timestamp": T0 + i * 1000, "acct": "A", "amount": 2.0,
            **fields}


def test_scores_are_the_models_numbers_on_features_and_fields(tmp_path: Path) -> None:
    clf = logistic(tmp_path / "clf.onnx", [0.5, -0.25])
    reg = linear(tmp_path / "reg.onnx", [1.0, 10.0])
    engine = Engine.from_config(config({
        "risk": {"uri": str(clf), "inputs": ["n_1h", "amount"]},
        "size": {"uri": str(reg), "inputs": ["amount", "n_1h"], "output": "value"}}))
    first = engine.evaluate("pay", event(1, amount=2.0))
    second = engine.evaluate("pay", event(2, amount=4.0))
    assert list(first.features) == ["n_1h", "model:risk", "model:size"]
    assert first.features["model:risk"] == pytest.approx(sigmoid(0.5 * 1 - 0.25 * 2.0))
    assert first.features["model:size"] == pytest.approx(2.0 + 10.0 * 1)
    assert second.features["model:risk"] == pytest.approx(sigmoid(0.5 * 2 - 0.25 * 4.0))
    assert second.features["model:size"] == pytest.approx(4.0 + 10.0 * 2)
    assert first.models == {"risk": content_version(clf.read_bytes()),
                            "size": content_version(reg.read_bytes())}
    assert first.to_dict()["models"] == first.models


def test_a_rule_reads_the_score_and_a_configured_version_is_reported(tmp_path: Path) -> None:
    clf = logistic(tmp_path / "clf.onnx", [1.0])
    rules = [{"id": "risky", "when": 'model("risk") >= 0.9', "action": "review",
              "score": 60}]
    engine = Engine.from_config(config(
        {"risk": {"uri": str(clf), "inputs": ["amount"], "version": "7"}}, rules))
    low = engine.evaluate("pay", event(1, amount=0.0))        # sigmoid(0) = 0.5
    high = engine.evaluate("pay", event(2, amount=5.0))       # sigmoid(5) = 0.993
    assert (low.decision, high.decision) == ("accept", "review")
    assert [h.rule_id for h in high.hits] == ["risky"]
    assert high.models == {"risk": "7"}


def test_a_missing_or_non_numeric_input_is_nan(tmp_path: Path) -> None:
    reg = linear(tmp_path / "reg.onnx", [1.0])
    engine = Engine.from_config(config(
        {"m": {"uri": str(reg), "inputs": ["note"], "output": "value"}}))
    assert engine.evaluate("pay", event(1, note="x")).features["model:m"] is None
    assert engine.evaluate("pay", event(2)).features["model:m"] is None
    models = engine.scene("pay").models
    assert isinstance(models, ModelSet)
    assert models.failures["m"] == 2   # NaN out: no finite score, counted


def test_a_model_that_raises_gives_null_is_counted_and_the_rule_is_not_hit(
        tmp_path: Path) -> None:
    failing = lookup(tmp_path / "lookup.onnx", 1)
    rules = [{"id": "low", "when": 'model("m") < 0.5', "action": "review", "score": 60},
             {"id": "always", "when": "amount > 100", "action": "reject", "score": 100}]
    engine = Engine.from_config(config(
        {"m": {"uri": str(failing), "inputs": ["amount"], "output": "value"}}, rules))
    ok = engine.evaluate("pay", event(1, amount=0.0))
    assert ok.features["model:m"] == 0.25 and ok.decision == "review"
    broken = engine.evaluate("pay", event(2, amount=500.0))  # index 500: out of the table
    assert broken.features["model:m"] is None
    assert [h.rule_id for h in broken.hits] == ["always"]    # the others still decide
    models = engine.scene("pay").models
    assert isinstance(models, ModelSet) and models.failures["m"] == 1
    again = engine.evaluate("pay", event(3, amount=1.0))
    assert again.features["model:m"] == 0.75 and models.failures["m"] == 1


def test_a_duplicate_returns_the_stored_scores_and_versions(tmp_path: Path) -> None:
    clf = logistic(tmp_path / "clf.onnx", [0.1])
    engine = Engine.from_config(config({"risk": {"uri": str(clf), "inputs": ["amount"]}}))
    first = engine.evaluate("pay", event(1))
    again = engine.evaluate("pay", event(1, amount=9999.0))
    assert again.duplicate
    assert {**again.to_dict(), "duplicate": False} == first.to_dict()


def test_one_session_per_model_file_in_a_process(tmp_path: Path) -> None:
    clf = logistic(tmp_path / "clf.onnx", [0.1])
    cfg = config({"risk": {"uri": str(clf), "inputs": ["amount"]}})
    one, two = (Engine.from_config(copy.deepcopy(cfg)).scene("pay").models for _ in range(2))
    assert isinstance(one, ModelSet) and isinstance(two, ModelSet)
    assert one.models["risk"].scorer is two.models["risk"].scorer


def test_a_relative_uri_is_read_next_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    logistic(tmp_path / "models" / "clf.onnx", [0.1])
    path = tmp_path / "project.yaml"
    path.write_text("scenes:\n  pay:\n    schema: {acct: str, amount: float}\n"
                    "    features: [\"count(acct.history,1h)\"]\n"
                    "    models:\n      risk: {uri: models/clf.onnx, inputs: [amount]}\n")
    decision = Engine.from_config(path).evaluate("pay", event(1, amount=0.0))
    assert decision.features["model:risk"] == pytest.approx(0.5)


# -- refused at load, naming the model --------------------------------------------------

def refusal(tmp_path: Path, models: dict[str, Any], rules: Any = None) -> str:
    with pytest.raises(ConfigError) as caught:
        Engine.from_config(config(models, rules))
    return str(caught.value)


def test_an_unreadable_file_is_a_load_error(tmp_path: Path) -> None:
    message = refusal(tmp_path, {"risk": {"uri": str(tmp_path / "nope.onnx"),
                                          "inputs": ["amount"]}})
    assert "model 'risk'" in message and "cannot read" in message


def test_a_file_that_is_not_onnx_is_a_load_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 this is not a model \xff" * 50)
    with pytest.raises(ModelError, match=r"model 'risk'.*not a loadable ONNX model"):
        Engine.from_config(config({"risk": {"uri": str(junk), "inputs": ["amount"]}}))


def test_a_directory_is_a_load_error(tmp_path: Path) -> None:
    assert "cannot read" in refusal(tmp_path, {"risk": {"uri": str(tmp_path),
                                                        "inputs": ["amount"]}})


def test_the_wrong_number_of_inputs_is_a_load_error(tmp_path: Path) -> None:
    clf = logistic(tmp_path / "clf.onnx", [0.1, 0.2, 0.3])
    message = refusal(tmp_path, {"risk": {"uri": str(clf), "inputs": ["amount", "n_1h"]}})
    assert "model 'risk'" in message and "takes 3 inputs, the config names 2" in message


def test_an_open_width_model_fed_the_wrong_count_fails_its_dry_run(tmp_path: Path) -> None:
    clf = logistic(tmp_path / "clf.onnx", [0.1, 0.2, 0.3], width=None)
    assert "fails on a row of zeros" in refusal(tmp_path, {"risk": {
        "uri": str(clf), "inputs": ["amount"]}})


def test_an_output_of_the_wrong_kind_is_a_load_error(tmp_path: Path) -> None:
    reg = linear(tmp_path / "reg.onnx", [1.0])
    assert "two class probabilities" in refusal(tmp_path, {"m": {
        "uri": str(reg), "inputs": ["amount"], "output": "probability"}})
    clf = logistic(tmp_path / "clf.onnx", [1.0])
    assert "one number per row" in refusal(tmp_path, {"m": {
        "uri": str(clf), "inputs": ["amount"], "output": "value"}})


@pytest.mark.parametrize(("models", "wanted"), [
    ({"m": {"uri": "x.onnx", "inputs": ["nope"]}}, "input 'nope' is not a feature"),
    ({"m": {"uri": "x.onnx", "inputs": []}}, "`inputs` must be a list"),
    ({"m": {"uri": "x.onnx", "inputs": "amount"}}, "`inputs` must be a list"),
    ({"m": {"uri": "x.onnx", "inputs": [1]}}, "`inputs` must be a list"),
    ({"m": {"uri": 3, "inputs": ["amount"]}}, "`uri` must be"),
    ({"m": {"inputs": ["amount"]}}, "`uri` must be"),
    ({"m": {"uri": "models:/", "inputs": ["amount"]}}, "names no model"),
    ({"m": {"uri": "x.onnx", "inputs": ["amount"], "output": "logit"}}, "`output` must be"),
    ({"m": {"uri": "x.onnx", "inputs": ["amount"], "version": "a b"}}, "`version` must be"),
    ({"m": {"uri": "x.onnx", "inputs": ["amount"], "extra": 1}}, "unknown key(s) 'extra'"),
    ({"1m": {"uri": "x.onnx", "inputs": ["amount"]}}, "model names start with a letter"),
    ({"m": "x.onnx"}, "must be a mapping"),
    ([], "models must map model names"),
])
def test_a_malformed_models_section_is_refused(tmp_path: Path, models: Any,
                                               wanted: str) -> None:
    assert wanted in refusal(tmp_path, models)


def test_a_rule_naming_an_unknown_model_does_not_compile(tmp_path: Path) -> None:
    clf = logistic(tmp_path / "clf.onnx", [0.1])
    with pytest.raises(RuleCompileError, match="unknown model 'risky'"):
        Engine.from_config(config({"risk": {"uri": str(clf), "inputs": ["amount"]}},
                                  [{"id": "r", "when": 'model("risky") > 0.5', "score": 1}]))


def test_a_score_beyond_float32_is_null_not_infinity(tmp_path: Path) -> None:
    reg = linear(tmp_path / "reg.onnx", [1e30])
    engine = Engine.from_config(config(
        {"m": {"uri": str(reg), "inputs": ["amount"], "output": "value"}}))
    decision = engine.evaluate("pay", event(1, amount=1e15))
    assert decision.features["model:m"] is None
    assert math.isfinite(engine.evaluate("pay", event(2, amount=1.0)).features["model:m"])
