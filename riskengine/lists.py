"""Named block/allow lists with optional per-entry expiry, loaded from config or CSV.

Lookups are one or two dict probes so `in_list(...)` stays cheap on the decision path (an
in-memory dict is already a single hash probe, so no Bloom filter sits in front of it).
Expiry is judged against the **event time** passed by the caller, never the wall clock, so
replaying the same events gives the same answers.

Values are keyed by their string form: an entry ``123`` and an entry ``"123"`` are the same
entry, and an event value ``123`` (int) matches an entry ``"123"`` (as read from a CSV file).
An integral float such as ``123.0`` matches ``"123"`` too. ``None``, booleans, other floats
and containers never match. Matching is exact otherwise (case-sensitive, no trimming).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from riskengine.exceptions import ConfigError, ListError

__all__ = ["ListEntry", "ListStore", "check_list", "check_value", "parse_expiry", "value_key"]

_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MAX_VALUE_LEN = 1000
_LIST_KEYS = frozenset({"reason", "values", "file"})
_ENTRY_KEYS = frozenset({"value", "expires", "reason"})
_CSV_COLUMNS = ("value", "expires", "reason")


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One list entry: the value as given, when it stops matching (epoch ms), and why."""

    value: str | int
    expires_at_ms: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "expires_at_ms": self.expires_at_ms, "reason": self.reason}


def value_key(value: Any) -> str | None:
    """The string form a value matches by, or None when it can never match.

    >>> value_key("a"), value_key(123), value_key(123.0), value_key(1.5), value_key(True)
    ('a', '123', '123', None, None)
    """
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


def check_list(name: object, reason: object) -> None:
    """`ListError` unless `name` is a valid list name and `reason` a string."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ListError(f"list name {name!r} is invalid; use letters, digits and _ . : -")
    if not isinstance(reason, str):
        raise ListError(f"list {name!r}: reason must be a string")


def parse_expiry(value: object, *, what: str = "expires") -> int:
    """Epoch milliseconds from an int (or a string of digits, as in CSV files) or an
    ISO-8601 time with a UTC offset.

    >>> parse_expiry("1970-01-01T00:00:01Z")
    1000
    >>> parse_expiry(1700000000000)
    1700000000000
    """
    if isinstance(value, bool):
        raise ListError(f"{what}: {value!r} is not a time; give epoch milliseconds or "
                        "an ISO-8601 time with an offset such as 2030-01-01T00:00:00Z")
    if isinstance(value, int):
        if value < 0:
            raise ListError(f"{what}: {value} is negative; give epoch milliseconds")
        return value
    if isinstance(value, str) and value.strip().isdigit() and value.isascii():
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ListError(f"{what}: {value!r} is not an ISO-8601 time; write it like "
                            "2030-01-01T00:00:00Z or give epoch milliseconds") from None
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ListError(f"{what}: {value.isoformat()!r} has no UTC offset; add one "
                            "(Z or +08:00) so the expiry is unambiguous")
        return (value - _EPOCH) // _MS
    if isinstance(value, date):
        raise ListError(f"{what}: {value.isoformat()!r} is a date without a time; write "
                        f"{value.isoformat()}T00:00:00Z")
    raise ListError(f"{what}: {value!r} is not a time; give epoch milliseconds or an "
                    "ISO-8601 time with an offset")


def check_value(value: object, where: str) -> str | int:
    """A list value as given, or a `ListError` saying why it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ListError(f"{where}: value {value!r} must be a string or an integer")
    if isinstance(value, str) and not value:
        raise ListError(f"{where}: empty value; remove the entry or give a value")
    if isinstance(value, str) and len(value) > MAX_VALUE_LEN:
        raise ListError(f"{where}: value is longer than {MAX_VALUE_LEN} characters")
    return value


class Lists(Protocol):
    """What deciding reads of the lists: rules (`in_list`), list checks, pattern steps
    and feature `where` filters. `ListStore` (in memory) and the Redis list store
    (`riskengine.state.redis.lists`) both are one."""

    def names(self) -> list[str]: ...

    def contains(self, name: str, value: Any, at_ms: int | None = None) -> bool: ...


