"""JSON Lines read and written with orjson give exactly what the json module gives: the
same rows, values (types included) and error messages; the same bytes out."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskengine.batch.io import JsonlReader, JsonlWriter
from riskengine.batch.replay import decision_writes_alike
from tests.batch.json_reference import RefRow, json_line, json_rows

T0 = 1_767_571_200_000


def rows_of(path: Path, limit: int | None = None) -> list[RefRow]:
    reader = JsonlReader(path) if limit is None else JsonlReader(path, limit)
    return [(r.number, repr(r.event), r.error, r.excerpt) for r in reader]


def write_bytes(path: Path, lines: list[bytes], end: bytes = b"\n") -> Path:
    path.write_bytes(b"\n".join(lines) + end)
    return path


def deep(depth: int) -> bytes:
    return b'{"event_id":"deep","x":' + b"[" * depth + b"]" * depth + b"}"


HOSTILE_LINES = [
    b'{"event_id":"plain","timestamp":1,"amount":12.5}',
    b'{"n":18446744073709551615,"m":-9223372036854775808}',   # the 64-bit edges: integers
    b'{"n":18446744073709551616}',                            # beyond: json keeps an int
    b'{"n":-9223372036854775809}',
    b'{"n":123456789012345678901234567890}',
    b'{"a":[1,{"b":99999999999999999999}],"c":{"d":[-99999999999999999999]}}',
    b'{"n":1e19,"m":-9.3e18,"k":9.2e18}',                     # large floats stay floats
    b'{"amount":NaN}', b'{"amount":Infinity}', b'{"amount":-Infinity}',
    b'{"x":1e999,"y":-1e999}',                                # json: inf, orjson refuses
    b'{"tiny":1e-7,"z":-0.0,"e":1E5,"f":0.1000000000000000055511151231257827}',
    b'{"s":"\\ud800"}', b'{"s":"\\udc00x\\ud83d\\ude00"}',   # lone and paired surrogates
    b'{"s":"\\u0000\\u001f\\u2028\xe2\x82\xac\xf0\x9f\x98\x80"}',
    b'{"bad":"\xff\xfe"}', b'{"bad":"\xed\xa0\x80"}', b'{"bad":"\xc0\x80"}',  # not UTF-8
    b'\xef\xbb\xbf{"bom":1}',                                 # a byte order mark
    b'{"dup":1,"other":2,"dup":3}',
    b'{"event_id":null,"n":1}', b'{"event_id":"given"}', b'{}',
    b'   ', b'', b'\t \r',                                     # blank: skipped
    b'{"cr":1}\r',                                            # CRLF line end
    b'[1,2]', b'"text"', b'12', b'null', b'true',              # not objects
    b'{"a":', b'{"a":1,}', b'{"a":01}', b'{"a":1} x', b'{"a":"\t"}', b'{"a":.5}',
    b'{"a":1}\x00', b'\x0b{"a":1}',
    deep(10), deep(300), deep(900), deep(1000), deep(1030), deep(5000),
    b'{"long":"' + b"x" * 5_000 + b'"}',
    b'{"brackets":"' + b"[{" * 400 + b'"}',                  # many brackets in a string
]


@pytest.mark.parametrize("end", [b"\n", b""], ids=["newline at end", "no newline at end"])
def test_hostile_lines_read_as_the_json_module_reads_them(tmp_path: Path, end: bytes) -> None:
    path = write_bytes(tmp_path / "in.jsonl", HOSTILE_LINES, end)
    assert rows_of(path) == json_rows(path)


def test_the_last_line_without_newline_reports_json_column(tmp_path: Path) -> None:
    # json counts a trailing newline as the start of line 2: the message says column 1
    for end in (b"\n", b""):
        path = write_bytes(tmp_path / "in.jsonl", [b'{"a": '], end)
        ((number, _, error, _),) = rows_of(path)
        assert (number, error) == json_rows(path)[0][::2]
        assert error is not None and error.startswith("invalid JSON: Expecting value")


def test_big_integers_stay_integers(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.jsonl", [b'{"n":18446744073709551616,"l":[-1e999]}'])
    (row,) = JsonlReader(path)
    assert row.event is not None
    assert row.event["n"] == 2**64 and type(row.event["n"]) is int
    assert row.event["l"] == [-math.inf]


def test_long_lines_around_the_limit(tmp_path: Path) -> None:
    limit = 4_096
    lines = [b'{"s":"' + b"y" * (limit - 8 + k) + b'"}' for k in (-1, 0, 1, 2)]
    lines.insert(2, b'{"nested":' + b"[" * 1500 + b"]" * 1500 + b"}")
    path = write_bytes(tmp_path / "in.jsonl", lines)
    rows = rows_of(path, limit)
    assert rows == json_rows(path, limit)
    assert [r[2] is None for r in rows] == [True, True, False, False, False]
    assert "recursion" in str(rows[2][2])
    assert [r[2] for r in rows[3:]] == [f"line is longer than {limit} bytes"] * 2


json_scalar = (st.none() | st.booleans()
               | st.integers(min_value=-(2**70), max_value=2**70)
               | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(max_size=8))
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                          max_leaves=12)
raw_token = st.sampled_from([b"NaN", b"1e999", b"-0", b"18446744073709551616", b"1E-400",
                             b"\"\\ud800\"", b"[[[]]]", b"tru", b"\"\xff\""])


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objects=st.lists(st.dictionaries(st.text(max_size=6), json_value, max_size=5),
                        max_size=6),
       raw=st.lists(raw_token, max_size=3), ascii=st.booleans(), compact=st.booleans())
def test_random_objects_read_as_the_json_module_reads_them(
        tmp_path: Path, objects: list[dict[str, Any]], raw: list[bytes], ascii: bool,
        compact: bool) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    lines = [json.dumps(o, ensure_ascii=ascii, separators=separators).encode("utf-8")
             for o in objects]
    lines += [b'{"t":' + token + b"}" for token in raw]
    path = write_bytes(tmp_path / "in.jsonl", lines)
    assert rows_of(path) == json_rows(path)


# Writing ---------------------------------------------------------------------------------


HOSTILE_RECORDS: list[dict[str, Any]] = [
    {"a": 1, "b": "x", "c": None, "d": True, "e": [], "f": {}},
    {"tiny": 1e-05, "neg": -1.5e-07, "edge": 0.0001, "below": 0.0000999, "zero": 0.0,
     "negzero": -0.0},
    {"big": 1e16, "bigger": 1.2345678901234568e17, "max": 1.7976931348623157e308},
    {"nan": math.nan, "inf": math.inf, "ninf": -math.inf},
    {"int": 2**64, "neg": -(2**63) - 1, "ok": 2**63},
    {"nested": [1, [2.5, {"k": 1e-9}], {"n": math.nan}]},
    {"text": "\x00\x1f\x7f\u2028\u20ac\U0001f600\"\\/"},
    {"when": datetime(2026, 1, 5, tzinfo=UTC), "tuple": (1, 2.5), "set": frozenset()},
    {"keys": {1: "a", 2.5: "b", None: "c", False: "d"}},
    {"deep": [[[[[[[[[[[[[[[[[[[[1e-5]]]]]]]]]]]]]]]]]]]]},
]


def test_records_are_written_as_the_json_module_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path, buffer_bytes=64) as writer:
        for record in HOSTILE_RECORDS:
            writer.write(record)
    assert path.read_bytes() == b"".join(json_line(r) for r in HOSTILE_RECORDS)


def decision(score: float, features: dict[str, Any]) -> dict[str, Any]:
    return {"row": 1, "event_id": "e", "lsn": 1, "timestamp": T0, "decision": "accept",
            "score": score, "hits": ["r"], "shadow_hits": [], "list_hits": [],
            "late": False, "degraded": False, "ruleset_version": "v", "rule_errors": [],
            "features": features}


def test_decision_records_are_written_as_the_json_module_writes_them(tmp_path: Path) -> None:
    records = [decision(score, features) for score in (0.0, 100.0, 1e-05, -2.5e-07)
               for features in ({"n": 3, "s": 12.5, "x": None},
                                {"s": 1e-06, "last": 2**70, "l": [1e-05]},
                                {"inf": math.inf, "t": "\u2028"})]
    records.append(decision(1.0, '{"features": "as JSON text"}'))  # type: ignore[arg-type]
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path, decision_writes_alike) as writer:
        for record in records:
            writer.write(record)
    assert path.read_bytes() == b"".join(json_line(r) for r in records)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.dictionaries(
    st.text(max_size=5),
    st.recursive(json_scalar | st.floats(), lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10),
    max_size=5), max_size=5))
def test_random_records_are_written_as_the_json_module_writes_them(
        tmp_path: Path, records: list[dict[str, Any]]) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as writer:
        for record in records:
            writer.write(record)
    assert path.read_bytes() == b"".join(json_line(r) for r in records)
