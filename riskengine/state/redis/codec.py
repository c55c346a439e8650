"""Texts that carry event values to the Lua script and back, exactly.

A stored value (a *slot*, riskengine/state/redis/plan.py) is one of two texts:

* the micro-units ``q(v) = round(v * 1_000_000)`` in decimal, what sum/avg/stddev
  read: Python quantises (`riskengine.features.aggregators.quantize`, the contract's one
  definition) and the script only adds integers;
* the *value text* ``R(v)``, which gives back the very value that came in (type
  included), what min/max/first/last read; when count_distinct reads the slot, followed
  by ``\\x02`` + the *distinct key* ``C(v)`` if that differs from ``R(v)``: values equal
  in Python (``1``, ``1.0``, ``True``) share one distinct key.

A field that both kinds of feature read has one slot of each.

    >>> value_text(0.1), value_text(3), value_text("3"), value_text(True)
    ('0.1', '3', "'3", 'T')
    >>> [slot_text(v, quantized=True, distinct=False) for v in (0.1, 2.5e-6, 3.5e-6)]
    ['100000', '2', '4']
    >>> slot_text(2.0, quantized=False, distinct=True)
    '2.0\\x022'
    >>> decode_value(b"2.0"), decode_value(b"'x"), decode_value(b"-7")
    (2.0, 'x', -7)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from riskengine.exceptions import RiskEngineError
from riskengine.features.aggregators import quantize

MAX_KEY_TEXT = 120
"""Longer key values are replaced by a digest in key names."""


class RedisStateError(RiskEngineError):
    """Redis feature state cannot be used as asked (bad value, unusable server)."""


class StateUnavailableError(RedisStateError):
    """The shared state cannot be reached (at start) or its URL is not usable."""


def value_text(v: Any) -> str:
    """R(v): a text that `decode_value` turns back into an equal value of the same type."""
    if isinstance(v, str):
        return "'" + v
    if v is True:
        return "T"
    if v is False:
        return "F"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return repr(float(v))
    return "J" + json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def distinct_text(v: Any) -> str:
    """C(v): equal for values that are equal in Python (1 == 1.0 == True), else different."""
    if isinstance(v, str):
        return "'" + v
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(float(v))
    return "J" + json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def micro_units(v: Any, field: str) -> int:
    """q(v) of a value summed by a feature (`riskengine.features.aggregators.quantize`),
    refusing anything but a finite number."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise RedisStateError(f"field {field!r} is summed by a feature and must be a number, "
                              f"got {type(v).__name__}")
    try:
        return quantize(v)
    except (OverflowError, ValueError):
        raise RedisStateError(f"field {field!r}: {v!r} is not a finite number") from None


def slot_text(v: Any, *, quantized: bool, distinct: bool, field: str = "value") -> str:
    """The text of one slot of the value `v`: q(v), or R(v) plus its distinct key when
    the slot is `distinct` and the key differs."""
    if quantized:
        return str(micro_units(v, field))
    text = value_text(v)
    if distinct and not isinstance(v, str):
        key = distinct_text(v)
        if key != text:
            text += "\x02" + key
    return text


_FLOAT_MARKS = frozenset(".eEni")


def decode_value(raw: bytes | str) -> Any:
    """The value whose `value_text` is `raw`."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    head = text[:1]
    if head == "'":
        return text[1:]
    if head == "T":
        return True
    if head == "F":
        return False
    if head == "J":
        return json.loads(text[1:])
    if _FLOAT_MARKS.isdisjoint(text):
        return int(text)
    return float(text)


def key_text(values: tuple[Any, ...]) -> str:
    """The key value part of an entity's key name (Python equality: 1 and 1.0 are one key)."""
    if len(values) == 1:
        text = distinct_text(values[0])
    else:
        text = json.dumps([distinct_text(v) for v in values], ensure_ascii=False,
                          separators=(",", ":"))
    if len(text) > MAX_KEY_TEXT:
        return "#" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return text


def event_digest(event_id: str) -> bytes:
    """6 bytes identifying an event id in an entity's guard records."""
    return hashlib.blake2b(event_id.encode(), digest_size=6).digest()
