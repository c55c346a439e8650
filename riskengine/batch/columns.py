"""Typed input (Parquet) checked against a scene before any row is read.

A Parquet file says its column types, so a whole-file mistake — a required field with no
column, an amount stored as text — is refused at once with the column's name, instead of
one refused row per event. Required: ``timestamp`` and the schema's non-optional fields.
Kinds: the targets of numeric features and `int`/`float`/`number` fields need a numeric
column; `bool` fields a boolean one; `str` fields a text one; ``timestamp`` a number, a
date/time or text (ISO-8601). A column of nulls only fits every kind. Other columns are
not checked (they pass through to rules as they are).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyarrow as pa  # type: ignore[import-untyped]

from riskengine.batch.io import InputError

__all__ = ["check_columns"]


def _kind(kind: pa.DataType) -> str:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_null(kind):
        return "null"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "str"
    if pa.types.is_temporal(kind):
        return "time"
    return "other"


_FITS = {
    "int": {"number"},
    "float": {"number"},
    "number": {"number"},
    "bool": {"bool"},
    "str": {"str"},
    "timestamp": {"number", "time", "str"},
}
_NEEDS = {"int": "integer", "float": "numeric", "number": "numeric", "bool": "boolean",
          "str": "text", "timestamp": "epoch-millisecond, timestamp or ISO-8601 text"}


def check_columns(schema: pa.Schema, field_types: Mapping[str, str],
                  required: Iterable[str], source: str, scene: str) -> None:
    """Raise `InputError` naming the first missing required column, or a column whose
    type cannot hold what the scene needs (see the module docstring)."""
    columns = {field.name: field.type for field in schema}
    for name in ("timestamp", *sorted(set(required) - {"timestamp"})):
        if name not in columns:
            raise InputError(f"{source}: no column {name!r}, which scene {scene!r} requires")
    wanted = {**field_types, "timestamp": "timestamp"}
    for name, want in sorted(wanted.items()):
        kind = columns.get(name)
        if kind is None or want not in _FITS:
            continue
        found = _kind(kind)
        if found != "null" and found not in _FITS[want]:
            raise InputError(f"{source}: column {name!r} holds {kind}, but scene {scene!r} "
                             f"needs {_NEEDS[want]} values there")
