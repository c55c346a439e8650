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
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from riskengine.decisionlog import codec
from riskengine.decisionlog.record import DECISIONS, INT64, DecisionLogError, LogRecord, Row
from riskengine.decisionlog.urls import scrub

__all__ = ["MAX_QUERY_LIMIT", "DecisionLog"]

MAX_QUERY_LIMIT = 1000

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
              limit: int = 100) -> list[dict[str, Any]]:
        """Decisions, newest event time first; `since <= timestamp < until` (epoch ms).

        `limit` is capped at `MAX_QUERY_LIMIT`.
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
                                since, until, min(limit, MAX_QUERY_LIMIT))
        except self.driver_errors as exc:
            raise self._error("querying decisions", exc) from exc
        return [self._document(*row) for row in rows]

    @staticmethod
    def _document(document: str, logged_at: int) -> dict[str, Any]:
        found: dict[str, Any] = codec.loads(document)
        found["logged_at"] = logged_at
        return found

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
        """Delete the records with `logged_at < older_than_ms` (epoch ms); returns how many.

        Keep more than the largest feature window, or a replay cannot rebuild the state.
        """
        self._check_open()
        if type(older_than_ms) is not int:
            raise ValueError("older_than_ms must be an epoch-millisecond integer")
        try:
            return self._delete_older(older_than_ms)
        except self.driver_errors as exc:
            raise self._error("purging old decisions", exc) from exc

    # ---- backend hooks ---------------------------------------------------------------

    @abstractmethod
    def _insert(self, rows: Sequence[Row]) -> set[int]:
        """Insert `rows` (sorted by LSN) in one transaction; the LSNs that were new."""

    @abstractmethod
    def _select_latest(self, event_id: str) -> tuple[str, int] | None:
        """(document, logged_at) of the largest LSN with `event_id`."""

    @abstractmethod
    def _select(self, scene: str | None, decision: str | None, since: int | None,
                until: int | None, limit: int) -> list[tuple[str, int]]:
        """(document, logged_at) rows, newest (event_time, lsn) first."""

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
    def _close_connections(self) -> None: ...


def query_sql(placeholder: str, document: str, scene: str | None, decision: str | None,
              since: int | None, until: int | None, limit: int) -> tuple[str, list[Any]]:
    """The `query` statement of both backends: their placeholder (`?` or `%s`) and their
    expression for the document as text."""
    where: list[str] = []
    params: list[Any] = []
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
