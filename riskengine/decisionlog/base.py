"""The decision log contract, and the group-commit writer every backend shares.

`append` only puts a record on a queue and returns a future. One writer thread per log
takes everything queued (up to `max_batch` records), sorts it by LSN, writes it in one
transaction and then resolves the futures of that batch: with the result after the commit,
with a `DecisionLogError` when the batch could not be written. The writer then goes on
with the next batch, so an outage of the database fails the decisions made during it and
nothing else; the backends reconnect by themselves.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

from riskengine.decisionlog import codec, reviews
from riskengine.decisionlog.labels import Label, latest_labels
from riskengine.decisionlog.record import (
    DECISIONS,
    INT64,
    DecisionLogError,
    LogRecord,
    Row,
    now_ms,
)
from riskengine.decisionlog.reviews import AuditEntry, Claim, Execute, ReviewItem
from riskengine.decisionlog.urls import scrub

__all__ = ["MAX_QUERY_LIMIT", "DecisionLog", "LabelRow", "LabelledDecision", "LabelledRow"]

T = TypeVar("T")
MAX_QUERY_LIMIT = 1000
_LABEL_LOOKUP_CHUNK = 500

LabelRow = tuple[str, str, int, str, int]
"""event_id, label, label_time, source, received_at: a stored label (text encoded)."""
LabelledRow = tuple[int, int, str, str, "LabelRow | None"]
"""lsn, event_time, document, event and the event's label (None without one)."""


class LabelledDecision(NamedTuple):
    """A logged decision with its event and the event's label (None without one)."""

    lsn: int
    document: dict[str, Any]
    event: dict[str, Any]
    label: Label | None