class ListCatalog(Lists, Protocol):
    """A list store as the admin API and the CLI use it; `ListStore` (in memory) and
    `RedisListStore` both are one."""

    def lookup(self, name: str, value: object,
               at_ms: int | None = None) -> ListEntry | None: ...

    def add(self, name: str, value: str | int, *, expires_at_ms: int | None = None,
            reason: str = "") -> None: ...

    def remove(self, name: str, value: object) -> bool: ...

    def entries(self, name: str) -> list[ListEntry]: ...

    def reason(self, name: str) -> str: ...

    def purge_expired(self, at_ms: int) -> int: ...


class ListStore:
    """Named lists of values; `contains` is the hot-path lookup used by rules."""

    __slots__ = ("_entries", "_reasons")

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, ListEntry]] = {}
        self._reasons: dict[str, str] = {}

    def contains(self, name: str, value: Any, at_ms: int | None = None) -> bool:
        """True if `value` is on list `name` and not expired at event time `at_ms`.

        An entry with ``expires_at_ms = E`` matches while ``at_ms < E``. With ``at_ms``
        None expiry is not checked (every stored entry matches).
        """
        try:
            entries = self._entries[name]
        except KeyError:
            raise ListError(f"unknown list {name!r}; declare it under `lists:`") from None
        if type(value) is str:
            entry = entries.get(value)
        else:
            key = value_key(value)
            if key is None:
                return False
            entry = entries.get(key)
        if entry is None:
            return False
        expires = entry.expires_at_ms
        return expires is None or at_ms is None or at_ms < expires

    def lookup(self, name: str, value: object, at_ms: int | None = None) -> ListEntry | None:
        """The live entry matching `value` (for reporting list hits), or None."""
        entries = self._get(name)
        key = value_key(value)
        entry = entries.get(key) if key is not None else None
        if entry is None:
            return None
        expires = entry.expires_at_ms
        return entry if expires is None or at_ms is None or at_ms < expires else None

    def create(self, name: str, reason: str = "") -> None:
        """Add an empty list; refuses a name that already exists."""
        check_list(name, reason)
        if name in self._entries:
            raise ListError(f"list {name!r} already exists")
        self._entries[name] = {}
        self._reasons[name] = reason

    def add(self, name: str, value: str | int, *, expires_at_ms: int | None = None,
            reason: str = "") -> None:
        """Add or replace an entry (the same value added twice keeps the later one)."""
        entries = self._get(name)
        where = f"list {name!r}"
        checked = check_value(value, where)
        if expires_at_ms is not None and (isinstance(expires_at_ms, bool)
                                          or not isinstance(expires_at_ms, int)):
            raise ListError(f"{where}: expires_at_ms must be epoch milliseconds (an integer)")
        if not isinstance(reason, str):
            raise ListError(f"{where}: reason must be a string")
        entries[str(checked)] = ListEntry(checked, expires_at_ms, reason)

    def remove(self, name: str, value: object) -> bool:
        """Remove an entry; False if it was not there."""
        entries = self._get(name)
        key = value_key(value)
        return key is not None and entries.pop(key, None) is not None

    def entries(self, name: str) -> list[ListEntry]:
        """Every stored entry of a list, expired ones included, in insertion order."""
        return list(self._get(name).values())

    def replace_with(self, other: ListStore) -> None:
        """Take `other`'s lists in place (one assignment each), so every holder of this
        store sees the new content at once."""
        self._entries = other._entries
        self._reasons = other._reasons

    def names(self) -> list[str]:
        return sorted(self._entries)

    def reason(self, name: str) -> str:
        self._get(name)
        return self._reasons[name]

    def purge_expired(self, at_ms: int) -> int:
        """Drop entries expired at `at_ms` (an event time); returns how many went."""
        dropped = 0
        for entries in self._entries.values():
            dead = [k for k, e in entries.items()
                    if e.expires_at_ms is not None and at_ms >= e.expires_at_ms]
            for k in dead:
                del entries[k]
            dropped += len(dead)
        return dropped

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, name: str) -> dict[str, ListEntry]:
        try:
            return self._entries[name]
        except KeyError:
            raise ListError(f"unknown list {name!r}; known lists: "
                            f"{', '.join(self.names()) or '(none)'}") from None

    def load_csv(self, name: str, path: Path | str) -> int:
        """Add the rows of a CSV file with header ``value[,expires][,reason]``.

        All rows are checked before any is added, so a bad file changes nothing.
        Cells are trimmed; blank lines are skipped; an empty `expires` means never.
        """
        path = Path(path)
        where = f"list {name!r}, file {str(path)!r}"
        self._get(name)
        rows: list[list[str]] = []
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh, strict=True)
                try:
                    rows.extend(reader)
                except csv.Error as exc:
                    raise ListError(f"{where}, row {reader.line_num}: malformed CSV ({exc})"
                                    ) from None
        except OSError as exc:
            raise ListError(f"{where}: cannot read the file ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ListError(f"{where}: not a UTF-8 text file") from None
        header_at = next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)
        if header_at is None:
            raise ListError(f"{where}: the file is empty; it needs a header line "
                            "`value[,expires][,reason]`")
        header = [c.strip().lower() for c in rows[header_at]]
        unknown = [c for c in header if c not in _CSV_COLUMNS]
        if unknown or "value" not in header or len(set(header)) != len(header):
            raise ListError(f"{where}, row {header_at + 1}: header {rows[header_at]!r} is "
                            "invalid; use `value`, optionally followed by `expires` and "
                            "`reason` columns")
        parsed: list[ListEntry] = []
        for number, row in enumerate(rows[header_at + 1:], start=header_at + 2):
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ListError(f"{where}, row {number}: expected {len(header)} cells "
                                f"({','.join(header)}), got {len(row)}")
            cells = dict(zip(header, (c.strip() for c in row), strict=True))
            row_where = f"{where}, row {number}"
            expires = cells.get("expires") or None
            parsed.append(ListEntry(
                check_value(cells["value"], row_where),
                None if expires is None else parse_expiry(expires, what=row_where),
                cells.get("reason", "")))
        for entry in parsed:
            self.add(name, entry.value, expires_at_ms=entry.expires_at_ms, reason=entry.reason)
        return len(parsed)

    @classmethod
    def from_config(cls, lists_section: Mapping[str, Any] | None,
                    base_dir: Path | None = None) -> ListStore:
        """Build from the `lists:` section of the project config.

        Shape: ``{name: {reason, values: [v | {value, expires, reason}], file: path.csv}}``;
        a relative `file` is resolved against `base_dir` (the config file's folder).
        Raises ConfigError naming the list (and the row of a CSV file).
        """
        store = cls()
        if lists_section is None:
            return store
        if not isinstance(lists_section, Mapping):
            raise ConfigError("`lists:` must be a mapping of list name to its definition")
        try:
            for name, spec in lists_section.items():
                store._load_spec(name, spec, base_dir)
        except ListError as exc:
            raise ConfigError(str(exc)) from None
        return store

    def _load_spec(self, name: object, spec: object, base_dir: Path | None) -> None:
        if not isinstance(name, str):
            raise ListError(f"list name {name!r} must be a string")
        where = f"list {name!r}"
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise ListError(f"{where}: expected a mapping with `reason`, `values` and/or "
                            "`file`")
        unknown = sorted(str(k) for k in spec if k not in _LIST_KEYS)
        if unknown:
            raise ListError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                            "reason, values, file")
        reason = spec.get("reason", "")
        if reason is None:
            reason = ""
        if not isinstance(reason, str):
            raise ListError(f"{where}: reason must be a string")
        self.create(name, reason)
        values = spec.get("values")
        if values is not None:
            if isinstance(values, str | bytes) or not isinstance(values, Iterable):
                raise ListError(f"{where}: `values` must be a list")
            for index, item in enumerate(values):
                self._load_item(name, item, f"{where}, values[{index}]")
        file = spec.get("file")
        if file is not None:
            if not isinstance(file, str) or not file:
                raise ListError(f"{where}: `file` must be a path to a CSV file")
            path = Path(file)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            self.load_csv(name, path)

    def _load_item(self, name: str, item: object, where: str) -> None:
        if isinstance(item, Mapping):
            unknown = sorted(str(k) for k in item if k not in _ENTRY_KEYS)
            if unknown:
                raise ListError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                                "value, expires, reason")
            if "value" not in item:
                raise ListError(f"{where}: missing `value`")
            value = check_value(item["value"], where)
            expires = item.get("expires")
            expires_ms = None if expires is None else parse_expiry(expires, what=where)
            reason = item.get("reason", "")
            if not isinstance(reason, str):
                raise ListError(f"{where}: reason must be a string")
            self.add(name, value, expires_at_ms=expires_ms, reason=reason)
        else:
            self.add(name, check_value(item, where))
