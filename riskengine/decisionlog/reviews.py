"""The review queue: decisions answered ``review``, waiting for an analyst.

Design (schema version 3 of the decision log, both backends):

- ``review_queue`` holds one row per reviewed event id. The writer inserts it in the SAME
  transaction as the decision row (`enqueue_rows`), only for decision rows that were new:
  a record whose LSN is already logged is not inserted, and a second review decision of
  an event id is not queued again (the event id is the key). Fallback decisions are not
  logged, so never queued. Opening a version-1 or -2 log creates the table and queues
  the review decisions it already holds.
- An item is *open*, *claimed* (``claimed_by`` with ``claim_until`` in the future: a claim
  expires by itself, the item is open again) or *resolved* (``resolved_at``, with the
  analyst, the outcome ``fraud``/``legit`` and an optional note).
- ``review_audit`` keeps who did what and when (``claim``, ``resolve``, ``list``), one
  row per action, written in the transaction of the action it records.
- A claim and a resolution are single conditional UPDATEs, so two analysts racing for
  one item cannot both win: the loser is told who holds it. Resolving stores the label
  (source ``review:<analyst>``) in the same transaction.
- Purging the log drops the queue items queued before the cutoff (their decisions are
  gone with them) and the audit rows written before it.

The SQL is written once here with ``?`` placeholders; a backend gives a `Transact`
that runs a function in one transaction with its own placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from riskengine.decisionlog import codec
from riskengine.decisionlog.record import Row

__all__ = ["MAX_ANALYST", "MAX_NOTE", "OUTCOMES", "REVIEW_STATES", "AuditEntry", "Claim",
           "Execute", "ReviewItem", "Transact", "analyst_error", "enqueue_rows"]

T = TypeVar("T")
OUTCOMES = ("fraud", "legit")
REVIEW_STATES = ("open", "claimed", "resolved")
MAX_ANALYST = 100
MAX_NOTE = 2000
_ANALYST_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,100}\Z")

ITEM_COLUMNS = ("event_id, lsn, scene, event_time, queued_at, claimed_by, claim_until, "
                "resolved_by, resolved_at, outcome, note")
ENQUEUE_SQL = ("INSERT INTO review_queue (event_id, lsn, scene, event_time, queued_at) "
               "VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING")
BACKFILL_SQL = ("INSERT INTO review_queue (event_id, lsn, scene, event_time, queued_at) "
                "SELECT event_id, min(lsn), min(scene), min(event_time), min(logged_at) "
                "FROM decisions WHERE decision = 'review' GROUP BY event_id "
                "ON CONFLICT (event_id) DO NOTHING")
"""Queues the review decisions of a log opened from an older schema version."""


class Execute(Protocol):
    """Runs one statement (``?`` placeholders) in the open transaction: (rows, rowcount)."""

    def __call__(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[Any], int]: ...


Transact = Callable[[Callable[[Execute], T]], T]


def enqueue_rows(rows: Sequence[Row]) -> list[tuple[str, int, str, int, int]]:
    """`ENQUEUE_SQL` parameters of the review decisions among decision `rows`."""
    return [(row[1], row[0], row[2], row[5], row[6]) for row in rows if row[3] == "review"]


def analyst_error(analyst: object) -> str | None:
    """Why `analyst` is not a valid analyst name, or None."""
    if type(analyst) is not str or not _ANALYST_RE.match(analyst):
        return (f"analyst must be 1..{MAX_ANALYST} letters, digits and _ . @ + - "
                f"(not {analyst!r:.60})")
    return None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One queued review decision and where it stands at `now` (epoch ms)."""

    event_id: str
    lsn: int
    scene: str
    event_time: int
    queued_at: int
    claimed_by: str | None
    claim_until: int | None
    resolved_by: str | None
    resolved_at: int | None
    outcome: str | None
    note: str | None
    now: int

    @classmethod
    def from_row(cls, row: Sequence[Any], now: int) -> ReviewItem:
        return cls(codec.decode_text(row[0]), int(row[1]), codec.decode_text(row[2]),
                   int(row[3]), int(row[4]), row[5], _int(row[6]), row[7], _int(row[8]),
                   row[9], None if row[10] is None else codec.decode_text(row[10]), now)

    @property
    def state(self) -> Literal["open", "claimed", "resolved"]:
        if self.resolved_at is not None:
            return "resolved"
        if self.claimed_by is not None and (self.claim_until or 0) > self.now:
            return "claimed"
        return "open"

    def to_dict(self) -> dict[str, Any]:
        claimed = self.state == "claimed"
        return {"event_id": self.event_id, "scene": self.scene, "lsn": self.lsn,
                "state": self.state, "event_time": self.event_time,
                "queued_at": self.queued_at,
                "age_seconds": max(0, self.now - self.queued_at) / 1000.0,
                "claimed_by": self.claimed_by if claimed else None,
                "claim_until": self.claim_until if claimed else None,
                "resolved_by": self.resolved_by, "resolved_at": self.resolved_at,
                "outcome": self.outcome, "note": self.note}


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim or a resolution found: `done`, or the item as it stands (None when
    the event id is not queued) telling why not."""

    done: bool
    item: ReviewItem | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action on a review item."""

    event_id: str
    at: int
    analyst: str
    action: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "at": self.at, "analyst": self.analyst,
                "action": self.action, "detail": self.detail}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


