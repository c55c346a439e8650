"""The safe expression compiler: whitelist, null semantics, limits and error positions."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from riskengine.exceptions import RuleCompileError
from riskengine.lists import ListStore
from riskengine.rules import expr as expr_module
from riskengine.rules.expr import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_SOURCE_LEN,
    ExprNames,
    compile_expression,
    translate_expression,
)

FEATURES = frozenset({"count(pay_account.history,1h)", "avg_amount_24h", "failed_5m", "amount"})
NAMES = ExprNames(features=FEATURES, lists=frozenset({"blocked"}))
WHERE = ExprNames(lists=frozenset({"blocked"}), allow_features=False)


def run(source: str, event: dict[str, Any] | None = None,
        features: dict[str, Any] | None = None, lists: ListStore | None = None,
        names: ExprNames = NAMES) -> Any:
    fn = compile_expression(source, names=names, origin="r1")
    return fn(event or {}, features or {}, lists)


def refused(source: str, names: ExprNames = NAMES) -> RuleCompileError:
    with pytest.raises(RuleCompileError) as info:
        compile_expression(source, names=names, origin="rule_x")
    err = info.value
    assert err.rule_id == "rule_x"
    assert err.line is not None and err.line >= 1
    assert err.column is not None and err.column >= 1
    assert str(err).startswith("rule 'rule_x' at line ")
    return err


# --- the example config ------------------------------------------------------------------

def example_config() -> dict[str, Any]:
    path = Path(expr_module.__file__).parents[1] / "examples" / "config.yaml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
    return loaded


def scene_names(config: dict[str, Any], scene: str) -> ExprNames:
    features = frozenset(f if isinstance(f, str) else f["name"]
                         for f in config["scenes"][scene]["features"])
    return ExprNames(features=features, lists=frozenset(config.get("lists", {})),
                     models=frozenset(config["scenes"][scene].get("models", {})))


EXAMPLE = example_config()
EXAMPLE_RULES = [(scene, rule) for scene, body in EXAMPLE["scenes"].items()
                 for rule in body["rules"]]
EXAMPLE_WHERES = [(scene, f["name"], f["where"]) for scene, body in EXAMPLE["scenes"].items()
                  for f in body["features"] if isinstance(f, dict) and "where" in f]


@pytest.mark.parametrize(("scene", "rule"), EXAMPLE_RULES,
                         ids=[f"{s}/{r['id']}" for s, r in EXAMPLE_RULES])
def test_every_example_rule_compiles(scene: str, rule: dict[str, Any]) -> None:
    names = scene_names(EXAMPLE, scene)
    fn = compile_expression(rule["when"], names=names, origin=rule["id"])
    assert fn.features_read <= names.features | {f"model:{m}" for m in names.models}
    # With every input missing, no example rule fires and none raises.
    assert not fn({"timestamp": 0}, {}, ListStore.from_config(EXAMPLE["lists"]))


@pytest.mark.parametrize(("scene", "name", "where"), EXAMPLE_WHERES)
def test_example_where_filters_compile_without_features(scene: str, name: str,
                                                        where: str) -> None:
    fn = compile_expression(where, names=WHERE, origin=f"feature {name!r} where")
    assert fn.features_read == frozenset()
    assert fn.fields_read


def test_seed_mule_rule_fires_on_the_seed_pattern() -> None:
    names = scene_names(EXAMPLE, "transfer")
    rule = next(r for s, r in EXAMPLE_RULES if r["id"] == "mule_drain")
    fn = compile_expression(rule["when"], names=names, origin="mule_drain")
    feats = {"count(pay_account.history,1h)": 6, "sum(amount#rcv_account.history,1h)": 6000.0,
             "count_distinct(rcv_account#pay_account.history,1h)": 1}
    assert fn({}, feats) is True
    assert fn({}, {**feats, "count_distinct(rcv_account#pay_account.history,1h)": 3}) is False
    assert fn({}, {**feats, "sum(amount#rcv_account.history,1h)": None}) is False


# --- names ---------------------------------------------------------------------------------

def test_bare_names_read_features_then_fields() -> None:
    # `amount` is both a feature and a field here: the feature wins.
    assert run("amount", {"amount": 1}, {"amount": 2}) == 2
    assert run("event.amount", {"amount": 1}, {"amount": 2}) == 1
    assert run("failed_5m", {}, {"failed_5m": 7}) == 7
    assert run("country", {"country": "NG"}) == "NG"
    assert run("country", {}) is None
    assert run('features["count(pay_account.history,1h)"]', {},
               {"count(pay_account.history,1h)": 3}) == 3


def test_reads_are_reported() -> None:
    fn = compile_expression('failed_5m > 1 and event.ip == "x" and in_list("blocked", dev)',
                            names=NAMES, origin="r")
    assert fn.features_read == {"failed_5m"}
    assert fn.fields_read == {"ip", "dev"}
    assert fn.lists_read == {"blocked"}
    assert fn.source.startswith("failed_5m")


def test_where_filter_sees_only_fields() -> None:
    assert run("failed_5m", {"failed_5m": 1}, {"failed_5m": 9}, names=WHERE) == 1
    err = refused('features["failed_5m"] > 1', WHERE)
    assert "only event fields" in str(err)


def test_unknown_feature_suggests_close_names() -> None:
    err = refused('features["avg_amount_42h"] > 1')
    assert "unknown feature 'avg_amount_42h'" in str(err)
    assert "avg_amount_24h" in str(err)
    assert (err.line, err.column) == (1, 10)


def test_literals() -> None:
    assert run("True") is True
    assert run("None") is None
    assert run("-5") == -5
    assert run("'a' 'b'") == "ab"


# --- null and type semantics ----------------------------------------------------------------

NULL_TABLE = [
    # (expression, event, expected)
    ("x > 5", {"x": None}, False),
    ("x > 5", {}, False),
    ("x < 5", {}, False),
    ("x >= 5", {}, False),
    ("x <= 5", {}, False),
    ("x == 5", {}, False),
    ("x != 5", {}, False),
    ("not (x > 5)", {}, True),
    ("5 < x", {}, False),
    ("x > y", {"x": 1}, False),
    ("x == y", {}, False),
    ("x != y", {}, False),
    ("x == 'a'", {}, False),
    ("x in ('a', 'b')", {}, False),
    ("x not in ('a', 'b')", {}, False),
    ("x in 'abc'", {}, False),
    ("'a' in x", {}, False),
    ("x in y", {"x": 1}, False),
    ("x not in y", {"x": 1}, False),
    ("x is None", {}, True),
    ("x is not None", {}, False),
    ("x is None", {"x": 0}, False),
    ("1 < x < 10", {}, False),
    ("x + 1", {}, None),
    ("1 + x", {}, None),
    ("x - y", {"y": 1}, None),
    ("x * 2", {}, None),
    ("x / 2", {}, None),
    ("x // 2", {}, None),
    ("x % 2", {}, None),
    ("x ** 2", {}, None),
    ("-x", {}, None),
    ("+x", {}, None),
    ("abs(x)", {}, None),
    ("len(x)", {}, None),
    ("round(x)", {}, None),
    ("lower(x)", {}, None),
    ("upper(x)", {}, None),
    ("startswith(x, 'a')", {}, False),
    ("endswith(x, 'a')", {}, False),
    ("contains(x, 'a')", {}, False),
    ("min(x, 3)", {}, 3),
    ("max(x, y)", {}, None),
    ("x > 5 or y == 1", {"y": 1}, True),
    ("x if x is not None else 0", {}, 0),
    ("x or 0", {}, 0),
    ("x > 5 * y", {"x": 10}, False),
]


@pytest.mark.parametrize(("source", "event", "expected"), NULL_TABLE)
def test_null_semantics(source: str, event: dict[str, Any], expected: Any) -> None:
    assert run(source, event) == expected


TYPE_TABLE = [
    ("x > 5", {"x": "7"}, False),
    ("x < 5", {"x": "7"}, False),
    ("x == 7", {"x": "7"}, False),
    ("x != 7", {"x": "7"}, False),
    ("x == '7'", {"x": 7}, False),
    ("x != '7'", {"x": 7}, False),
    ("x > y", {"x": "a", "y": 1}, False),
    ("x < y", {"x": [1], "y": 1}, False),
    ("x == y", {"x": [1], "y": [1]}, True),
    ("x > y", {"x": "b", "y": "a"}, True),
    ("x > 'a'", {"x": "b"}, True),
    ("x >= 2", {"x": 2.0}, True),
    ("x == 1", {"x": True}, True),
    ("x in ('NG', 'RU')", {"x": "NG"}, True),
    ("x in ('NG', 'RU')", {"x": 5}, False),
    ("x in ('NG', 'RU')", {"x": ["NG"]}, False),
    ("x not in ('NG', 'RU')", {"x": "US"}, True),
    ("x not in ('NG', 'RU')", {"x": ["US"]}, False),
    ("x in (1, 2)", {"x": 2.0}, True),
    ("x in 'abc'", {"x": "bc"}, True),
    ("x in 'abc'", {"x": 1}, False),
    ("'a' in x", {"x": ["a", "b"]}, True),
    ("'a' in x", {"x": "cat"}, True),
    ("'a' in x", {"x": 5}, False),
    ("x in y", {"x": [1], "y": {"k": 1}}, False),
    ("x not in y", {"x": "z", "y": ["a"]}, True),
    ("x + y", {"x": "a", "y": "b"}, "ab"),
    ("x + 1", {"x": "a"}, None),
    ("x * 3", {"x": "ab"}, None),
    ("x - 1", {"x": "a"}, None),
    ("x % 2", {"x": "%s"}, None),
    ("x / 0", {"x": 1}, None),
    ("x // 0", {"x": 1}, None),
    ("x % 0", {"x": 1}, None),
    ("x / 0.0", {"x": 1.5}, None),
    ("x / y", {"x": 1, "y": 4}, 0.25),
    ("x // 3 + x % 3", {"x": 7}, 3),
    ("x ** 2", {"x": 3}, 9),
    ("x ** 0.5", {"x": -4}, None),
    ("x ** -1", {"x": 0}, None),
    ("x ** 8", {"x": 1e300}, None),
    ("len(x)", {"x": "abc"}, 3),
    ("len(x)", {"x": [1, 2]}, 2),
    ("len(x)", {"x": 5}, None),
    ("abs(x)", {"x": -2.5}, 2.5),
    ("round(x)", {"x": 2.6}, 3),
    ("round(x, 2)", {"x": 2.345}, 2.35),
    ("round(x, -1)", {"x": 26}, 30),
    ("min(x, y, 4)", {"x": 3, "y": 1.5}, 1.5),
    ("max(x, 'a')", {"x": 3}, None),
    ("max(x, 'a')", {"x": "b"}, "b"),
    ("lower(x)", {"x": "AbC"}, "abc"),
    ("upper(x)", {"x": "AbC"}, "ABC"),
    ("upper(x)", {"x": 5}, None),
    ("startswith(x, '203.')", {"x": "203.0.113.9"}, True),
    ("endswith(x, '.ru')", {"x": "mail.ru"}, True),
    ("contains(x, 'bot')", {"x": "Googlebot/2.1"}, True),
    ("contains(x, 1)", {"x": "a1"}, False),
    ("-x", {"x": 2}, -2),
    ("x - -5", {"x": 2}, 7),
    ("2 * 3 - 1", {}, 5),
    ("1 < x <= 10 < y", {"x": 10, "y": 11}, True),
    ("1 < x <= 10 < y", {"x": 10, "y": 10}, False),
    ("1 < x <= 10 < y", {"x": 11, "y": 11}, False),
    ("a if c else b", {"a": 1, "b": 2, "c": True}, 1),
    ("a if c else b", {"a": 1, "b": 2, "c": None}, 2),
    ("not x", {"x": 0}, True),
]


@pytest.mark.parametrize(("source", "event", "expected"), TYPE_TABLE)
def test_type_semantics(source: str, event: dict[str, Any], expected: Any) -> None:
    result = run(source, event)
    assert result == expected
    assert type(result) is type(expected)


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10),
                    st.floats(-10, 10, allow_nan=False), st.sampled_from(["", "a", "b", "10"]),
                    st.lists(st.integers(0, 2), max_size=2))


def reference_compare(op: str, a: Any, b: Any) -> bool:
    numbers = (int, float, bool)
    same_kind = (type(a) in numbers and type(b) in numbers) or (
        type(a) is str and type(b) is str) or (
        a is not None and type(a) is type(b))
    if not same_kind:
        return False
    try:
        return bool(_OPS[op](a, b))
    except TypeError:
        return False


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(sorted(_OPS)), a=_VALUES, b=_VALUES)
def test_comparisons_match_the_reference_in_every_code_shape(op: str, a: Any, b: Any) -> None:
    expected = reference_compare(op, a, b)
    assert run(f"a {op} b", {"a": a, "b": b}) is expected
    for const in (5, "a", 2.5):
        assert run(f"a {op} {const!r}", {"a": a}) is reference_compare(op, a, const)
        assert run(f"{const!r} {op} a", {"a": a}) is reference_compare(op, const, a)


_EXPR = st.recursive(
    st.sampled_from(["a", "b", "f", "1", "0", "2.5", "'s'", "None", "True"]),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "<", ">=", "==",
                                          "!=", "and", "or", " in ", " not in "]), inner)
        .map(lambda t: f"({t[0]} {t[1]} {t[2]})".replace("== None", "is None")
             .replace("!= None", "is not None").replace("in None", "in 's'")),
        inner.map(lambda x: f"(not {x})"),
        inner.map(lambda x: f"(-{x})"),
        st.tuples(inner, inner).map(lambda t: f"max({t[0]}, {t[1]})"),
        inner.map(lambda x: f"abs({x})"),
        inner.map(lambda x: f"({x} ** 2)"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    ),
    max_leaves=12,
)
_FIELD = st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(source=_EXPR, a=_FIELD, b=_FIELD, f=_FIELD)
def test_evaluation_never_raises(source: str, a: Any, b: Any, f: Any) -> None:
    names = ExprNames(features=frozenset({"f"}))
    try:
        fn = compile_expression(source, names=names, origin="prop")
    except RuleCompileError:
        return  # e.g. `None < 1` or a literal-only power, refused at load
    fn({"a": a, "b": b}, {"f": f})


# --- lists ---------------------------------------------------------------------------------

def test_in_list_uses_event_time_for_expiry() -> None:
    store = ListStore()
    store.create("blocked")
    store.add("blocked", "dev-1")
    store.add("blocked", "dev-2", expires_at_ms=1000)
    store.add("blocked", 42)
    fn = compile_expression('in_list("blocked", device_id)', names=NAMES, origin="r")
    assert fn({"device_id": "dev-1", "timestamp": 5}, {}, store) is True
    assert fn({"device_id": "dev-2", "timestamp": 999}, {}, store) is True
    assert fn({"device_id": "dev-2", "timestamp": 1000}, {}, store) is False
    assert fn({"device_id": "42", "timestamp": 5}, {}, store) is True
    assert fn({"device_id": None, "timestamp": 5}, {}, store) is False
    assert fn({"timestamp": 5}, {}, store) is False


# --- refusals --------------------------------------------------------------------------------

HOSTILE = [
    ("__import__('os')", "'__'", (1, 1)),
    ("().__class__.__bases__", "'__'", (1, 1)),
    ("event.__dict__", "'__'", (1, 1)),
    ("x.__class__", "'__'", (1, 1)),
    ("open('x')", "function 'open' is not allowed", (1, 1)),
    ("exec('1')", "function 'exec' is not allowed", (1, 1)),
    ("eval('1')", "function 'eval' is not allowed", (1, 1)),
    ("getattr(x, 'y')", "function 'getattr' is not allowed", (1, 1)),
    ("amount > 1 and open('x')", "function 'open'", (1, 16)),
    ("9**9**9", "exponent", (1, 4)),
    ("x ** y", "exponent", (1, 6)),
    ("x ** 9", "exponent", (1, 6)),
    ("(x ** 2) ** 2", "nested powers", (1, 1)),
    ("[x for x in y]", "comprehensions", (1, 1)),
    ("{x: 1 for x in y}", "comprehensions", (1, 1)),
    ("(x for x in y)", "generator", (1, 1)),
    ("lambda: 1", "lambda", (1, 1)),
    ("features[x]", "string literal", (1, 1)),
    ("features['nope']", "unknown feature 'nope'", (1, 10)),
    ("in_list('nope', x)", "unknown list 'nope'", (1, 9)),
    ("in_list(name, x)", "string literal", (1, 1)),
    ("in_list('blocked')", "2 arguments", (1, 1)),
    ("pattern('login_then_fail')", "declares no patterns", (1, 9)),
    ("model('fraud_v1') > 0.5", "declares no models", (1, 7)),
    ("a.b.c", "event.<field>", (1, 1)),
    ("a.b", "event.<field>", (1, 1)),
    ("x.lower()", "by name", (1, 1)),
    ("event['x']", "features[", (1, 1)),
    ("x[0]", "features[", (1, 1)),
    ("x[1:2]", "features[", (1, 1)),
    ("f'{x}'", "f-strings", (1, 1)),
    ("(y := 1)", ":=", (1, 2)),
    ("max(*x)", "starred", (1, 5)),
    ("round(x, ndigits=2)", "keyword", (1, 10)),
    ("round(x, y)", "digits", (1, 10)),
    ("min(x)", "2 to 16 arguments", (1, 1)),
    ("{'a': 1}", "dict", (1, 1)),
    ("x | y", "'|' is not allowed", (1, 1)),
    ("1 << 100", "'<<' is not allowed", (1, 1)),
    ("~x", "'~'", (1, 1)),
    ("x == None", "is None", (1, 1)),
    ("None != x", "is None", (1, 1)),
    ("x in (1, None)", "None in a list", (1, 10)),
    ("x is 5", "only compares with None", (1, 1)),
    ("x in [y]", "only literals", (1, 7)),
    ("(1, 2)", "only allowed on the right of `in`", (1, 1)),
    ("x in 5", "not a number", (1, 6)),
    ("event", "on its own", (1, 1)),
    ("features", "on its own", (1, 1)),
    ("abs", "is a function", (1, 1)),
    ("b'x'", "bytes literals", (1, 1)),
    ("1j", "complex literals", (1, 1)),
    ("x == 10**19", "exponent", (1, 10)),
    ("x == 10000000000000000000", "too large", (1, 6)),
    ("1e999", "too large", (1, 1)),
    ("yield x", "yield", (1, 1)),
    ("await x", "await", (1, 1)),
    ("x >", "syntax error", (1, 4)),
    ("x = 1", "syntax error", (1, 1)),
    ("x > 1)", "unmatched ')'", (1, 6)),
    ("(x > 1", "never closed", (1, 1)),
    ("", "empty", (1, 1)),
    ("   ", "empty", (1, 1)),
    ("x\0", "syntax error", (1, 1)),
]


@pytest.mark.parametrize(("source", "fragment", "position"), HOSTILE,
                         ids=[h[0][:30] for h in HOSTILE])
def test_hostile_and_invalid_expressions_are_refused(source: str, fragment: str,
                                                     position: tuple[int, int]) -> None:
    err = refused(source)
    assert fragment in str(err)
    assert (err.line, err.column) == position


def test_position_is_in_characters_on_later_lines() -> None:
    err = refused("amount > 5\n  and éé > 1 and getattr(x, 'y')")
    assert (err.line, err.column) == (2, 18)
    err = refused("'é' == x and __import__('os')")
    assert (err.line, err.column) == (1, 14)


def test_invalid_escape_in_a_string_is_not_a_warning() -> None:
    assert run(r"x == '\d'", {"x": "\\d"}) is True


def test_multiline_and_indented_sources_compile() -> None:
    assert run("  x > 1\n  and y < 2  # why\n", {"x": 2, "y": 1}) is True
    assert run("(x > 1 or\n y < 2)", {"x": 0, "y": 1}) is True


def test_source_length_limit() -> None:
    assert run(" " * (MAX_SOURCE_LEN - 1) + "1") == 1
    err = refused("x + " * 1000 + "1")
    assert f"limit of {MAX_SOURCE_LEN}" in str(err)


def test_string_and_integer_limits() -> None:
    assert run("x == '" + "a" * 1000 + "'", {"x": "a" * 1000}) is True
    err = refused("x == '" + "a" * 1001 + "'")
    assert "1001 characters" in str(err) and (err.line, err.column) == (1, 6)
    assert run("x == 1000000000000000000", {"x": 10**18}) is True


@pytest.mark.parametrize("source", [
    "(" * 1000 + "1" + ")" * 1000,
    "[" * 40 + "]" * 40,
    "-" * 3999 + "x",
    "not " * 999 + "x",
    "2**" * 1300 + "2",
    "x." * 1999 + "x",
    "+".join(["a"] * 40),
    "f(" * 33 + ")" * 33,
])
def test_deep_nesting_is_refused_cleanly(source: str) -> None:
    err = refused(source[:MAX_SOURCE_LEN])
    assert "nested" in str(err) or "exponent" in str(err) or "__" in str(err)


def test_nesting_just_under_the_limit_compiles() -> None:
    source = "(" * (MAX_DEPTH - 1) + "x" + ")" * (MAX_DEPTH - 1)
    assert run(source, {"x": 3}) == 3
    # 31 nested operators: the generated code stays within Python's own limits.
    source = "x"
    for _ in range(MAX_DEPTH - 1):
        source = f"(1 + {source})"
    assert run(source, {"x": 0}) == MAX_DEPTH - 1
    source = "x"
    for _ in range(MAX_DEPTH // 2 - 1):
        source = f"(({source}) > 0) + 1"
    assert run(source, {"x": 1}) == 2


def test_node_count_limit() -> None:
    flat = " or ".join(f"x == {i}" for i in range(MAX_NODES // 3))
    assert run(flat, {"x": 3}) is True
    err = refused(" or ".join(f"x == {i}" for i in range(MAX_NODES // 2)))
    assert f"more than {MAX_NODES} parts" in str(err)


def test_large_in_list_literal_is_one_set_lookup() -> None:
    values = ", ".join(repr(f"c{i}") for i in range(300))
    fn = compile_expression(f"x in ({values})", names=NAMES, origin="r")
    assert fn({"x": "c299"}, {}) is True
    assert fn({"x": "c300"}, {}) is False


def test_pattern_and_model_read_their_results_when_declared() -> None:
    names = ExprNames(patterns=frozenset({"login_fail"}), models=frozenset({"m1"}))
    fn = compile_expression("pattern('login_fail') and model('m1') > 0.5", names=names,
                            origin="r")
    assert fn({}, {"pattern:login_fail": True, "model:m1": 0.9}) is True
    assert fn({}, {"pattern:login_fail": True, "model:m1": None}) is False
    err = refused("model('m2')", names)
    assert "unknown model 'm2'" in str(err) and "m1" in str(err)


def test_translations_share_helpers_but_not_temporaries() -> None:
    one = translate_expression("x > y", names=NAMES, origin="a", prefix="0_")
    two = translate_expression("x > y", names=NAMES, origin="b", prefix="1_")
    assert "_v0_1" in one.code and "_v1_1" in two.code
    assert one.namespace["_gt"] is two.namespace["_gt"]
    assert "__builtins__" not in one.namespace


def test_generated_code_has_no_builtins() -> None:
    fn = compile_expression("x > 1", names=NAMES, origin="r")
    assert getattr(fn, "__globals__")["__builtins__"] == {}  # noqa: B009
    assert fn({"x": 2.0}, {}) is True
