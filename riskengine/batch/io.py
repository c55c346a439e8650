"""Event and decision files: JSON Lines, CSV and Parquet, read and written as streams.

Readers yield one `Row` per input record, in file order (a replay's LSN order), and never
stop at a bad record: a line that is not JSON, a CSV record with the wrong number of
values or a line longer than `MAX_LINE_BYTES` becomes a `Row` with an `error`. Rows are
numbered from 1: the line number in JSON Lines (blank lines are skipped but counted), the
data record number in CSV (the header is not counted), the row number in Parquet. An event
without `event_id` gets ``row-<number>``, so replaying a file twice gives the same ids.

CSV has no types, so each column is converted by the scene schema: `int`, `float` and
`number` columns become numbers, `bool` columns accept true/false/1/0/yes/no, `str`
columns stay text; undeclared columns become numbers when they look like one (without a
leading zero: ``007`` stays text), except `event_id`, `type` and `label`, always text.
An empty value is null. A value that does not convert stays text, so the engine's schema
check refuses it with the field's name.

Writers stream too: JSON Lines through a large buffer, Parquet in record batches. JSON Lines
are read and written with orjson wherever it gives exactly what the json module gives
(riskengine/batch/fastjson.py), with the json module everywhere else.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from riskengine.batch.fastjson import dumps_line, parse_object, writes_alike
from riskengine.batch.lines import LineBlocks
from riskengine.exceptions import RiskEngineError

__all__ = [
    "FORMATS",
    "MAX_LINE_BYTES",
    "InputError",
    "RecordWriter",
    "Row",
    "RowReader",
    "file_format",
    "open_reader",
    "open_writer",
    "parquet_records",
    "with_id",
]

MAX_LINE_BYTES = 1 << 20
"""Longest accepted JSON Lines / CSV line (1 MiB); longer lines are skipped as errors."""

PARQUET_BATCH_ROWS = 16_384
WRITE_BUFFER_BYTES = 1 << 20
EXCERPT_CHARS = 200

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}

_TEXT_COLUMNS = frozenset({"event_id", "type", "label"})
_NUMBER = re.compile(r"[+-]?(\d+)(\.\d*)?([eE][+-]?\d+)?|[+-]?\.\d+([eE][+-]?\d+)?")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class InputError(RiskEngineError):
    """An input or output file cannot be used: missing, unreadable, or an unknown format."""


class Row:
    """One input record: its number and the event, or the reason it could not be read."""

    __slots__ = ("error", "event", "excerpt", "number")

    def __init__(self, number: int, event: dict[str, Any] | None, error: str | None = None,
                 excerpt: str | None = None) -> None:
        self.number = number
        self.event = event
        self.error = error
        self.excerpt = excerpt


class RowReader(Protocol):
    """Iterates the rows of a file; `total` and `done` measure progress in the same unit."""

    total: int
    done: int

    def __iter__(self) -> Iterator[Row]: ...


def file_format(path: Path) -> str:
    """``jsonl``, ``csv`` or ``parquet`` from the file name; InputError for anything else."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the format of {str(path)!r} from its extension; use "
                         f"{', '.join(sorted(FORMATS))}")
    return fmt


def open_reader(path: Path, field_types: Mapping[str, str] | None = None) -> RowReader:
    """A row reader for `path` by extension. `field_types` (field → schema type) types CSV."""
    fmt = file_format(path)
    if not path.is_file():
        raise InputError(f"input file {str(path)!r} does not exist" if not path.exists()
                         else f"input {str(path)!r} is not a file")
    if fmt == "jsonl":
        return JsonlReader(path)
    if fmt == "csv":
        return CsvReader(path, field_types or {})
    return ParquetReader(path)