AUDIT_SQL = ("INSERT INTO review_audit (event_id, at, analyst, action, detail) "
             "VALUES (?, ?, ?, ?, ?)")


def audit_params(event_id: str, at: int, analyst: str, action: str,
                 detail: dict[str, Any]) -> tuple[str, int, str, str, str]:
    return (codec.encode_text(event_id), at, analyst, action, codec.dumps(detail))


def select_item(execute: Execute, event_id: str, now: int) -> ReviewItem | None:
    rows, _ = execute(f"SELECT {ITEM_COLUMNS} FROM review_queue WHERE event_id = ?",
                      (codec.encode_text(event_id),))
    return ReviewItem.from_row(rows[0], now) if rows else None


def select_items(execute: Execute, scene: str | None, state: str | None, now: int,
                 limit: int) -> list[ReviewItem]:
    where: list[str] = []
    params: list[Any] = []
    if scene is not None:
        where.append("scene = ?")
        params.append(codec.encode_text(scene))
    if state == "resolved":
        where.append("resolved_at IS NOT NULL")
    elif state == "claimed":
        where.append("resolved_at IS NULL AND claimed_by IS NOT NULL AND claim_until > ?")
        params.append(now)
    elif state == "open":
        where.append("resolved_at IS NULL AND (claimed_by IS NULL OR claim_until <= ?)")
        params.append(now)
    sql = f"SELECT {ITEM_COLUMNS} FROM review_queue"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows, _ = execute(sql + " ORDER BY queued_at, lsn LIMIT ?", [*params, limit])
    return [ReviewItem.from_row(row, now) for row in rows]


def claim(execute: Execute, event_id: str, analyst: str, now: int, until: int) -> Claim:
    """Claim an unresolved item that nobody else holds (an expired claim is free)."""
    key = codec.encode_text(event_id)
    _, count = execute(
        "UPDATE review_queue SET claimed_by = ?, claim_until = ? WHERE event_id = ? AND "
        "resolved_at IS NULL AND (claimed_by IS NULL OR claimed_by = ? OR claim_until <= ?)",
        (analyst, until, key, analyst, now))
    if count:
        execute(AUDIT_SQL, audit_params(event_id, now, analyst, "claim",
                                        {"claim_until": until}))
    return Claim(bool(count), select_item(execute, event_id, now))


def resolve(execute: Execute, event_id: str, analyst: str, outcome: str, note: str | None,
            now: int, label_sql: str, detail: dict[str, Any]) -> Claim:
    """Resolve an unresolved item not held by someone else, store its label (`label_sql`,
    the backend's label upsert with ``?`` placeholders) and audit it, in one transaction."""
    key = codec.encode_text(event_id)
    _, count = execute(
        "UPDATE review_queue SET resolved_by = ?, resolved_at = ?, outcome = ?, note = ?, "
        "claimed_by = NULL, claim_until = NULL WHERE event_id = ? AND resolved_at IS NULL "
        "AND (claimed_by IS NULL OR claimed_by = ? OR claim_until <= ?)",
        (analyst, now, outcome, None if note is None else codec.encode_text(note), key,
         analyst, now))
    if count:
        execute(label_sql, (key, outcome, now, codec.encode_text(f"review:{analyst}"), now))
        execute(AUDIT_SQL, audit_params(event_id, now, analyst, "resolve",
                                        {"outcome": outcome, "note": note, **detail}))
    return Claim(bool(count), select_item(execute, event_id, now))


def select_audit(execute: Execute, event_id: str) -> list[AuditEntry]:
    rows, _ = execute("SELECT event_id, at, analyst, action, detail FROM review_audit "
                      "WHERE event_id = ? ORDER BY id", (codec.encode_text(event_id),))
    return [AuditEntry(codec.decode_text(r[0]), int(r[1]), r[2], r[3], codec.loads(r[4]))
            for r in rows]


def queue_stats(execute: Execute) -> dict[str, tuple[int, int]]:
    """Scene → (unresolved items, the oldest one's queued_at)."""
    rows, _ = execute("SELECT scene, count(*), min(queued_at) FROM review_queue "
                      "WHERE resolved_at IS NULL GROUP BY scene")
    return {codec.decode_text(r[0]): (int(r[1]), int(r[2])) for r in rows}


def purge(execute: Execute, cutoff: int) -> None:
    execute("DELETE FROM review_queue WHERE queued_at < ?", (cutoff,))
    execute("DELETE FROM review_audit WHERE at < ?", (cutoff,))
