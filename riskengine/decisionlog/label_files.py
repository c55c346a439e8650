"""Label files for ``riskengine labels import``: JSON Lines or CSV.

- JSON Lines (``.jsonl``, ``.ndjson``, ``.json``, or content starting with ``{``): one
  object ``{event_id, label, time?, source?}`` per line;
- CSV (``.csv``, or anything else): a header row naming the columns ``event_id`` and
  ``label`` and optionally ``time`` and ``source``, in any order.

Blank lines are skipped. Each row is validated on its own (`parse_label`): a bad row is
reported with its line number and the others are stored, in chunks of `CHUNK` labels,
each chunk in one transaction.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskengine.decisionlog.base import DecisionLog
from riskengine.decisionlog.labels import LABEL_FIELDS, Label, LabelError, parse_label
from riskengine.decisionlog.record import now_ms

__all__ = ["CHUNK", "ImportResult", "LabelFileError", "import_labels", "label_rows"]

CHUNK = 5000
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


class LabelFileError(LabelError):
    """The file as a whole cannot be read (missing, not UTF-8, a CSV header without the
    required columns)."""


@dataclass
class ImportResult:
    rows: int = 0
    stored: int = 0
    bad: int = 0


def label_rows(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, raw row) of every non-blank row; a row that is not even JSON is
    given as a `LabelError`."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise LabelFileError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    with handle:
        try:
            first = handle.read(1)
            while first.isspace():
                first = handle.read(1)
            handle.seek(0)
            jsonl = path.suffix.lower() in _JSONL_SUFFIXES or (
                path.suffix.lower() != ".csv" and first == "{")
            yield from (_jsonl_rows(handle) if jsonl else _csv_rows(handle))
        except UnicodeDecodeError as exc:
            raise LabelFileError(f"{str(path)!r} is not UTF-8 text: {exc.reason}") from None


def _jsonl_rows(lines: Any) -> Iterator[tuple[int, object]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            yield number, LabelError(f"not JSON: {exc}")


def _csv_rows(handle: Any) -> Iterator[tuple[int, object]]:
    reader = csv.reader(handle)
    header: list[str] | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            missing = [name for name in ("event_id", "label") if name not in header]
            unknown = [name for name in header if name not in LABEL_FIELDS]
            if missing or unknown:
                raise LabelFileError(
                    f"the CSV header must name event_id and label (and optionally time, "
                    f"source); {'missing ' + ', '.join(missing) if missing else ''}"
                    f"{'; ' if missing and unknown else ''}"
                    f"{'unknown ' + ', '.join(repr(u[:40]) for u in unknown) if unknown else ''}")
            continue
        if len(row) != len(header):
            yield reader.line_num, LabelError(f"{len(row)} cells, the header has "
                                              f"{len(header)}")
            continue
        yield reader.line_num, {name: cell for name, cell in zip(header, row, strict=True)
                                if cell != "" or name in ("event_id", "label")}


def import_labels(log: DecisionLog, path: Path,
                  on_bad: Callable[[int, LabelError], None]) -> ImportResult:
    """Store the good labels of `path` in `log`; `on_bad(line, error)` for each bad row."""
    result = ImportResult()
    received = now_ms()
    chunk: list[Label] = []
    for line, raw in label_rows(path):
        result.rows += 1
        try:
            if isinstance(raw, LabelError):
                raise raw
            chunk.append(parse_label(raw, received_at=received))
        except LabelError as exc:
            result.bad += 1
            on_bad(line, exc)
            continue
        if len(chunk) >= CHUNK:
            log.add_labels(chunk)
            result.stored += len(chunk)
            chunk = []
    if chunk:
        log.add_labels(chunk)
        result.stored += len(chunk)
    return result
