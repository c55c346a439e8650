"""orjson where it gives exactly what the json module gives; None or False where it may not.

JSON Lines are read and written with orjson (several times faster than the json module),
but what a replay reads and writes is defined by the json module as `riskengine.batch.io`
uses it: ``json.loads`` refusing NaN and Infinity, and ``json.JSONEncoder(ensure_ascii=False,
separators=(",", ":"), default=str)``. The two were compared value by value (every code
point, millions of random floats and number strings); they differ only here, and there the
caller uses the json module:

- reading: orjson turns an integer beyond 64 bits into a float (json keeps the integer), so
  an object holding a float of magnitude 2**63 or more is handed to json; orjson accepts
  nesting json refuses (json stops near Python's recursion limit, orjson at 1,024 levels),
  so a long line with many brackets is handed to json; everything orjson refuses (NaN,
  Infinity, ``1e999`` which json reads as inf, lone surrogates, invalid UTF-8, a BOM,
  blank lines, malformed JSON) is handed to json, whose value or message stands.
- writing: a float below 1e-4 in magnitude (json ``1e-05``, orjson ``0.00001``), NaN and
  infinities (json ``NaN``, orjson ``null``), and anything json writes through
  ``default=str``; orjson raises TypeError on integers beyond 64 bits, lone surrogates
  and keys that are not strings, and the caller encodes those with json.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

__all__ = ["BIG_FLOAT", "DEEP_LINE_BYTES", "FAST_BRACKETS", "dumps_line",
           "float_writes_alike", "parse_object", "writes_alike"]

BIG_FLOAT = 2.0 ** 63
"""Floats this large (or larger) may be an integer orjson could not hold."""

DEEP_LINE_BYTES = 512
FAST_BRACKETS = 256
"""A line longer than `DEEP_LINE_BYTES` holding more than `FAST_BRACKETS` brackets could nest
deeper than json allows: it is read by json. (Nesting needs a bracket per level.)"""

_loads = orjson.loads
_dumps = orjson.dumps
_DecodeError = orjson.JSONDecodeError
_NEWLINE = orjson.OPT_APPEND_NEWLINE
_TINY_FLOAT = 1e-4
_INFINITY = float("inf")
_SCALARS = frozenset({str, int, bool, type(None)})


def parse_object(line: bytes) -> dict[str, Any] | None:
    """The JSON object of `line` exactly as ``json.loads`` reads it, or None when the line
    is not an object orjson reads exactly as json does (then ask json).

    >>> parse_object(b'{"amount": 12.5, "n": 3}'), parse_object(b"[1]")
    ({'amount': 12.5, 'n': 3}, None)
    >>> parse_object(b'{"n": 18446744073709551616}') is None  # json keeps the integer
    True
    """
    if len(line) > DEEP_LINE_BYTES and line.count(b"[") + line.count(b"{") > FAST_BRACKETS:
        return None
    try:
        value = _loads(line)
    except _DecodeError:
        return None
    if value.__class__ is not dict:
        return None
    for item in value.values():
        kind = item.__class__
        if kind is float:
            if not -BIG_FLOAT < item < BIG_FLOAT:
                return None
        elif (kind is dict or kind is list) and not _read_alike(item):
            return None
    return value


def _read_alike(value: Any) -> bool:
    """No float in `value` (nested lists and objects) could be a 64-bit overflow."""
    items = value.values() if value.__class__ is dict else value
    for item in items:
        kind = item.__class__
        if kind is float:
            if not -BIG_FLOAT < item < BIG_FLOAT:
                return False
        elif (kind is dict or kind is list) and not _read_alike(item):
            return False
    return True


def float_writes_alike(value: float) -> bool:
    """orjson writes this number as json does: zero, or finite and at least 1e-4 in
    magnitude (json writes smaller floats with an exponent, ``1e-05``, orjson not).

    >>> float_writes_alike(0.5), float_writes_alike(1e-05), float_writes_alike(float("inf"))
    (True, False, False)
    """
    return value == 0.0 or _TINY_FLOAT <= abs(value) < _INFINITY


def writes_alike(values: Iterable[Any]) -> bool:
    """True when orjson writes every one of `values` as json does, apart from what orjson
    refuses with TypeError (see `dumps_line`).

    >>> writes_alike([1, "a", None, True, 0.5, 0.0, [2.5], {"k": 1e20}])
    True
    >>> writes_alike([1e-05]), writes_alike([float("nan")]), writes_alike([(1.0,)])
    (False, False, False)
    """
    for value in values:
        kind = value.__class__
        if kind in _SCALARS:
            continue
        if kind is float:  # float_writes_alike, inlined: this runs for every value
            if not (value == 0.0 or _TINY_FLOAT <= abs(value) < _INFINITY):
                return False
        elif kind is list:
            if not writes_alike(value):
                return False
        elif kind is dict:
            if not writes_alike(value.values()):
                return False
        else:
            return False
    return True


def dumps_line(record: Any) -> bytes | None:
    """orjson's compact JSON of `record` and a newline, or None when orjson refuses it (an
    integer beyond 64 bits, a lone surrogate, a key that is not a string). Call it only
    when `writes_alike` holds for the record's values."""
    try:
        return _dumps(record, option=_NEWLINE)
    except TypeError:
        return None
