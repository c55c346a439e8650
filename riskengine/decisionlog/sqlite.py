"""SQLite decision log: one file in WAL mode with `synchronous=NORMAL`.

The writer thread has its own connection; queries and purges share a second one behind a
lock. WAL lets queries read while a batch commits. With `synchronous=NORMAL` a committed
batch survives the process dying (kill -9) but the last batches may be lost on a power
failure or an OS crash.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from riskengine.decisionlog.base import (
    LABEL_COLUMNS,
    DecisionLog,
    LabelledRow,
    LabelRow,
    event_sql,
    labelled_rows,
    labelled_sql,
    query_sql,
    upsert_labels_sql,
)
from riskengine.decisionlog.record import DecisionLogError, Row
from riskengine.decisionlog.reviews import BACKFILL_SQL, ENQUEUE_SQL, Execute, enqueue_rows

__all__ = ["SQLiteLog"]

T = TypeVar("T")
SCHEMA_VERSION = "3"
UPGRADES = {"1": "3", "2": "3"}
"""Older schema versions this one opens: version 2 added the `labels` table, version 3
the review queue (riskengine/decisionlog/reviews.py)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_log_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    lsn INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    scene TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'review', 'reject')),
    score REAL NOT NULL,
    event_time INTEGER NOT NULL,
    logged_at INTEGER NOT NULL,
    ruleset_version TEXT NOT NULL,
    late INTEGER NOT NULL,
    degraded INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    hits TEXT NOT NULL,
    shadow_hits TEXT NOT NULL,
    document TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_event_id ON decisions (event_id, lsn);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (event_time, lsn);
