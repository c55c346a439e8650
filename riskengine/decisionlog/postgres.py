"""PostgreSQL decision log through psycopg 3; JSON columns are `jsonb`.

A batch is one `INSERT … SELECT FROM unnest(…)` statement (one round trip, whatever its
size) in its own transaction. The writer thread and the queries each have a connection;
a connection that broke (server restart, network) is dropped and opened again on next
use, and a query that met a broken connection is retried once on a fresh one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

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
from riskengine.decisionlog.urls import mask_url, scrub, secrets_of

__all__ = ["PostgresLog"]

T = TypeVar("T")
SCHEMA_VERSION = "3"
UPGRADES = {"1": "3", "2": "3"}
"""Older schema versions this one opens: version 2 added the `labels` table, version 3
the review queue (riskengine/decisionlog/reviews.py)."""
_APPLICATION = "riskengine-decisionlog"
_LOCK_KEY = 0x7269736B  # advisory lock serialising schema creation between processes
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS decision_log_meta (
        name text PRIMARY KEY,
        value text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS decisions (
        lsn bigint PRIMARY KEY,
        event_id text NOT NULL,
        scene text NOT NULL,
        decision text NOT NULL CHECK (decision IN ('accept', 'review', 'reject')),
        score double precision NOT NULL,
        event_time bigint NOT NULL,
        logged_at bigint NOT NULL,
        ruleset_version text NOT NULL,
        late boolean NOT NULL,
        degraded boolean NOT NULL,
        latency_ms double precision NOT NULL,
        hits jsonb NOT NULL,
        shadow_hits jsonb NOT NULL,
        document jsonb NOT NULL,
        event jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS decisions_event_id ON decisions (event_id, lsn)",
    "CREATE INDEX IF NOT EXISTS decisions_time ON decisions (event_time, lsn)",
    "CREATE INDEX IF NOT EXISTS decisions_scene_time ON decisions (scene, event_time, lsn)",
    "CREATE INDEX IF NOT EXISTS decisions_decision_time "
    "ON decisions (decision, event_time, lsn)",
    "CREATE INDEX IF NOT EXISTS decisions_logged_at ON decisions (logged_at)",
    """CREATE TABLE IF NOT EXISTS labels (
        event_id text PRIMARY KEY,
        label text NOT NULL,
        label_time bigint NOT NULL,
        source text NOT NULL,
        received_at bigint NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS labels_received_at ON labels (received_at)",
    """CREATE TABLE IF NOT EXISTS review_queue (
        event_id text PRIMARY KEY,
        lsn bigint NOT NULL,
        scene text NOT NULL,
        event_time bigint NOT NULL,
        queued_at bigint NOT NULL,
        claimed_by text,
        claim_until bigint,
        resolved_by text,
        resolved_at bigint,
        outcome text,
        note text)""",
    "CREATE INDEX IF NOT EXISTS review_queue_queued ON review_queue (queued_at, lsn)",
    "CREATE INDEX IF NOT EXISTS review_queue_open ON review_queue (scene, queued_at) "
    "WHERE resolved_at IS NULL",
    """CREATE TABLE IF NOT EXISTS review_audit (
        id bigserial PRIMARY KEY,
        event_id text NOT NULL,
        at bigint NOT NULL,
        analyst text NOT NULL,
        action text NOT NULL,
        detail text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS review_audit_event ON review_audit (event_id, id)",
    "CREATE INDEX IF NOT EXISTS review_audit_at ON review_audit (at)",
)
_TABLES = ("decisions", "decision_log_meta", "labels", "review_queue", "review_audit")
_COLUMNS = ("lsn, event_id, scene, decision, score, event_time, logged_at, ruleset_version, "
            "late, degraded, latency_ms, hits, shadow_hits, document, event")
# One statement per batch: each column travels as one array (JSON as text[], cast per row).
_INSERT = (
    f"INSERT INTO decisions ({_COLUMNS}) "
    "SELECT lsn, event_id, scene, decision, score, event_time, logged_at, ruleset_version, "
    "late, degraded, latency_ms, hits::jsonb, shadow_hits::jsonb, document::jsonb, "
    "event::jsonb "
    "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[], "
    "%s::bigint[], %s::bigint[], %s::text[], %s::bool[], %s::bool[], %s::float8[], "
    f"%s::text[], %s::text[], %s::text[], %s::text[]) AS r({_COLUMNS}) "
    "ON CONFLICT (lsn) DO NOTHING RETURNING lsn")
_UPSERT_LABELS = upsert_labels_sql(
    f"SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], "
    f"%s::bigint[]) AS r({LABEL_COLUMNS})")
_PURGE_CHUNK = 5000
_ENQUEUE = ENQUEUE_SQL.replace("?", "%s")  # one placeholder style

Connection = psycopg.Connection[tuple[Any, ...]]


def _placeholders(sql: str) -> str:
    """`sql` written with ``?`` placeholders (riskengine/decisionlog/reviews.py) in
    psycopg's ``%s``."""
    return sql.replace("?", "%s")


class PostgresLog(DecisionLog):
    """Decision log in the PostgreSQL database of `url` (`postgresql://user:pw@host/db`)."""

    driver_errors = (psycopg.Error,)

    def __init__(self, url: str, *, connect_timeout: float = 5.0, **options: Any) -> None:
        super().__init__(mask_url(url), secrets=secrets_of(url), **options)
        self._url = url
        self._connect_timeout = max(1, round(connect_timeout))
        self._rlock = threading.Lock()
        self._wconn: Connection | None = None
        self._rconn: Connection | None = None
        try:
            self._create_schema(self._writer_conn())
            self._reader_conn()
        except psycopg.Error as exc:
            self._close_connections()
            # Not chained: the driver's error is restated here with any password scrubbed.
            raise DecisionLogError(
                f"cannot open the decision log {self.description}: "
                f"{scrub(str(exc).strip(), self._secrets)}") from None
        except BaseException:
            self._close_connections()
            raise
        self._start()

    def _connect(self) -> Connection:
        return psycopg.connect(self._url, autocommit=True, connect_timeout=self._connect_timeout,
                               application_name=_APPLICATION)

    def _create_schema(self, conn: Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            found = conn.execute("SELECT " + " AND ".join(
                f"to_regclass('{table}') IS NOT NULL" for table in _TABLES)).fetchone()
            if not (found and found[0]):  # a user without CREATE rights can use an existing log
                for statement in _SCHEMA:
                    conn.execute(statement)
            conn.execute("INSERT INTO decision_log_meta (name, value) VALUES "
                         "('schema_version', %s) ON CONFLICT (name) DO NOTHING",
                         (SCHEMA_VERSION,))
            row = conn.execute("SELECT value FROM decision_log_meta "
                               "WHERE name = 'schema_version'").fetchone()
            version = None if row is None else row[0]
            if version in UPGRADES:  # the tables it lacked were created above
                version = UPGRADES[version]
                conn.execute(_placeholders(BACKFILL_SQL))
                conn.execute("UPDATE decision_log_meta SET value = %s WHERE name = "
                             "'schema_version'", (version,))
        if version != SCHEMA_VERSION:
            raise DecisionLogError(f"the decision log {self.description} has schema version "
                                   f"{version}; this riskengine reads version {SCHEMA_VERSION}")

    def _writer_conn(self) -> Connection:
        conn = self._wconn
        if conn is None or conn.closed or conn.broken:
            conn = self._wconn = self._connect()
        return conn

    def _reader_conn(self) -> Connection:
        conn = self._rconn
        if conn is None or conn.closed or conn.broken:
            conn = self._rconn = self._connect()
        return conn

    def _insert(self, rows: Sequence[Row]) -> set[int]:
        conn = self._writer_conn()
        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            with conn.transaction():
                found = conn.execute(_INSERT, columns).fetchall()
                inserted = {row[0] for row in found}
                queued = enqueue_rows([row for row in rows if row[0] in inserted])
                if queued:
                    with conn.cursor() as cursor:
                        cursor.executemany(_ENQUEUE, queued)
        except psycopg.OperationalError:
            conn.close()
            raise
        return inserted

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self._rlock:
            fresh = self._rconn is None or self._rconn.closed or self._rconn.broken
            conn = self._reader_conn()
            try:
                return work(conn)
            except psycopg.OperationalError:
                conn.close()
                if fresh:
                    raise
            # The connection had broken while idle: once more on a new one.
            return work(self._reader_conn())

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._read(lambda conn: conn.execute(sql, params).fetchall())

    def _select_latest(self, event_id: str) -> tuple[str, int] | None:
        rows = self._rows("SELECT document::text, logged_at FROM decisions WHERE event_id = %s "
                          "ORDER BY lsn DESC LIMIT 1", (event_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def _select(self, scene: str | None, decision: str | None, since: int | None,
                until: int | None, limit: int, entity: tuple[str, str] | None
                ) -> list[tuple[str, int]]:
        condition = None if entity is None else ("event ->> %s = %s", list(entity))
        sql, params = query_sql("%s", "document::text", scene, decision, since, until, limit,
                                condition)
        return [(r[0], r[1]) for r in self._rows(sql, params)]

    def _select_event(self, event_id: str, lsn: int | None) -> str | None:
        sql, params = event_sql("%s", "event::text", event_id, lsn)
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    def _select_events(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        rows = self._rows("SELECT lsn, scene, event::text FROM decisions WHERE lsn > %s "
                          "ORDER BY lsn LIMIT %s", (after, limit))
        return [(r[0], r[1], r[2]) for r in rows]

    def _select_max_lsn(self) -> int:
        rows = self._rows(
            "SELECT greatest((SELECT max(lsn) FROM decisions), (SELECT value::bigint FROM "
            "decision_log_meta WHERE name = 'purged_lsn'), 0)")
        return int(rows[0][0])

    def _select_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM decisions")[0][0])

    def _delete_older(self, cutoff: int) -> int:
        def chunk(conn: Connection) -> int:
            with conn.transaction():
                top = conn.execute("SELECT max(lsn) FROM decisions WHERE logged_at < %s",
                                   (cutoff,)).fetchone()
                if top is None or top[0] is None:
                    return 0
                # Remember the largest LSN, so max_lsn() never goes back.
                conn.execute(
                    "INSERT INTO decision_log_meta (name, value) VALUES ('purged_lsn', %s) "
                    "ON CONFLICT (name) DO UPDATE SET value = greatest("
                    "decision_log_meta.value::bigint, excluded.value::bigint)::text",
                    (str(top[0]),))
                return conn.execute(
                    "DELETE FROM decisions WHERE lsn IN (SELECT lsn FROM decisions "
                    "WHERE logged_at < %s LIMIT %s)", (cutoff, _PURGE_CHUNK)).rowcount

        deleted = 0
        while True:
            done = self._read(chunk)
            deleted += done
            if done < _PURGE_CHUNK:
                return deleted

    def _upsert_labels(self, rows: Sequence[LabelRow]) -> None:
        columns = [list(column) for column in zip(*rows, strict=True)]

        def upsert(conn: Connection) -> None:
            with conn.transaction():
                conn.execute(_UPSERT_LABELS, columns)

        self._read(upsert)

    def _select_labels(self, event_ids: Sequence[str]) -> list[LabelRow]:
        rows = self._rows(f"SELECT {LABEL_COLUMNS} FROM labels WHERE event_id = ANY(%s)",
                          (list(event_ids),))
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def _select_label_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM labels")[0][0])

    def _select_labelled(self, scene: str, since: int | None, until: int | None,
                         after: tuple[int, int] | None, limit: int) -> list[LabelledRow]:
        sql, params = labelled_sql("%s", "{}::text", scene, since, until, after, limit)
        return labelled_rows(self._rows(sql, params))

    def _delete_labels_older(self, cutoff: int) -> int:
        def delete(conn: Connection) -> int:
            with conn.transaction():
                return int(conn.execute("DELETE FROM labels WHERE received_at < %s",
                                        (cutoff,)).rowcount)

        return self._read(delete)

    def _transact(self, work: Callable[[Execute], T]) -> T:
        def run(conn: Connection) -> T:
            def execute(sql: str, params: Sequence[Any] = ()) -> tuple[list[Any], int]:
                cursor = conn.execute(_placeholders(sql), params)
                rows = cursor.fetchall() if cursor.description is not None else []
                return rows, cursor.rowcount

            with conn.transaction():
                return work(execute)

        return self._read(run)

    def _close_connections(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
        with self._rlock:
            if self._rconn is not None:
                self._rconn.close()