def _excerpt(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.rstrip("\r\n")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _with_id(event: dict[str, Any], number: int) -> dict[str, Any]:
    if event.get("event_id") is None:
        event["event_id"] = f"row-{number}"
    return event


class _Lines:
    """Binary lines of a file with a length cap; counts bytes read for progress."""

    def __init__(self, handle: IO[bytes], limit: int) -> None:
        self.handle = handle
        self.limit = limit
        self.done = 0
        self.overlong = 0

    def __iter__(self) -> Iterator[bytes]:
        readline, limit = self.handle.readline, self.limit
        while True:
            line = readline(limit + 1)
            if not line:
                return
            self.done += len(line)
            if len(line) > limit and not (len(line) == limit + 1 and line.endswith(b"\n")):
                while not line.endswith(b"\n"):
                    line = readline(limit)
                    if not line:
                        break
                    self.done += len(line)
                self.overlong += 1
                yield b"\n"
                continue
            yield line


class JsonlReader:
    """JSON Lines: one JSON object per line.

    Lines are read a block at a time and parsed by orjson where it reads exactly what
    ``json.loads`` reads (riskengine/batch/fastjson.py); every other line (blank, not an
    object, malformed, or one of the cases orjson reads differently) goes through `_parse`,
    the json module's reading, so rows, values and error messages are json's.
    """

    def __init__(self, path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.total = path.stat().st_size
        self.done = 0

    def __iter__(self) -> Iterator[Row]:
        parse, slow = parse_object, self._parse
        with self.path.open("rb") as handle:
            blocks = LineBlocks(handle, self.max_line_bytes)
            number = 0
            for lines, terminated in blocks:
                self.done = blocks.done
                for line in lines:
                    number += 1
                    if line is None:
                        yield Row(number, None,
                                  f"line is longer than {self.max_line_bytes} bytes")
                        continue
                    event = parse(line)
                    if event is not None:
                        yield Row(number, _with_id(event, number))
                    elif line.strip():
                        yield slow(number, line + b"\n" if terminated else line)
            self.done = blocks.done

    @staticmethod
    def _parse(number: int, line: bytes) -> Row:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Row(number, None, f"not UTF-8 text (byte {exc.start})", _excerpt(line))
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            return Row(number, None, f"invalid JSON: {exc.msg} at column {exc.colno}",
                       _excerpt(text))
        except (ValueError, RecursionError) as exc:
            return Row(number, None, f"invalid JSON: {exc}", _excerpt(text))
        if not isinstance(value, dict):
            return Row(number, None, f"expected a JSON object, got {_json_kind(value)}",
                       _excerpt(text))
        return Row(number, _with_id(value, number))


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


# CSV -------------------------------------------------------------------------------------

Converter = Callable[[str], Any]


def _text(value: str) -> Any:
    return value if value else None


def _number(value: str, *, loose: bool = False) -> Any:
    if not value:
        return None
    match = _NUMBER.fullmatch(value)
    if match is None:
        return value
    digits = match.group(1)
    if loose and digits is not None and len(digits) > 1 and digits[0] == "0":
        return value
    if digits is not None and match.group(2) is None and match.group(3) is None:
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else value


def _loose_number(value: str) -> Any:
    return _number(value, loose=True)


def _boolean(value: str) -> Any:
    if not value:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return value


def csv_converter(column: str, field_type: str | None) -> Converter:
    """How a CSV column's text becomes a value, by its schema type (see module docstring).

    >>> csv_converter("amount", "float")("12")
    12
    >>> csv_converter("zip", None)("0412"), csv_converter("rcv_account", "str")("12")
    ('0412', '12')
    """
    if column in _TEXT_COLUMNS or field_type == "str":
        return _text
    if field_type in ("int", "float", "number") or column == "timestamp":
        return _number
    if field_type == "bool":
        return _boolean
    return _loose_number


class CsvReader:
    """CSV with a header row; values typed by `csv_converter`."""

    def __init__(self, path: Path, field_types: Mapping[str, str],
                 max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path = path
        self.field_types = dict(field_types)
        self.max_line_bytes = max_line_bytes
        self.total = path.stat().st_size
        self.done = 0

    def __iter__(self) -> Iterator[Row]:
        with self.path.open("rb") as handle:
            lines = _Lines(handle, self.max_line_bytes)
            text = (line.decode("utf-8", "replace") for line in lines)
            reader = csv.reader(text)
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"{str(self.path)!r}: unreadable CSV header: {exc}") from None
            header = [name.strip().lstrip("\ufeff") for name in header]
            self._check_header(header)
            converters = [csv_converter(name, self.field_types.get(name)) for name in header]
            columns = list(zip(header, converters, strict=True))
            width = len(header)
            number = 0
            overlong = lines.overlong
            while True:
                try:
                    values = next(reader)
                    error = None
                except StopIteration:
                    break
                except csv.Error as exc:
                    values, error = [], f"malformed CSV: {exc}"
                self.done = lines.done
                if lines.overlong != overlong:
                    overlong = lines.overlong
                    error = f"line is longer than {self.max_line_bytes} bytes"
                if not values and error is None:
                    continue
                number += 1
                if error is None and len(values) != width:
                    error = f"{len(values)} values for {width} columns"
                if error is not None:
                    yield Row(number, None, error, _excerpt(",".join(values)))
                    continue
                event = {name: convert(value)
                         for (name, convert), value in zip(columns, values, strict=True)}
                yield Row(number, _with_id(event, number))
            self.done = lines.done

    def _check_header(self, header: list[str]) -> None:
        if any(not name for name in header):
            raise InputError(f"{str(self.path)!r}: the CSV header has an empty column name")
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise InputError(f"{str(self.path)!r}: the CSV header repeats "
                             f"{', '.join(duplicates)}")


# Parquet ---------------------------------------------------------------------------------


def _fix_value(value: Any) -> Any:
    """Plain JSON-like values for what Arrow hands back: times as epoch ms, no NaN."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _needs_fixing(kind: pa.DataType) -> bool:
    return bool(pa.types.is_floating(kind) or pa.types.is_temporal(kind)
                or pa.types.is_decimal(kind) or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind))


def parquet_records(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows of an Arrow record batch as events (times as epoch ms, no NaN; see
    `ParquetReader`), without ids."""
    fix = [field.name for field in batch.schema if _needs_fixing(field.type)]
    records: list[dict[str, Any]] = batch.to_pylist()
    if fix:
        for record in records:
            for name in fix:
                record[name] = _fix_value(record[name])
    return records


def with_id(event: dict[str, Any], number: int) -> dict[str, Any]:
    """`event` with ``row-<number>`` as its id when it has none (in place)."""
    return _with_id(event, number)


class ParquetReader:
    """Parquet, read a record batch at a time.

    Timestamp columns become epoch milliseconds (a timestamp without a zone is taken as
    UTC), decimals become floats, a float NaN (pandas' missing value) becomes null.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{str(path)!r} is not a readable Parquet file: {exc}") from None
        self.total = self.file.metadata.num_rows
        self.done = 0

    def __iter__(self) -> Iterator[Row]:
        number = 0
        try:
            for batch in self.file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for record in parquet_records(batch):
                    number += 1
                    yield Row(number, _with_id(record, number))
                self.done = number
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{str(self.path)!r}: cannot read Parquet after row {number}: "
                             f"{exc}") from None


# Writers ---------------------------------------------------------------------------------


class RecordWriter:
    """Writes dict records to a file; a context manager that closes the file."""

    path: Path

    def write(self, record: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _values_alike(record: Mapping[str, Any]) -> bool:
    return writes_alike(record.values())


class JsonlWriter(RecordWriter):
    """One compact JSON object per line, keys in the order given, through a large buffer.

    A line is json's ``JSONEncoder(ensure_ascii=False, separators=(",", ":"),
    default=str)``, encoded by orjson when `alike(record)` says orjson writes the record's
    values the same (riskengine/batch/fastjson.py); by default every value is checked. A
    caller that knows which fields can hold floats passes a cheaper check. Lines go to the
    file's buffer one by one (holding a block of lines to join costs more: the memory of
    each block is returned to the system and taken again).
    """

    def __init__(self, path: Path, alike: Callable[[Mapping[str, Any]], bool] = _values_alike,
                 buffer_bytes: int = WRITE_BUFFER_BYTES) -> None:
        self.path = path
        self.alike = alike
        self._handle = path.open("wb", buffering=buffer_bytes)
        self._write = self._handle.write
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                       default=str).encode

    def write(self, record: Mapping[str, Any]) -> None:
        line = dumps_line(record) if self.alike(record) else None
        if line is None:
            line = (self._dumps(record) + "\n").encode("utf-8")
        self._write(line)

    def close(self) -> None:
        self._handle.close()


class CsvWriter(RecordWriter):
    """A header row from `fields`, then one record per row; null is an empty value."""

    def __init__(self, path: Path, fields: Iterable[str]) -> None:
        self.path = path
        self.fields = tuple(fields)
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(self.fields)

    def write(self, record: Mapping[str, Any]) -> None:
        self._writer.writerow([record.get(name) for name in self.fields])

    def close(self) -> None:
        self._handle.close()


class ParquetWriter(RecordWriter):
    """Buffers records column-wise and writes a record batch every `batch_rows` records."""

    def __init__(self, path: Path, schema: pa.Schema,
                 batch_rows: int = PARQUET_BATCH_ROWS) -> None:
        self.path = path
        self.schema = schema
        self.batch_rows = batch_rows
        self._names = tuple(schema.names)
        self._columns: list[list[Any]] = [[] for _ in self._names]
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")

    def write(self, record: Mapping[str, Any]) -> None:
        get = record.get
        for column, name in zip(self._columns, self._names, strict=True):
            column.append(get(name))
        if len(self._columns[0]) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._columns[0]:
            return
        arrays = [pa.array(column, type=field.type)
                  for column, field in zip(self._columns, self.schema, strict=True)]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self._columns = [[] for _ in self._names]

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._writer.close()


def open_writer(path: Path, fields: Iterable[str], parquet_schema: pa.Schema | None = None,
                *, jsonl_alike: Callable[[Mapping[str, Any]], bool] = _values_alike
                ) -> RecordWriter:
    """A writer for `path` by extension: JSON Lines, CSV (columns `fields`) or Parquet.
    `jsonl_alike` is the JSON Lines writer's check (see `JsonlWriter`)."""
    fmt = file_format(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} "
                         "does not exist")
    try:
        if fmt == "jsonl":
            return JsonlWriter(path, jsonl_alike)
        if fmt == "csv":
            return CsvWriter(path, fields)
        if parquet_schema is None:
            raise InputError("this command cannot write Parquet")
        return ParquetWriter(path, parquet_schema)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror}") from None