CREATE INDEX IF NOT EXISTS decisions_scene_time ON decisions (scene, event_time, lsn);
CREATE INDEX IF NOT EXISTS decisions_decision_time ON decisions (decision, event_time, lsn);
CREATE INDEX IF NOT EXISTS decisions_logged_at ON decisions (logged_at);
CREATE TABLE IF NOT EXISTS labels (
    event_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    label_time INTEGER NOT NULL,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_received_at ON labels (received_at);
CREATE TABLE IF NOT EXISTS review_queue (
    event_id TEXT PRIMARY KEY,
    lsn INTEGER NOT NULL,
    scene TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    queued_at INTEGER NOT NULL,
    claimed_by TEXT,
    claim_until INTEGER,
    resolved_by TEXT,
    resolved_at INTEGER,
    outcome TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS review_queue_queued ON review_queue (queued_at, lsn);
CREATE INDEX IF NOT EXISTS review_queue_open ON review_queue (scene, queued_at)
    WHERE resolved_at IS NULL;
CREATE TABLE IF NOT EXISTS review_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    analyst TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_audit_event ON review_audit (event_id, id);
CREATE INDEX IF NOT EXISTS review_audit_at ON review_audit (at);
"""
_COLUMNS = ("lsn, event_id, scene, decision, score, event_time, logged_at, ruleset_version, "
            "late, degraded, latency_ms, hits, shadow_hits, document, event")
_INSERT = (f"INSERT INTO decisions ({_COLUMNS}) VALUES ({', '.join('?' * 15)}) "
           "ON CONFLICT (lsn) DO NOTHING")
_UPSERT_LABELS = upsert_labels_sql(f"VALUES ({', '.join('?' * 5)})")
_PURGE_CHUNK = 5000
_LOOKUP_CHUNK = 500


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are opened and committed explicitly below.
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise DecisionLogError(f"cannot open the decision log {path}: the file system "
                                   f"does not support SQLite WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _json_path(field: str) -> str:
    """The SQLite JSON path of the top-level key `field`."""
    return '$."' + field.replace('"', '""') + '"'


class _Transaction:
    """`BEGIN IMMEDIATE` … `COMMIT`, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
        finally:
            # After an error, or a COMMIT that failed (disk full), so the next BEGIN works.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")


def _create_schema(conn: sqlite3.Connection, path: Path) -> None:
    with _Transaction(conn):
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO decision_log_meta (name, value) VALUES ('schema_version', ?) "
                     "ON CONFLICT (name) DO NOTHING", (SCHEMA_VERSION,))
        version = conn.execute(
            "SELECT value FROM decision_log_meta WHERE name = 'schema_version'").fetchone()[0]
        if version in UPGRADES:  # the tables it lacked were created above
            version = UPGRADES[version]
            conn.execute(BACKFILL_SQL)
            conn.execute("UPDATE decision_log_meta SET value = ? WHERE name = "
                         "'schema_version'", (version,))
    if version != SCHEMA_VERSION:
        raise DecisionLogError(f"the decision log {path} has schema version {version}; this "
                               f"riskengine reads version {SCHEMA_VERSION}")


class SQLiteLog(DecisionLog):
    """Decision log in the SQLite file `path` (created with its folder if absent)."""

    driver_errors = (sqlite3.Error,)

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(str(path), **options)
        self.path = path
        conns: list[sqlite3.Connection] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conns.append(_connect(path))
            _create_schema(conns[0], path)
            conns.append(_connect(path))
        except (sqlite3.Error, OSError) as exc:
            for conn in conns:
                conn.close()
            raise DecisionLogError(f"cannot open the decision log {path}: {exc}") from exc
        except BaseException:
            for conn in conns:
                conn.close()
            raise
        self._wconn, self._rconn = conns
        self._rlock = threading.Lock()
        self._start()

    def _insert(self, rows: Sequence[Row]) -> set[int]:
        with _Transaction(self._wconn) as conn:
            # LSNs already logged (a retried batch, or another process's block): looked up
            # inside the write transaction, then one executemany for the rest.
            lsns = [row[0] for row in rows]
            present: set[int] = set()
            for start in range(0, len(lsns), _LOOKUP_CHUNK):
                chunk = lsns[start:start + _LOOKUP_CHUNK]
                present.update(lsn for (lsn,) in conn.execute(
                    f"SELECT lsn FROM decisions WHERE lsn IN ({','.join('?' * len(chunk))})",
                    chunk))
            fresh = [row for row in rows if row[0] not in present]
            conn.executemany(_INSERT, fresh)
            conn.executemany(ENQUEUE_SQL, enqueue_rows(fresh))
        return {row[0] for row in fresh}

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._rlock:
            return self._rconn.execute(sql, params).fetchall()

    def _select_latest(self, event_id: str) -> tuple[str, int] | None:
        rows = self._fetch("SELECT document, logged_at FROM decisions WHERE event_id = ? "
                           "ORDER BY lsn DESC LIMIT 1", (event_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def _select(self, scene: str | None, decision: str | None, since: int | None,
                until: int | None, limit: int, entity: tuple[str, str] | None
                ) -> list[tuple[str, int]]:
        condition = None if entity is None else (
            "CAST(json_extract(event, ?) AS TEXT) = ?", [_json_path(entity[0]), entity[1]])
        sql, params = query_sql("?", "document", scene, decision, since, until, limit,
                                condition)
        return [(r[0], r[1]) for r in self._fetch(sql, params)]

    def _select_event(self, event_id: str, lsn: int | None) -> str | None:
        sql, params = event_sql("?", "event", event_id, lsn)
        rows = self._fetch(sql, params)
        return rows[0][0] if rows else None

    def _select_events(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        rows = self._fetch("SELECT lsn, scene, event FROM decisions WHERE lsn > ? "
                           "ORDER BY lsn LIMIT ?", (after, limit))
        return [(r[0], r[1], r[2]) for r in rows]

    def _select_max_lsn(self) -> int:
        rows = self._fetch(
            "SELECT max(coalesce((SELECT max(lsn) FROM decisions), 0), coalesce((SELECT "
            "CAST(value AS INTEGER) FROM decision_log_meta WHERE name = 'purged_lsn'), 0))")
        return int(rows[0][0])

    def _select_count(self) -> int:
        return int(self._fetch("SELECT count(*) FROM decisions")[0][0])

    def _delete_older(self, cutoff: int) -> int:
        deleted = 0
        with self._rlock:
            while True:
                # Short transactions, so the writer is never locked out for long.
                with _Transaction(self._rconn) as conn:
                    top = conn.execute("SELECT max(lsn) FROM decisions WHERE logged_at < ?",
                                       (cutoff,)).fetchone()[0]
                    if top is None:
                        return deleted
                    # Remember the largest LSN, so max_lsn() never goes back.
                    conn.execute("INSERT INTO decision_log_meta (name, value) VALUES "
                                 "('purged_lsn', ?) ON CONFLICT (name) DO UPDATE SET value = "
                                 "max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                                 (str(top),))
                    done = conn.execute(
                        "DELETE FROM decisions WHERE lsn IN (SELECT lsn FROM decisions "
                        "WHERE logged_at < ? LIMIT ?)", (cutoff, _PURGE_CHUNK)).rowcount
                deleted += done
                if done < _PURGE_CHUNK:
                    return deleted

    def _upsert_labels(self, rows: Sequence[LabelRow]) -> None:
        with self._rlock, _Transaction(self._rconn) as conn:
            conn.executemany(_UPSERT_LABELS, rows)

    def _select_labels(self, event_ids: Sequence[str]) -> list[LabelRow]:
        rows = self._fetch(f"SELECT {LABEL_COLUMNS} FROM labels WHERE event_id IN "
                           f"({','.join('?' * len(event_ids))})", event_ids)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def _select_label_count(self) -> int:
        return int(self._fetch("SELECT count(*) FROM labels")[0][0])

    def _select_labelled(self, scene: str, since: int | None, until: int | None,
                         after: tuple[int, int] | None, limit: int) -> list[LabelledRow]:
        sql, params = labelled_sql("?", "{}", scene, since, until, after, limit)
        return labelled_rows(self._fetch(sql, params))

    def _delete_labels_older(self, cutoff: int) -> int:
        with self._rlock, _Transaction(self._rconn) as conn:
            return int(conn.execute("DELETE FROM labels WHERE received_at < ?",
                                    (cutoff,)).rowcount)

    def _transact(self, work: Callable[[Execute], T]) -> T:
        def execute(sql: str, params: Sequence[Any] = ()) -> tuple[list[Any], int]:
            cursor = conn.execute(sql, params)
            return cursor.fetchall(), cursor.rowcount

        with self._rlock, _Transaction(self._rconn) as conn:
            return work(execute)

    def _close_connections(self) -> None:
        with self._rlock:
            self._rconn.close()
        self._wconn.close()
