"""Event parsing: timestamps to epoch milliseconds, event ids, scene schema checks.

A refused event raises `EventValidationError` naming the field; nothing else happens.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from riskengine.exceptions import ConfigError, EventValidationError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
MIN_TS_MS = 0
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def parse_timestamp(value: object) -> int:
    """Event time as int epoch ms from epoch ms (int, integral float) or ISO-8601 with offset.

    >>> parse_timestamp(1700000000000)
    1700000000000
    >>> parse_timestamp("2023-11-14T22:13:20Z")
    1700000000000
    """
    if type(value) is int:
        ms = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise EventValidationError(
                f"timestamp {value!r} is not whole epoch milliseconds", field="timestamp")
        ms = int(value)
    elif isinstance(value, str):
        ms = _parse_iso(value)
    elif value is None:
        raise EventValidationError("timestamp is required (epoch ms or ISO-8601 with offset)",
                                   field="timestamp")
    else:
        raise EventValidationError(
            f"timestamp must be epoch milliseconds or an ISO-8601 string, got "
            f"{type(value).__name__}", field="timestamp")
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise EventValidationError(
            f"timestamp {value!r} is outside 1970..9999", field="timestamp")
    return ms


def _parse_iso(text: str) -> int:
    if len(text) > 64:
        raise EventValidationError("timestamp string is too long", field="timestamp")
    stripped = text.strip()
    if stripped.endswith(("Z", "z")):
        stripped = stripped[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise EventValidationError(
            f"timestamp {text!r} is not ISO-8601 (e.g. 2026-11-23T10:00:00+08:00) "
            "nor epoch milliseconds", field="timestamp") from None
    if moment.tzinfo is None:
        raise EventValidationError(
            f"timestamp {text!r} has no UTC offset; add one (Z or +08:00)", field="timestamp")
    return (moment - _EPOCH) // _ONE_MS  # sub-millisecond digits are dropped (floor)


MAX_ABS_NUMBER = 10**15
"""Numbers beyond ±10^15 are refused: sums stay exact and convert back to floats."""


def _is_number(v: Any) -> bool:
    if type(v) is float:
        return -MAX_ABS_NUMBER <= v <= MAX_ABS_NUMBER  # False for NaN and infinities
    return type(v) is int and -MAX_ABS_NUMBER <= v <= MAX_ABS_NUMBER


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: type(v) is str,
    "int": lambda v: _is_number(v) and (type(v) is int or v.is_integer()),
    "float": _is_number,
    "number": _is_number,
    "bool": lambda v: type(v) is bool,
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One schema entry: the field name, its type and whether it is required."""

    name: str
    type: str
    required: bool

    @classmethod
    def parse(cls, name: str, spec: object, *, scene: str) -> FieldSpec:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"scene {scene!r}: schema field names must be strings")
        if not isinstance(spec, str):
            raise ConfigError(f"scene {scene!r}: schema field {name!r} needs a type such as "
                              f"'str' or 'float?', got {spec!r}")
        required = not spec.endswith("?")
        kind = spec.rstrip("?").strip()
        if kind not in _TYPE_CHECKS:
            raise ConfigError(f"scene {scene!r}: schema field {name!r} has unknown type "
                              f"{kind!r}; use one of {', '.join(sorted(_TYPE_CHECKS))}")
        return cls(name, kind, required)


class EventParser:
    """Validates raw events for one scene and normalises `event_id` and `timestamp`.

    Built once per scene; `parse` is the per-event path.
    """

    def __init__(self, scene: str, schema: tuple[FieldSpec, ...],
                 numeric_fields: frozenset[str]) -> None:
        self.scene = scene
        checks = []
        declared = {f.name for f in schema}
        for spec in schema:
            checks.append((spec.name, spec.type, spec.required, _TYPE_CHECKS[spec.type]))
        for name in sorted(numeric_fields - declared):
            checks.append((name, "number", False, _TYPE_CHECKS["number"]))
        for spec in schema:
            if spec.name in numeric_fields and spec.type not in ("int", "float", "number"):
                raise ConfigError(
                    f"scene {scene!r}: field {spec.name!r} is summed or compared by a "
                    f"feature but the schema says {spec.type!r}; declare it float")
        self._checks = tuple(checks)

    def parse(self, raw: object) -> dict[str, Any]:
        """Return a new dict: the event with `event_id` (str) and `timestamp` (int ms)."""
        if not isinstance(raw, Mapping):
            raise EventValidationError(
                f"an event must be a JSON object, got {type(raw).__name__}")
        event = dict(raw)
        ts = event.get("timestamp")
        if type(ts) is not int or not MIN_TS_MS <= ts <= MAX_TS_MS:
            event["timestamp"] = parse_timestamp(ts)
        event_id = event.get("event_id")
        if event_id is None:
            event["event_id"] = uuid.uuid4().hex
        elif type(event_id) is not str:
            raise EventValidationError(
                f"event_id must be a string, got {type(event_id).__name__}", field="event_id")
        elif not event_id or len(event_id) > 256:
            raise EventValidationError("event_id must be 1..256 characters", field="event_id")
        for name, kind, required, check in self._checks:
            value = event.get(name)
            if value is None:
                if required:
                    raise EventValidationError(
                        f"field {name!r} is required in scene {self.scene!r}", field=name)
                continue
            if not check(value):
                raise EventValidationError(
                    f"field {name!r} must be {_describe(kind)}, got {type(value).__name__} "
                    f"{_preview(value)}", field=name)
        return event


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(kind: str) -> str:
    if kind in ("float", "number", "int"):
        return f"{kind} (finite, |x| <= 1e15)"
    return kind
