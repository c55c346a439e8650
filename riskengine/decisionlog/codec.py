"""Lossless text and JSON encoding for the decision log.

Events come from clients, so their strings may hold a NUL character or a lone UTF-16
surrogate (`"\\ud800"` is valid JSON). Neither can be stored as UTF-8 text, and
PostgreSQL refuses NUL in `text` and in `jsonb` alike. Such a string is stored as a marker
character (U+FDD0, a Unicode noncharacter) followed by its ASCII JSON escape.

`jsonb` also rewrites numbers: `1e+16` comes back as the integer `10000000000000000` and
`-0.0` as `0.0`. Floats that Python writes with a positive exponent, and negative zero, are
stored as a string of a second marker (U+FDD1) and their `repr`.

A string that already begins with a marker is escaped too, so decoding is exact. Values
without any of these are stored as their plain compact JSON: orjson's output, which
`json.loads` reads back to the same values (the stdlib encoder takes over where orjson
refuses or may differ: lone surrogates, integers past 64 bits, keys that are no strings,
and any value whose orjson output holds a ``null``, since orjson writes NaN and the
infinities as ``null`` where the log refuses them). Values orjson encodes that the stdlib
refuses (UUIDs, enums) are stored as orjson writes them.

>>> encode_text("a\\x00b")
'\\ufdd0a\\\\u0000b'
>>> decode_text(encode_text("a\\x00b")) == "a\\x00b"
True
>>> loads(dumps({"k": ["\\ud800", "plain"]})) == {"k": ["\\ud800", "plain"]}
True
>>> dumps([1e300, 0.5])
'["\\ufdd11e+300",0.5]'

"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["FLOAT_MARK", "MARK", "decode_text", "dumps", "encode_text", "loads", "plain_text"]

MARK = "\ufdd0"
FLOAT_MARK = "\ufdd1"
_MARKS = (MARK, FLOAT_MARK)
_MARK_BYTES = tuple(mark.encode() for mark in _MARKS)
_MARK_LEAD = _MARK_BYTES[0][:1]
assert all(m.startswith(_MARK_LEAD) for m in _MARK_BYTES)  # U+FDD0, U+FDD1: EF B7 90/91
# datetimes, dataclasses and subclasses are refused (TypeError), so the stdlib encoder
# treats them as it always did
_ORJSON_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                   | orjson.OPT_PASSTHROUGH_SUBCLASS)
_EXACT_FLOAT_LIMIT = 1e16  # from here on, repr() uses an exponent


def _storable(text: str) -> bool:
    if "\x00" in text or text.startswith(_MARKS):
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_text(text: str) -> str:
    """`text` itself when it can be stored as UTF-8 text, else its marked escape."""
    if _storable(text):
        return text
    return MARK + json.dumps(text, ensure_ascii=True)[1:-1]


def decode_text(text: str) -> str:
    """The inverse of `encode_text`."""
    if text.startswith(MARK):
        decoded: str = json.loads('"' + text[1:] + '"')
        return decoded
    return text


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        return encode_text(value)
    if isinstance(value, float) and (abs(value) >= _EXACT_FLOAT_LIMIT or (
            value == 0.0 and math.copysign(1.0, value) < 0)) and math.isfinite(value):
        return FLOAT_MARK + repr(value)
    if isinstance(value, dict):
        return {encode_text(k) if isinstance(k, str) else k: _escape(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape(v) for v in value]
    return value


def _unescape(value: Any) -> Any:
    if isinstance(value, str):
        return float(value[1:]) if value.startswith(FLOAT_MARK) else decode_text(value)
    if isinstance(value, dict):
        return {decode_text(k): _unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def plain_text(encoded: bytes) -> str | None:
    """`encoded` (orjson output) as the log stores it when it needs no escape, else None
    (then store `dumps` of the value). orjson writes NaN and the infinities as ``null``:
    the caller vouches that the value held none."""
    # orjson escapes NUL as \u0000, refuses lone surrogates and shows big floats as "e+";
    # a false alarm (such text inside a string) only costs the caller a `dumps`. A
    # pattern is looked for only when one of its bytes occurs at all: a byte is a
    # `memchr`, a longer pattern a slower search, and most documents hold no backslash,
    # "+" or mark ("-" is in too many event ids to help).
    if ((b"\\" in encoded and b"\\u0000" in encoded)
            or (b"+" in encoded and b"e+" in encoded)
            or b"-0.0" in encoded
            or (_MARK_LEAD in encoded
                and (_MARK_BYTES[0] in encoded or _MARK_BYTES[1] in encoded))):
        return None
    return encoded.decode()


def dumps(value: Any) -> str:
    """Compact JSON text that is valid UTF-8 and holds no NUL (see the module docstring).

    Raises `TypeError` or `ValueError` for values JSON cannot hold (objects, NaN).
    """
    try:
        encoded = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:  # lone surrogates, big integers, other keys, depth: the stdlib's turn
        pass
    else:
        if b"null" not in encoded:  # else perhaps a NaN: the stdlib encoder refuses those
            text = plain_text(encoded)
            if text is not None:
                return text
    text = _dumps(value)
    # json.dumps escapes NUL as \u0000 and leaves lone surrogates raw; big floats show "e+".
    # A false alarm (such text inside a string) only costs the walk below.
    if ("\\u0000" not in text and "e+" not in text and "-0.0" not in text
            and MARK not in text and FLOAT_MARK not in text and _storable(text)):
        return text
    return _dumps(_escape(value))


def loads(text: str) -> Any:
    """The inverse of `dumps`."""
    value = json.loads(text)
    return _unescape(value) if MARK in text or FLOAT_MARK in text else value
