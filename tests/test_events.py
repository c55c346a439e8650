"""Event parsing: timestamps, ids, schema types; every refusal names the field."""

from __future__ import annotations

import pytest

from riskengine.events import EventParser, FieldSpec, parse_timestamp
from riskengine.exceptions import ConfigError, EventValidationError

TS = 1_700_000_000_000


@pytest.mark.parametrize(("value", "expected"), [
    (TS, TS),
    (float(TS), TS),
    ("2023-11-14T22:13:20Z", TS),
    ("2023-11-15T06:13:20+08:00", TS),
    ("2023-11-14T22:13:20.123999+00:00", TS + 123),
    ("1970-01-01T00:00:00Z", 0),
])
def test_timestamps_become_epoch_ms(value: object, expected: int) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize("value", [
    None, True, "yesterday", "2023-11-14T22:13:20", 1.5, float("nan"), float("inf"), -1,
    10**20, [TS], {"ts": TS}, "2023-11-14T22:13:20Z" * 10,
])
def test_bad_timestamps_are_refused(value: object) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_timestamp(value)
    assert info.value.field == "timestamp"


def parser() -> EventParser:
    schema = (FieldSpec.parse("account", "str", scene="s"),
              FieldSpec.parse("amount", "float", scene="s"),
              FieldSpec.parse("n", "int?", scene="s"),
              FieldSpec.parse("vip", "bool?", scene="s"))
    return EventParser("s", schema, frozenset({"amount", "fee"}))


def test_valid_event_is_normalised_without_touching_the_input() -> None:
    raw = {"timestamp": "2023-11-14T22:13:20Z", "account": "A", "amount": 5, "extra": [1]}
    event = parser().parse(raw)
    assert event["timestamp"] == TS
    assert isinstance(event["event_id"], str) and len(event["event_id"]) == 32
    assert event["extra"] == [1]
    assert raw["timestamp"] == "2023-11-14T22:13:20Z" and "event_id" not in raw


@pytest.mark.parametrize(("event", "field"), [
    ({"timestamp": TS, "amount": 1.0}, "account"),
    ({"timestamp": TS, "account": 7, "amount": 1.0}, "account"),
    ({"timestamp": TS, "account": "A", "amount": "1.0"}, "amount"),
    ({"timestamp": TS, "account": "A", "amount": True}, "amount"),
    ({"timestamp": TS, "account": "A", "amount": float("nan")}, "amount"),
    ({"timestamp": TS, "account": "A", "amount": 1e16}, "amount"),
    ({"timestamp": TS, "account": "A", "amount": 1.0, "n": 1.5}, "n"),
    ({"timestamp": TS, "account": "A", "amount": 1.0, "vip": 1}, "vip"),
    ({"timestamp": TS, "account": "A", "amount": 1.0, "fee": "x"}, "fee"),
    ({"timestamp": TS, "account": "A", "amount": 1.0, "event_id": 12}, "event_id"),
    ({"timestamp": TS, "account": "A", "amount": 1.0, "event_id": ""}, "event_id"),
    ({"timestamp": TS, "account": "A", "amount": 1.0, "event_id": "x" * 300}, "event_id"),
    ({"account": "A", "amount": 1.0}, "timestamp"),
])
def test_schema_violations_name_the_field(event: dict[str, object], field: str) -> None:
    with pytest.raises(EventValidationError) as info:
        parser().parse(event)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize("raw", [None, [], "event", 42, b"{}"])
def test_non_objects_are_refused(raw: object) -> None:
    with pytest.raises(EventValidationError, match="JSON object"):
        parser().parse(raw)


def test_optional_fields_accept_null_and_absence() -> None:
    event = parser().parse({"timestamp": TS, "account": "A", "amount": 1, "n": None})
    assert event["n"] is None and "vip" not in event


def test_schema_type_must_be_known() -> None:
    with pytest.raises(ConfigError, match="unknown type 'decimal'"):
        FieldSpec.parse("amount", "decimal", scene="s")


def test_numeric_feature_target_declared_as_string_is_refused() -> None:
    with pytest.raises(ConfigError, match="declare it float"):
        EventParser("s", (FieldSpec.parse("amount", "str", scene="s"),), frozenset({"amount"}))