class _Group:
    """One future for several records: it resolves when the last of them is written,
    with the first failure if any failed."""

    __slots__ = ("error", "future", "remaining")

    def __init__(self, size: int) -> None:
        self.future: Future[None] = Future()
        self.remaining = size
        self.error: BaseException | None = None

    def settle(self, error: BaseException | None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0 and not self.future.cancelled():
            if self.error is None:
                self.future.set_result(None)
            else:
                self.future.set_exception(self.error)


class _Member:
    """A record's share of a `_Group`, with the part of `Future`'s API the writer uses."""

    __slots__ = ("_done", "group")

    def __init__(self, group: _Group) -> None:
        self.group = group
        self._done = False

    def set_running_or_notify_cancel(self) -> bool:
        if self.group.future.cancelled():
            self._done = True
            return False
        return True

    def set_result(self, result: None) -> None:
        self._done = True
        self.group.settle(None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._done = True
        self.group.settle(exception)

    def done(self) -> bool:
        return self._done


_Pending = tuple[LogRecord, "Future[None] | _Member"]


class DecisionLog(ABC):
    """Append-only store of decisions with a background group-commit writer.

    Thread-safe. Queries read what is committed; call `flush` first to read your own
    appends. Argument errors raise `ValueError`; storage errors raise `DecisionLogError`.
    """

    #: the driver's base exception, turned into `DecisionLogError` by every public method
    driver_errors: tuple[type[Exception], ...] = ()

    def __init__(self, description: str, *, secrets: tuple[str, ...] = (),
                 max_batch: int = 5000, max_pending: int = 100_000) -> None:
        if max_batch < 1 or max_pending < 1:
            raise ValueError("max_batch and max_pending must be positive")
        self.description = description
        self._secrets = secrets
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._appended = 0
        self._done = 0
        self._closing = False
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="decision-log-writer",
                                         daemon=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- writing ---------------------------------------------------------------------

    def _start(self) -> None:
        """Called by a backend once its connections are open."""
        self._writer.start()

    def append(self, record: LogRecord) -> Future[None]:
        """Queue `record`; the future resolves once its batch is committed (or failed).

        Never waits for I/O. When `max_pending` records are already waiting (the database
        is down or too slow) the record is dropped and its future fails at once. A future
        cancelled before its batch is taken is not written.
        """
        future: Future[None] = Future()
        with self._cond:
            if self._closing:
                raise DecisionLogError(f"decision log {self.description} is closed")
            if len(self._pending) >= self._max_pending:
                future.set_exception(DecisionLogError(
                    f"decision log {self.description}: {len(self._pending)} records are "
                    f"waiting to be written; record lsn {record.lsn} was dropped"))
                return future
            self._pending.append((record, future))
            self._appended += 1
            self._cond.notify_all()
        return future

    def append_many(self, records: list[LogRecord]) -> Future[None]:
        """Queue `records` (in LSN order) behind one future: it resolves once all of them
        are committed, or fails with the first failure. Cheaper than one future each."""
        group = _Group(len(records))
        if not records:
            group.future.set_result(None)
            return group.future
        with self._cond:
            if self._closing:
                raise DecisionLogError(f"decision log {self.description} is closed")
            if len(self._pending) + len(records) > self._max_pending:
                group.future.set_exception(DecisionLogError(
                    f"decision log {self.description}: {len(self._pending)} records are "
                    f"waiting to be written; {len(records)} records were dropped"))
                return group.future
            self._pending.extend((record, _Member(group)) for record in records)
            self._appended += len(records)
            self._cond.notify_all()
        return group.future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record appended before this call is written (or failed).

        Returns False if `timeout` seconds passed first. The futures tell which failed.
        """
        with self._cond:
            target = self._appended
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def pending(self) -> int:
        """Records appended whose futures are not resolved yet (queued or being written)."""
        with self._cond:
            return self._appended - self._done

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, stop the writer and close the connections.

        Raises `DecisionLogError` if the queue could not be written within `timeout`.
        """
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        if self._writer.is_alive():
            self._writer.join(timeout)
            if self._writer.is_alive():
                raise DecisionLogError(f"decision log {self.description}: the writer did not "
                                       f"finish within {timeout} s")
        with self._cond:
            self._closed = True
        self._close_connections()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closing)
                if not self._pending:
                    return
                batch = self._pending[:self._max_batch]
                del self._pending[:self._max_batch]
            try:
                self._write_batch(batch)
            except Exception as exc:  # a bug here must not stop the writer
                error = self._error("writing a batch of decisions", exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _write_batch(self, batch: list[_Pending]) -> None:
        """Encode, write in one transaction, then resolve every future of `batch`."""
        rows: list[Row] = []
        futures: list[Future[None] | _Member] = []
        failed: list[tuple[Future[None] | _Member, BaseException]] = []
        seen: set[int] = set()
        for record, future in sorted(batch, key=lambda p: p[0].lsn):
            if not future.set_running_or_notify_cancel():
                continue  # cancelled before its batch was taken: not written
            if record.lsn in seen:
                failed.append((future, self._duplicate(record.lsn)))
                continue
            try:
                row = record.to_row()
            except (TypeError, ValueError, RecursionError) as exc:
                failed.append((future, DecisionLogError(
                    f"decision log: record lsn {record.lsn} cannot be stored as JSON: {exc}")))
                continue
            seen.add(record.lsn)
            rows.append(row)
            futures.append(future)
        if rows:
            try:
                inserted = self._insert(rows)
            except Exception as exc:
                batch_error = self._error("writing a batch of decisions", exc)
                failed.extend((f, batch_error) for f in futures)
            else:
                for row, future in zip(rows, futures, strict=True):
                    if row[0] in inserted:
                        future.set_result(None)
                    else:
                        failed.append((future, self._duplicate(row[0])))
        for future, error in failed:
            future.set_exception(error)

    def _duplicate(self, lsn: int) -> DecisionLogError:
        return DecisionLogError(f"decision log {self.description}: lsn {lsn} is already logged")

    def _error(self, action: str, exc: BaseException) -> DecisionLogError:
        detail = scrub(str(exc).strip() or type(exc).__name__, self._secrets)
        return DecisionLogError(f"decision log {self.description}: {action} failed: {detail}")

    # ---- reading ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise DecisionLogError(f"decision log {self.description} is closed")

    def get(self, event_id: str) -> dict[str, Any] | None:
        """The latest decision logged for `event_id` (its dict plus `logged_at`), or None."""
        self._check_open()
        try:
            found = self._select_latest(codec.encode_text(event_id))
        except self.driver_errors as exc:
            raise self._error("reading a decision", exc) from exc
        return None if found is None else self._document(*found)

    def query(self, scene: str | None = None, decision: str | None = None,
              since: int | None = None, until: int | None = None,
              limit: int = 100, entity: tuple[str, str] | None = None
              ) -> list[dict[str, Any]]:
        """Decisions, newest event time first; `since <= timestamp < until` (epoch ms).

        `entity` (field, value) keeps the decisions whose event has that value (compared
        as text) in that field; it reads the stored events of the rows the other filters
        leave, so give a scene with it. `limit` is capped at `MAX_QUERY_LIMIT`.
        """
        self._check_open()
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, "
                             f"not {decision!r:.40}")
        for name, bound in (("since", since), ("until", until)):
            if bound is not None and (type(bound) is not int or not -INT64 <= bound < INT64):
                raise ValueError(f"{name} must be an epoch-millisecond integer")
        if type(limit) is not int or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r:.40}")
        try:
            rows = self._select(None if scene is None else codec.encode_text(scene), decision,
                                since, until, min(limit, MAX_QUERY_LIMIT), entity)
        except self.driver_errors as exc:
            raise self._error("querying decisions", exc) from exc
        return [self._document(*row) for row in rows]

    @staticmethod
    def _document(document: str, logged_at: int) -> dict[str, Any]:
        found: dict[str, Any] = codec.loads(document)
        found["logged_at"] = logged_at
        return found

    def logged_event(self, event_id: str, *, lsn: int | None = None) -> dict[str, Any] | None:
        """The event the latest decision of `event_id` was made on (the normalised event, as
        stored for replay), or of its decision at `lsn` when given; None when not logged."""
        self._check_open()
        if lsn is not None and (type(lsn) is not int or not 0 <= lsn < INT64):
            raise ValueError(f"lsn must be a non-negative integer, not {lsn!r:.40}")
        try:
            found = self._select_event(codec.encode_text(event_id), lsn)
        except self.driver_errors as exc:
            raise self._error("reading an event", exc) from exc
        if found is None:
            return None
        event: dict[str, Any] = codec.loads(found)
        return event

    def events_after(self, lsn: int, *, chunk_size: int = 1000
                     ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(lsn, scene, event) of every record with a larger LSN, in LSN order.

        Reads `chunk_size` records per query, so a long replay holds no lock or cursor.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        after = lsn
        while True:
            self._check_open()
            try:
                chunk = self._select_events(after, chunk_size)
            except self.driver_errors as exc:
                raise self._error("reading events for replay", exc) from exc
            for row_lsn, scene, event in chunk:
                yield row_lsn, codec.decode_text(scene), codec.loads(event)
            if len(chunk) < chunk_size:
                return
            after = chunk[-1][0]

    def max_lsn(self) -> int:
        """The largest LSN ever logged, purged records included; 0 for an empty log."""
        self._check_open()
        try:
            return self._select_max_lsn()
        except self.driver_errors as exc:
            raise self._error("reading the last lsn", exc) from exc

    def count(self) -> int:
        """How many records the log holds."""
        self._check_open()
        try:
            return self._select_count()
        except self.driver_errors as exc:
            raise self._error("counting decisions", exc) from exc

    def purge(self, older_than_ms: int) -> int:
        """Delete the records with `logged_at < older_than_ms` (epoch ms), the labels
        received before it, the review items queued before it and the review audit rows
        written before it; returns how many records were deleted.

        Keep more than the largest feature window, or a replay cannot rebuild the state.
        """
        self._check_open()
        if type(older_than_ms) is not int:
            raise ValueError("older_than_ms must be an epoch-millisecond integer")
        try:
            deleted = self._delete_older(older_than_ms)
            self._delete_labels_older(older_than_ms)
            self._transact(lambda execute: reviews.purge(execute, older_than_ms))
        except self.driver_errors as exc:
            raise self._error("purging old decisions", exc) from exc
        return deleted

    # ---- labels (riskengine/decisionlog/labels.py) --------------------------------------

    def add_labels(self, labels: Iterable[Label]) -> int:
        """Store `labels` in one transaction; returns how many event ids they name.

        Per event id the newest label is kept (`Label.newer_than`): among `labels` and
        against the one stored. Events without a logged decision are kept too: the join
        happens when reading.
        """
        self._check_open()
        rows: list[LabelRow] = [
            (codec.encode_text(label.event_id), label.label, label.time,
             codec.encode_text(label.source), label.received_at)
            for label in latest_labels(labels)]
        if not rows:
            return 0
        try:
            self._upsert_labels(rows)
        except self.driver_errors as exc:
            raise self._error("storing labels", exc) from exc
        return len(rows)

    def labels_for(self, event_ids: Iterable[str]) -> dict[str, Label]:
        """The stored label of each of `event_ids` that has one."""
        self._check_open()
        wanted = list(dict.fromkeys(codec.encode_text(event_id) for event_id in event_ids))
        found: dict[str, Label] = {}
        try:
            for start in range(0, len(wanted), _LABEL_LOOKUP_CHUNK):
                for row in self._select_labels(wanted[start:start + _LABEL_LOOKUP_CHUNK]):
                    label = _label(row)
                    found[label.event_id] = label
        except self.driver_errors as exc:
            raise self._error("reading labels", exc) from exc
        return found

    def label_count(self) -> int:
        """How many events have a label."""
        self._check_open()
        try:
            return self._select_label_count()
        except self.driver_errors as exc:
            raise self._error("counting labels", exc) from exc

    def labelled_decisions(self, scene: str, since: int | None = None,
                           until: int | None = None, *, chunk_size: int = 1000
                           ) -> Iterator[LabelledDecision]:
        """The decisions of `scene` with `since <= event time < until`, oldest event time
        first, each with its event and label. Reads `chunk_size` rows per query (keyset on
        event time and LSN), so memory stays bounded and no cursor is held."""
        for name, bound in (("since", since), ("until", until)):
            if bound is not None and (type(bound) is not int or not -INT64 <= bound < INT64):
                raise ValueError(f"{name} must be an epoch-millisecond integer")
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        encoded = codec.encode_text(scene)
        after: tuple[int, int] | None = None
        while True:
            self._check_open()
            try:
                chunk = self._select_labelled(encoded, since, until, after, chunk_size)
            except self.driver_errors as exc:
                raise self._error("reading labelled decisions", exc) from exc
            for lsn, _, document, event, label in chunk:
                yield LabelledDecision(lsn, codec.loads(document), codec.loads(event),
                                       None if label is None else _label(label))
            if len(chunk) < chunk_size:
                return
            after = (chunk[-1][1], chunk[-1][0])

    # ---- the review queue (riskengine/decisionlog/reviews.py) ---------------------------

    def _review(self, action: str, work: Callable[[Execute], T]) -> T:
        self._check_open()
        try:
            return self._transact(work)
        except self.driver_errors as exc:
            raise self._error(action, exc) from exc

    def review_items(self, scene: str | None = None, state: str | None = None,
                     limit: int = 100, *, now: int | None = None) -> list[ReviewItem]:
        """Queued review decisions, oldest first; `state` is open, claimed or resolved."""
        if state is not None and state not in reviews.REVIEW_STATES:
            raise ValueError(f"state must be one of {', '.join(reviews.REVIEW_STATES)}")
        if type(limit) is not int or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r:.40}")
        at = now_ms() if now is None else now
        return self._review("reading the review queue", lambda execute: reviews.select_items(
            execute, scene, state, at, min(limit, MAX_QUERY_LIMIT)))

    def review_item(self, event_id: str, *, now: int | None = None) -> ReviewItem | None:
        """The queue item of `event_id`, or None when it was never queued."""
        at = now_ms() if now is None else now
        return self._review("reading a review item",
                            lambda execute: reviews.select_item(execute, event_id, at))

    def claim_review(self, event_id: str, analyst: str, *, claim_ms: int,
                     now: int | None = None) -> Claim:
        """Claim the item for `analyst` for `claim_ms` (again: extends the claim).

        Not done when the item is resolved or another analyst's claim has not expired;
        `Claim.item` is None when `event_id` is not queued.
        """
        at = now_ms() if now is None else now
        return self._review("claiming a review item", lambda execute: reviews.claim(
            execute, event_id, analyst, at, at + claim_ms))

    def resolve_review(self, event_id: str, analyst: str, outcome: str, *,
                       note: str | None = None, detail: dict[str, Any] | None = None,
                       now: int | None = None) -> Claim:
        """Resolve the item as `outcome`, store its label (source ``review:<analyst>``)
        and audit it (with `detail`), in one transaction. Not done when the item is
        resolved already or claimed by another analyst."""
        if outcome not in reviews.OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(reviews.OUTCOMES)}")
        at = now_ms() if now is None else now
        return self._review("resolving a review item", lambda execute: reviews.resolve(
            execute, event_id, analyst, outcome, note, at, _UPSERT_ONE_LABEL, detail or {}))

    def audit_review(self, event_id: str, analyst: str, action: str,
                     detail: dict[str, Any], *, now: int | None = None) -> None:
        """Add a row to the audit trail of `event_id`."""
        at = now_ms() if now is None else now
        params = reviews.audit_params(event_id, at, analyst, action, detail)
        self._review("writing the review audit",
                     lambda execute: execute(reviews.AUDIT_SQL, params))

    def review_audit(self, event_id: str) -> list[AuditEntry]:
        """The audit trail of `event_id`, oldest first."""
        return self._review("reading the review audit",
                            lambda execute: reviews.select_audit(execute, event_id))

    def review_stats(self) -> dict[str, tuple[int, int]]:
        """Scene → (unresolved items, the oldest one's queued_at); one grouped query."""
        return self._review("reading the review queue size", reviews.queue_stats)

    # ---- backend hooks ---------------------------------------------------------------

    @abstractmethod
    def _transact(self, work: Callable[[Execute], T]) -> T:
        """Run `work` in one transaction on the query connection, with an `Execute`
        that takes ``?`` placeholders."""

    @abstractmethod
    def _insert(self, rows: Sequence[Row]) -> set[int]:
        """Insert `rows` (sorted by LSN) in one transaction; the LSNs that were new."""

    @abstractmethod
    def _select_latest(self, event_id: str) -> tuple[str, int] | None:
        """(document, logged_at) of the largest LSN with `event_id`."""

    @abstractmethod
    def _select(self, scene: str | None, decision: str | None, since: int | None,
                until: int | None, limit: int, entity: tuple[str, str] | None
                ) -> list[tuple[str, int]]:
        """(document, logged_at) rows, newest (event_time, lsn) first."""

    @abstractmethod
    def _select_event(self, event_id: str, lsn: int | None) -> str | None:
        """The event (JSON text) of the largest LSN with `event_id`, or of `lsn` only."""

    @abstractmethod
    def _select_events(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """(lsn, scene, event) rows with lsn > `after`, in LSN order."""

    @abstractmethod
    def _select_max_lsn(self) -> int: ...

    @abstractmethod
    def _select_count(self) -> int: ...

    @abstractmethod
    def _delete_older(self, cutoff: int) -> int: ...

    @abstractmethod
    def _upsert_labels(self, rows: Sequence[LabelRow]) -> None:
        """Insert or replace (when not older) one label per event id, in one transaction."""

    @abstractmethod
    def _select_labels(self, event_ids: Sequence[str]) -> list[LabelRow]: ...

    @abstractmethod
    def _select_label_count(self) -> int: ...

    @abstractmethod
    def _select_labelled(self, scene: str, since: int | None, until: int | None,
                         after: tuple[int, int] | None, limit: int) -> list[LabelledRow]:
        """Rows of `scene` in the window after the (event_time, lsn) key `after`, in
        (event_time, lsn) order, each left-joined with its label."""

    @abstractmethod
    def _delete_labels_older(self, cutoff: int) -> int: ...

    @abstractmethod
    def _close_connections(self) -> None: ...


def _label(row: LabelRow) -> Label:
    event_id, label, time, source, received_at = row
    return Label(codec.decode_text(event_id), label, int(time), codec.decode_text(source),
                 int(received_at))


LABEL_COLUMNS = "event_id, label, label_time, source, received_at"


def upsert_labels_sql(values: str) -> str:
    """The label upsert of both backends, given their `VALUES …`/`SELECT …` source: a
    label replaces the stored one unless that one is newer (`Label.newer_than`)."""
    return (f"INSERT INTO labels ({LABEL_COLUMNS}) {values} ON CONFLICT (event_id) DO UPDATE "
            "SET label = excluded.label, label_time = excluded.label_time, "
            "source = excluded.source, received_at = excluded.received_at "
            "WHERE (excluded.label_time > labels.label_time) OR "
            "(excluded.label_time = labels.label_time AND "
            "excluded.received_at >= labels.received_at)")


_UPSERT_ONE_LABEL = upsert_labels_sql("VALUES (?, ?, ?, ?, ?)")


def labelled_sql(placeholder: str, as_text: str, scene: str, since: int | None,
                 until: int | None, after: tuple[int, int] | None, limit: int
                 ) -> tuple[str, list[Any]]:
    """The `labelled_decisions` chunk query of both backends: their placeholder and their
    cast of a JSON column to text (``{}`` stands for the column)."""
    where = [f"d.scene = {placeholder}"]
    params: list[Any] = [scene]
    for condition, value in (("d.event_time >=", since), ("d.event_time <", until)):
        if value is not None:
            where.append(f"{condition} {placeholder}")
            params.append(value)
    if after is not None:
        where.append(f"(d.event_time, d.lsn) > ({placeholder}, {placeholder})")
        params.extend(after)
    sql = (f"SELECT d.lsn, d.event_time, {as_text.format('d.document')}, "
           f"{as_text.format('d.event')}, l.event_id, l.label, l.label_time, l.source, "
           "l.received_at FROM decisions d LEFT JOIN labels l ON l.event_id = d.event_id "
           f"WHERE {' AND '.join(where)} ORDER BY d.event_time, d.lsn LIMIT {placeholder}")
    return sql, [*params, limit]


def labelled_rows(rows: Iterable[Sequence[Any]]) -> list[LabelledRow]:
    """`labelled_sql` rows as `LabelledRow`s."""
    return [(r[0], r[1], r[2], r[3], None if r[4] is None else (r[4], r[5], r[6], r[7], r[8]))
            for r in rows]


def query_sql(placeholder: str, document: str, scene: str | None, decision: str | None,
              since: int | None, until: int | None, limit: int,
              entity: tuple[str, list[Any]] | None = None) -> tuple[str, list[Any]]:
    """The `query` statement of both backends: their placeholder (`?` or `%s`) and their
    expression for the document as text; `entity` is the backend's condition on the
    event's field with its parameters."""
    where: list[str] = []
    params: list[Any] = []
    if entity is not None:
        where.append(entity[0])
        params.extend(entity[1])
    for column, value in (("scene =", scene), ("decision =", decision),
                          ("event_time >=", since), ("event_time <", until)):
        if value is not None:
            where.append(f"{column} {placeholder}")
            params.append(value)
    sql = f"SELECT {document}, logged_at FROM decisions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY event_time DESC, lsn DESC LIMIT {placeholder}"
    return sql, [*params, limit]


def event_sql(placeholder: str, event: str, event_id: str, lsn: int | None
              ) -> tuple[str, list[Any]]:
    """The `logged_event` statement of both backends: their placeholder and their
    expression for the event as text."""
    sql = f"SELECT {event} FROM decisions WHERE event_id = {placeholder}"
    params: list[Any] = [event_id]
    if lsn is not None:
        sql += f" AND lsn = {placeholder}"
        params.append(lsn)
    return sql + " ORDER BY lsn DESC LIMIT 1", params
