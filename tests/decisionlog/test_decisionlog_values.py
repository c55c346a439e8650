"""Hostile values round trip exactly through both databases and through the codec."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskengine.decisionlog import DecisionLog, codec
from tests.decisionlog.logsupport import record, write_all

NASTY_STRINGS = [
    "", "plain", "中文 交易 · 風控", "emoji 🦊👨‍👩‍👧", "rtl עברית العربية", "e\u0301 combining",
    "nul\x00inside", "\x00", "lone \ud800 high", "lone \udfff low", codec.MARK + "marker first",
    "marker " + codec.MARK + " inside", "\\u0000 spelled", '"quotes" \\ backslash',
    "\n\r\t\x07\x1b control", "\u2028\u2029 separators", "\ufeffbom", "\uffff\U0010ffff",
    "'; DROP TABLE decisions; --",
]


NUMBERS = [0, -1, 2**62, -(2**64), 10**30, 0.1, 1e-300, 5e-324, 1e300, -2.5, 1e16, -1.5e22,
           -0.0, 0.0, 1.0, 123456789012345.67, True, False, None]


def _nested(depth: int) -> Any:
    value: Any = {"leaf": NASTY_STRINGS}
    for i in range(depth):
        value = {f"level {i} \x00": [value, i, -i * 1.5, None, True]}
    return value


def test_hostile_values_round_trip(log: DecisionLog) -> None:
    huge = "x" * 2_000_000 + "尾"
    document = {"event_id": "nasty\x00id", "strings": NASTY_STRINGS, "nested": _nested(60),
                "numbers": NUMBERS,
                "empty": {}, "list": [], "huge": huge, "keys": {s: s for s in NASTY_STRINGS}}
    event = {"event_id": "nasty\x00id", "timestamp": 1, "note": huge,
             "fields": {s: [s] for s in NASTY_STRINGS}}
    records = [record(1, event_id="nasty\x00id", scene="scène\ud800", ruleset_version="v\x00",
                      document=document, event=event)]
    records += [record(i + 2, event_id=s, scene=s, document={"s": s}, event={"s": s})
                for i, s in enumerate(NASTY_STRINGS)]
    write_all(log, records)

    found = log.get("nasty\x00id")
    assert found == {**document, "logged_at": records[0].logged_at}
    assert repr(found["numbers"]) == repr(NUMBERS)  # types and signs too: 1e16 is no int
    replay = list(log.events_after(0))
    assert replay == [(r.lsn, r.scene, r.event) for r in records]
    for r in records[1:]:
        assert log.get(r.event_id) == {"s": r.event_id, "logged_at": r.logged_at}
        assert [row["s"] for row in log.query(scene=r.scene)] == [r.scene]


# Every code point, lone surrogates included, with the awkward ones made frequent.
chars = st.characters(exclude_categories=()) | st.sampled_from(
    ["\x00", "\ud800", "\udfff", codec.MARK, "\\", '"', "中", "\n"])
texts = st.text(chars, max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | texts
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(texts, children, max_size=4),
    max_leaves=20)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_codec_round_trips_any_json_value(value: Any) -> None:
    text = codec.dumps(value)
    text.encode("utf-8")  # storable as UTF-8 text
    assert not any("\x00" in s for s in _strings(json.loads(text)))  # and as jsonb
    assert codec.loads(text) == value


@settings(max_examples=300, deadline=None)
@given(texts)
def test_codec_text_round_trips_and_is_storable(text: str) -> None:
    encoded = codec.encode_text(text)
    assert "\x00" not in encoded
    encoded.encode("utf-8")
    assert codec.decode_text(encoded) == text


@pytest.mark.parametrize("value", [{"score": float("nan"), "feature": None},
                                   [None, float("inf")], {"deep": [{"x": -float("inf")}]}])
def test_codec_refuses_nan_and_infinities_beside_nulls(value: Any) -> None:
    with pytest.raises(ValueError):
        codec.dumps(value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_plain_text_of_orjson_output_is_stored_exactly_or_refused(value: Any) -> None:
    try:
        encoded = orjson.dumps(value)
    except TypeError:  # lone surrogates, integers past 64 bits: never handed over
        return
    text = codec.plain_text(encoded)
    if text is None:
        return
    text.encode("utf-8")
    assert not any("\x00" in s for s in _strings(json.loads(text)))
    assert codec.loads(text) == value
    assert repr(codec.loads(text)) == repr(value)  # 1e16 stays a float, -0.0 its sign


def test_plain_text_leaves_what_needs_an_escape_to_dumps() -> None:
    for value in ["a\x00b", codec.MARK + "x", {"k": 1e16}, [-0.0], {codec.FLOAT_MARK: 1}]:
        assert codec.plain_text(orjson.dumps(value)) is None
        assert codec.loads(codec.dumps(value)) == value
    assert codec.plain_text(orjson.dumps({"a": [1, 0.5, None, "中"]})) == \
        '{"a":[1,0.5,null,"中"]}'
