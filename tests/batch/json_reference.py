"""JSON Lines as the json module reads and writes them, a line at a time: what the replay
read and wrote before orjson, and must still read and write byte for byte.

A transcription of the reading rules in riskengine/batch/io.py (row numbers, blank lines,
``row-<n>`` ids, the error messages and excerpts) on the json module alone; it imports
nothing from riskengine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 1 << 20
EXCERPT_CHARS = 200

Row = tuple[int, dict[str, Any] | None, str | None, str | None]
"""(row number, event, error, excerpt)."""

RefRow = tuple[int, str, str | None, str | None]
"""A `Row` with the event's repr, which keeps 1 apart from 1.0 and compares NaN."""

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def json_line(record: Any) -> bytes:
    """One JSON Lines line as the writer wrote it with the json module."""
    return (_ENCODE(record) + "\n").encode("utf-8")


def _excerpt(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.rstrip("\r\n")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _reject(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _row(number: int, line: bytes) -> Row:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return number, None, f"not UTF-8 text (byte {exc.start})", _excerpt(line)
    try:
        value = json.loads(text, parse_constant=_reject)
    except json.JSONDecodeError as exc:
        return number, None, f"invalid JSON: {exc.msg} at column {exc.colno}", _excerpt(text)
    except (ValueError, RecursionError) as exc:
        return number, None, f"invalid JSON: {exc}", _excerpt(text)
    if not isinstance(value, dict):
        return number, None, f"expected a JSON object, got {_kind(value)}", _excerpt(text)
    if value.get("event_id") is None:
        value["event_id"] = f"row-{number}"
    return number, value, None, None


def json_events(path: Path, limit: int = MAX_LINE_BYTES) -> list[Row]:
    """Every row of a JSON Lines file, read line by line with the json module."""
    rows: list[Row] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if len(line.rstrip(b"\n")) > limit:
                rows.append((number, None, f"line is longer than {limit} bytes", None))
            elif line.strip():
                rows.append(_row(number, line))
    return rows


def json_rows(path: Path, limit: int = MAX_LINE_BYTES) -> list[RefRow]:
    """`json_events` with each event as its repr."""
    return [(number, repr(event), error, excerpt)
            for number, event, error, excerpt in json_events(path, limit)]
