"""The decision log: every decision with its event, in SQLite or PostgreSQL.

`open_log(url, path_default=...)` picks the backend from the URL:

- `None` → SQLite in `path_default`;
- `sqlite:///relative/file.db`, `sqlite:////absolute/file.db`, or a plain file path →
  SQLite (WAL journal, `synchronous=NORMAL`; the file and its folder are created);
- `postgresql://user:password@host:port/db` (or `postgres://`) → PostgreSQL through
  psycopg 3; libpq parameters such as `?sslmode=require` pass through.

Passwords never appear in errors or in `DecisionLog.description`.

Schema (created when absent; the same in both databases, JSON as `TEXT` in SQLite and
`jsonb` in PostgreSQL; event times in epoch ms):

    decisions(lsn bigint PRIMARY KEY,     -- arrival order
              event_id, scene, decision,  -- decision: accept | review | reject
              score, event_time, logged_at, ruleset_version, late, degraded, latency_ms,
              hits, shadow_hits,          -- JSON arrays of rule ids
              document,                   -- JSON: the full decision (Decision.to_dict())
              event)                      -- JSON: the normalised event, for replay
    indexes: (event_id, lsn) for get; (event_time, lsn), (scene, event_time, lsn) and
             (decision, event_time, lsn) for query; (logged_at) for purge
    decision_log_meta(name PRIMARY KEY, value)  -- schema_version; purged_lsn, the largest
                                                -- LSN purged, so max_lsn() never goes back
    labels(event_id PRIMARY KEY, label, label_time, source, received_at)
                                  -- the latest label per event (labels.py), joined to
                                  -- decisions when read; indexed on received_at (purge)
    review_queue(event_id PRIMARY KEY, lsn, scene, event_time, queued_at, claimed_by,
                 claim_until, resolved_by, resolved_at, outcome, note)
                                  -- review decisions, queued in the decision's transaction
    review_audit(id, event_id, at, analyst, action, detail)
                                  -- who claimed, resolved, listed what (reviews.py)

Schema version 3 (version 1 had no `labels`, version 2 no review tables; such a log is
upgraded when opened, its review decisions queued).

Strings that UTF-8 text cannot hold (NUL, lone surrogates) are stored escaped and read
back exactly (see `riskengine.decisionlog.codec`).

Durability: `append` returns a future that resolves once the record's batch is
committed. With SQLite (WAL, `synchronous=NORMAL`) a committed record survives the process
being killed, not a power loss; PostgreSQL gives what its server is configured for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from riskengine.decisionlog.base import MAX_QUERY_LIMIT, DecisionLog
from riskengine.decisionlog.record import DECISIONS, DecisionLogError, LogRecord
from riskengine.decisionlog.sqlite import SQLiteLog
from riskengine.decisionlog.urls import POSTGRES_SCHEMES, SQLITE_SCHEME, mask_url, sqlite_path

__all__ = ["DECISIONS", "MAX_QUERY_LIMIT", "DecisionLog", "DecisionLogError", "LogRecord",
           "open_log"]


def open_log(url: str | None, *, path_default: Path, **options: Any) -> DecisionLog:
    """Open (and create if needed) the decision log named by `url`; see the module docstring.

    `options` go to the backend: `max_batch` (records per transaction, default 5000),
    `max_pending` (queued records before appends fail, default 100000) and, for
    PostgreSQL, `connect_timeout` (seconds, default 5).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     log = open_log(None, path_default=Path(tmp) / "decisions.db")
    ...     log.count(), log.max_lsn()
    ...     log.close()
    (0, 0)
    """
    if url is None or not url.strip():
        return _sqlite(path_default.expanduser(), options)
    scheme, sep, _ = url.partition("://")
    if not sep:
        return _sqlite(Path(url).expanduser(), options)
    scheme = scheme.lower()
    if scheme == SQLITE_SCHEME:
        try:
            path = sqlite_path(url)
        except ValueError as exc:
            raise DecisionLogError(str(exc)) from None
        return _sqlite(path, options)
    if scheme in POSTGRES_SCHEMES:
        from riskengine.decisionlog.postgres import PostgresLog  # psycopg loads only here

        return PostgresLog(url, **options)
    raise DecisionLogError(f"decision log URL {mask_url(url)}: unsupported scheme {scheme!r}; "
                           f"use sqlite:///file.db, a file path or postgresql://…")


def _sqlite(path: Path, options: dict[str, Any]) -> DecisionLog:
    return SQLiteLog(path, **options)
