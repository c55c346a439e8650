"""Event parsing: timestamps to epoch milliseconds, event ids, scene schema checks.

A refused event raises `EventValidationError` naming the field; nothing else happens.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from riskengine.exceptions import ConfigError, EventValidationError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
MIN_TS_MS = 0
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def parse_timestamp_text(value: str) -> int:
    """Event time from text (a query parameter, a CSV cell): epoch ms when it is ASCII
    digits (with an optional minus), else ISO-8601 with offset (`parse_timestamp`).

    >>> parse_timestamp_text("1700000000000") == parse_timestamp_text("2023-11-14T22:13:20Z")
    True
    """
    digits = value.removeprefix("-")  # ASCII digits only: int() refuses '²', takes '٣'
    return parse_timestamp(int(value) if digits.isascii() and digits.isdigit() else value)


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

    Built once per scene: the checks of the schema are generated into one function,
    `parse`, the per-event path. It returns the input itself when nothing needs
    rewriting, else a copy: the input is never modified.
    """

    def __init__(self, scene: str, schema: tuple[FieldSpec, ...],
                 numeric_fields: frozenset[str]) -> None:
        self.scene = scene
        checks = []
        declared = {f.name for f in schema}
        for spec in schema:
            checks.append((spec.name, spec.type, spec.required))
        for name in sorted(numeric_fields - declared):
            checks.append((name, "number", False))
        for spec in schema:
            if spec.name in numeric_fields and spec.type not in ("int", "float", "number"):
                raise ConfigError(
                    f"scene {scene!r}: field {spec.name!r} is summed or compared by a "
                    f"feature but the schema says {spec.type!r}; declare it float")
        self._checks = tuple(checks)
        self.parse: Callable[[object], dict[str, Any]] = self._generate()

    def _generate(self) -> Callable[[object], dict[str, Any]]:
        lines = [
            "def parse(raw):",
            "    if type(raw) is dict:",
            "        event = raw",
            "    elif isinstance(raw, Mapping):",
            "        event = dict(raw)",
            "    else:",
            "        refuse_kind(raw)",
            "    ts = event.get('timestamp')",
            f"    if type(ts) is not int or not {MIN_TS_MS} <= ts <= {MAX_TS_MS}:",
            "        if event is raw:",
            "            event = dict(raw)",
            "        event['timestamp'] = parse_timestamp(ts)",
            "    event_id = event.get('event_id')",
            "    if type(event_id) is not str or not event_id or len(event_id) > 256:",
            "        if event_id is not None:",
            "            refuse_id(event_id)",
            "        if event is raw:",
            "            event = dict(raw)",
            "        event['event_id'] = uuid4().hex",
        ]
        bound = MAX_ABS_NUMBER
        for i, (name, kind, required) in enumerate(self._checks):
            if kind == "str":
                bad = "type(v) is not str"
            elif kind == "bool":
                bad = "type(v) is not bool"
            elif kind == "int":
                bad = (f"not ((type(v) is int or (type(v) is float and v.is_integer())) "
                       f"and {-bound} <= v <= {bound})")
            else:
                bad = f"not ((type(v) is float or type(v) is int) and {-bound} <= v <= {bound})"
            lines += [f"    v = event.get({name!r})",
                      "    if v is None:",
                      f"        {f'refuse_missing({i})' if required else 'pass'}",
                      f"    elif {bad}:",
                      f"        refuse_type({i}, v)"]
        lines.append("    return event")
        env: dict[str, Any] = {"Mapping": Mapping, "parse_timestamp": parse_timestamp,
                               "uuid4": uuid.uuid4, "refuse_kind": _refuse_kind,
                               "refuse_id": _refuse_id, "refuse_missing": self._refuse_missing,
                               "refuse_type": self._refuse_type}
        exec(compile("\n".join(lines) + "\n", f"<event parser of scene {self.scene!r}>",
                     "exec"), env)
        return env["parse"]  # type: ignore[no-any-return]

    def _refuse_missing(self, index: int) -> NoReturn:
        name = self._checks[index][0]
        raise EventValidationError(f"field {name!r} is required in scene {self.scene!r}",
                                   field=name)

    def _refuse_type(self, index: int, value: object) -> NoReturn:
        name, kind, _ = self._checks[index]
        raise EventValidationError(
            f"field {name!r} must be {_describe(kind)}, got {type(value).__name__} "
            f"{_preview(value)}", field=name)


def _refuse_kind(raw: object) -> NoReturn:
    raise EventValidationError(f"an event must be a JSON object, got {type(raw).__name__}")


def _refuse_id(event_id: object) -> NoReturn:
    if type(event_id) is not str:
        raise EventValidationError(
            f"event_id must be a string, got {type(event_id).__name__}", field="event_id")
    raise EventValidationError("event_id must be 1..256 characters", field="event_id")


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(kind: str) -> str:
    if kind in ("float", "number", "int"):
        return f"{kind} (finite, |x| <= 1e15)"
    return kind
