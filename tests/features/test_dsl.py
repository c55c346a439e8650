"""The feature DSL (seed syntax, verbatim) and the YAML form."""

from __future__ import annotations

import pytest

from riskengine.exceptions import FeatureDefinitionError
from riskengine.features.dsl import parse_feature


@pytest.mark.parametrize(("text", "func", "target", "by", "window_ms"), [
    ("count(pay_account.history,1h)", "count", "pay_account", ("pay_account",), 3_600_000),
    ("sum(amount#rcv_account.history,1h)", "sum", "amount", ("rcv_account",), 3_600_000),
    ("count_distinct(rcv_account#pay_account.history,1h)", "count_distinct", "rcv_account",
     ("pay_account",), 3_600_000),
    ("avg( amount # a + b .history , 90s )", "avg", "amount", ("a", "b"), 90_000),
    ("max(amount#a.window,30d)", "max", "amount", ("a",), 30 * 86_400_000),
    ("last(x#a.history,250ms)", "last", "x", ("a",), 250),
])
def test_seed_syntax(text: str, func: str, target: str, by: tuple[str, ...],
                     window_ms: int) -> None:
    spec = parse_feature(text)
    assert (spec.func, spec.target, spec.by, spec.window_ms) == (func, target, by, window_ms)
    assert spec.name == text.strip()
    assert parse_feature(spec.canonical) == spec or parse_feature(spec.canonical).canonical \
        == spec.canonical


def test_yaml_form_and_output_names() -> None:
    named = parse_feature({"name": "avg_24h", "func": "avg", "target": "amount",
                           "by": ["pay_account"], "window": "24h"})
    assert named.name == "avg_24h" and named.window_ms == 86_400_000
    unnamed = parse_feature({"func": "sum", "target": "amount", "by": "rcv_account",
                             "window": "1h"})
    assert unnamed.name == "sum(amount#rcv_account.history,1h)"
    tiled = parse_feature({"func": "count", "by": ["a", "b"], "window": "30d",
                           "kind": "window", "hop": "1h"})
    assert tiled.name == "count(a+b.window,30d)" and tiled.hop_ms == 3_600_000


@pytest.mark.parametrize(("definition", "message"), [
    ("cnt(a.history,1h)", "column 1: unknown function 'cnt'"),
    ("count(a.hist,1h)", "unknown kind 'hist'"),
    ("count(a.history,1x)", "not a duration"),
    ("count(a.history,0s)", "window must be positive"),
    ("count(a#b#c.history,1h)", "more than one '#'"),
    ("count(a.history)", "exactly one ','"),
    ("count(a.history,1h", "expected func"),
    ("sum(1a#b.history,1h)", "'1a' is not a field name"),
    ("sum(a#b c.history,1h)", "is not a field name"),
    ("count(a.history,500d)", "longer than 400d"),
    ("x" * 400, "longer than 300"),
    (42, "DSL string"),
    ({"func": "sum", "by": ["a"], "window": "1h", "colour": "red"}, "unknown keys"),
    ({"func": "median", "by": ["a"], "window": "1h"}, "unknown function"),
    ({"func": "sum", "by": [], "window": "1h"}, "'by' must be"),
    ({"func": "sum", "by": ["a", "a"], "window": "1h"}, "repeats"),
    ({"func": "sum", "by": ["a"], "window": "1h", "hop": "1m"}, "only applies"),
    ({"func": "count", "by": ["a"], "window": "1h", "kind": "window", "hop": "2h"},
     "no longer than the window"),
    ({"func": "count", "by": ["a"], "window": "1h", "where": ""}, "'where' must be"),
])
def test_bad_definitions_are_refused_with_the_text(definition: object, message: str) -> None:
    with pytest.raises(FeatureDefinitionError) as info:
        parse_feature(definition)
    assert message in str(info.value)
