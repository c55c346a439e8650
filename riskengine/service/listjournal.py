"""List changes made through the API, kept in an append-only journal.

Each ``PUT``/``DELETE`` appends one JSON line to ``<state-dir>/lists.jsonl`` (flushed and
fsynced before the request answers); at start the journal is applied, in order, on top of
the lists of the config, so API changes survive restarts. A torn last line (crash during
the write) is ignored. Lists themselves are declared in the config (rules are checked
against their names when they load); the API changes their entries.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson

from riskengine.exceptions import ListError
from riskengine.lists import ListEntry, ListStore, parse_expiry


class ListJournal:
    def __init__(self, store: ListStore, path: Path | None) -> None:
        self.store = store
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            self._replay(path)

    def put(self, name: str, value: str, *, expires: object = None, reason: str = "") -> ListEntry:
        expires_at_ms = None if expires is None else parse_expiry(expires, what="expires")
        if not isinstance(reason, str) or len(reason) > 1000:
            raise ListError("reason must be a string of at most 1000 characters")
        with self._lock:
            self.store.add(name, value, expires_at_ms=expires_at_ms, reason=reason)
            self._append({"op": "put", "list": name, "value": value,
                          "expires_at_ms": expires_at_ms, "reason": reason})
        return ListEntry(value, expires_at_ms, reason)

    def delete(self, name: str, value: str) -> bool:
        with self._lock:
            removed = self.store.remove(name, value)
            if removed:
                self._append({"op": "delete", "list": name, "value": value})
        return removed

    def _append(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            handle.write(orjson.dumps(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _replay(self, path: Path) -> None:
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                record = orjson.loads(line)
                name, value = record["list"], record["value"]
                if name not in self.store.names():
                    continue  # the list left the config
                if record["op"] == "put":
                    self.store.add(name, value, expires_at_ms=record.get("expires_at_ms"),
                                   reason=record.get("reason", ""))
                elif record["op"] == "delete":
                    self.store.remove(name, value)
            except (orjson.JSONDecodeError, KeyError, TypeError, ListError):
                continue  # a torn or foreign line: skip it
