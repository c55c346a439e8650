"""Appending: round trip, LSN order, group commit, futures, failures, close."""

from __future__ import annotations

import functools
import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from riskengine.decisionlog import DecisionLog, DecisionLogError, LogRecord
from riskengine.decisionlog.record import Row
from tests.decisionlog.logsupport import record, write_all


def test_round_trip(log: DecisionLog) -> None:
    rec = record(7, decision="reject", score=130, hits=("mule_drain", "velocity"),
                 shadow_hits=("shared_device",), late=True, degraded=True)
    write_all(log, [rec])
    found = log.get("ev-7")
    assert found == {**rec.document, "logged_at": rec.logged_at}
    assert list(log.events_after(0)) == [(7, "transfer", dict(rec.event))]
    assert log.count() == 1
    assert log.max_lsn() == 7


def test_events_come_back_in_lsn_order_whatever_the_append_order(log: DecisionLog) -> None:
    lsns = list(range(1, 301))
    random.Random(5).shuffle(lsns)
    write_all(log, [record(n) for n in lsns])
    assert [lsn for lsn, _, _ in log.events_after(0, chunk_size=64)] == list(range(1, 301))


def test_concurrent_appends_lose_nothing(log: DecisionLog) -> None:
    threads, per_thread = 8, 250
    futures: list[Future[None]] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def appender(offset: int) -> None:
        start.wait()
        mine = [log.append(record(offset + i * threads + 1)) for i in range(per_thread)]
        with lock:
            futures.extend(mine)

    workers = [threading.Thread(target=appender, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for future in futures:
        assert future.result(timeout=60) is None
    total = threads * per_thread
    assert log.count() == total
    assert log.max_lsn() == total
    assert [lsn for lsn, _, _ in log.events_after(0)] == list(range(1, total + 1))


class _Gate:
    """Wraps a log's batch insert: holds the first batch until released; records batches."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log
        self.inner = log._insert
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[int]] = []
        self.fail_next = False
        log._insert = self  # type: ignore[method-assign]

    def __call__(self, rows: Sequence[Row]) -> set[int]:
        self.batches.append([row[0] for row in rows])
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(60)
        if self.fail_next:
            self.fail_next = False
            raise self.log.driver_errors[0]("disk I/O error (injected)")
        result: set[int] = self.inner(rows)
        return result


def test_everything_queued_goes_in_one_transaction(log: DecisionLog) -> None:
    gate = _Gate(log)
    first = log.append(record(1))
    assert gate.entered.wait(60)
    queued = [log.append(record(n)) for n in range(2, 502)]
    assert not first.done() and not any(f.done() for f in queued)
    gate.release.set()
    assert log.flush(60)
    assert gate.batches == [[1], list(range(2, 502))]
    assert all(f.result() is None for f in [first, *queued])
    assert log.count() == 501


def test_max_batch_splits_the_queue(log_url: str, open_at: Any) -> None:
    log: DecisionLog = open_at(log_url, max_batch=100)
    gate = _Gate(log)
    log.append(record(1))
    assert gate.entered.wait(60)
    for n in range(2, 252):
        log.append(record(n))
    gate.release.set()
    assert log.flush(60)
    assert [len(b) for b in gate.batches] == [1, 100, 100, 50]
    assert log.count() == 251


def test_a_future_resolves_only_after_its_batch_is_committed(log_url: str,
                                                             open_at: Any) -> None:
    log: DecisionLog = open_at(log_url)
    observer: DecisionLog = open_at(log_url)  # another connection sees only commits
    seen: dict[str, bool] = {}

    def check(future: Future[None], event_id: str) -> None:
        seen[event_id] = future.exception() is None and observer.get(event_id) is not None

    futures = []
    for n in range(1, 41):
        future = log.append(record(n))
        future.add_done_callback(functools.partial(check, event_id=f"ev-{n}"))
        futures.append(future)
    for future in futures:
        future.result(timeout=60)
    assert log.flush(60)
    assert seen == {f"ev-{n}": True for n in range(1, 41)}


def test_a_failed_commit_fails_its_batch_and_the_writer_goes_on(log: DecisionLog) -> None:
    gate = _Gate(log)
    gate.fail_next = True
    first = log.append(record(1))
    assert gate.entered.wait(60)
    gate.release.set()
    with pytest.raises(DecisionLogError, match="injected"):
        first.result(timeout=60)
    write_all(log, [record(n) for n in range(2, 12)])
    assert log.count() == 10
    assert log.get("ev-1") is None


def test_a_duplicate_lsn_fails_only_that_record(log: DecisionLog) -> None:
    write_all(log, [record(5)])
    gate = _Gate(log)
    blocker = log.append(record(1))
    assert gate.entered.wait(60)
    batch = [log.append(record(n)) for n in (2, 3)]
    again = log.append(record(5, event_id="other"))
    twice = log.append(record(3, event_id="twice"))
    batch.append(log.append(record(4)))
    gate.release.set()
    assert all(f.result(timeout=60) is None for f in [blocker, *batch])
    for failed in (again, twice):
        with pytest.raises(DecisionLogError, match="already logged"):
            failed.result(timeout=60)
    assert log.count() == 5
    assert log.get("ev-5") is not None and log.get("other") is None
    assert log.get("ev-3") is not None and log.get("twice") is None


def test_a_record_json_cannot_hold_fails_alone(log: DecisionLog) -> None:
    gate = _Gate(log)
    blocker = log.append(record(1))
    assert gate.entered.wait(60)
    good = log.append(record(2))
    nan = log.append(record(3, document={"score": float("nan")}))
    opaque = log.append(record(4, event={"when": object()}))
    gate.release.set()
    assert blocker.result(timeout=60) is None and good.result(timeout=60) is None
    for failed in (nan, opaque):
        with pytest.raises(DecisionLogError, match="cannot be stored as JSON"):
            failed.result(timeout=60)
    assert [lsn for lsn, _, _ in log.events_after(0)] == [1, 2]


def test_a_full_queue_fails_new_appends_at_once(log_url: str, open_at: Any) -> None:
    log: DecisionLog = open_at(log_url, max_pending=2)
    gate = _Gate(log)
    log.append(record(1))
    assert gate.entered.wait(60)
    kept = [log.append(record(2)), log.append(record(3))]
    dropped = log.append(record(4))
    with pytest.raises(DecisionLogError, match="waiting to be written"):
        dropped.result(timeout=0)
    assert log.pending() == 3
    gate.release.set()
    assert log.flush(60)
    assert all(f.result() is None for f in kept)
    assert log.pending() == 0
    assert log.max_lsn() == 3


def test_a_cancelled_future_is_not_written(log: DecisionLog) -> None:
    gate = _Gate(log)
    log.append(record(1))
    assert gate.entered.wait(60)
    cancelled = log.append(record(2))
    assert cancelled.cancel()
    kept = log.append(record(3))
    gate.release.set()
    assert kept.result(timeout=60) is None
    assert [lsn for lsn, _, _ in log.events_after(0)] == [1, 3]


def test_close_writes_everything_queued(log_url: str, open_at: Any) -> None:
    log: DecisionLog = open_at(log_url)
    futures = [log.append(record(n)) for n in range(1, 1001)]
    log.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert log.closed
    log.close()  # twice is fine
    reopened: DecisionLog = open_at(log_url)
    assert reopened.count() == 1000


def test_a_closed_log_refuses_work(log: DecisionLog) -> None:
    log.close()
    with pytest.raises(DecisionLogError, match="closed"):
        log.append(record(1))
    with pytest.raises(DecisionLogError, match="closed"):
        log.count()
    with pytest.raises(DecisionLogError, match="closed"):
        list(log.events_after(0))


def test_flush_waits_for_everything_appended_before_it(log: DecisionLog) -> None:
    futures = [log.append(record(n)) for n in range(1, 201)]
    assert log.flush(60)
    assert all(f.done() for f in futures)
    assert log.count() == 200
    assert log.pending() == 0
    assert log.flush(0)  # nothing queued: true at once


def test_invalid_records_are_refused_when_built() -> None:
    with pytest.raises(DecisionLogError, match="decision must be one of"):
        record(1, decision="maybe")
    with pytest.raises(DecisionLogError, match="lsn"):
        record(-1)
    with pytest.raises(DecisionLogError, match="score"):
        record(1, score=float("inf"))
    with pytest.raises(DecisionLogError, match="timestamp"):
        record(1, timestamp=1 << 70)
    with pytest.raises(DecisionLogError, match="event_id"):
        record(1, event_id=None)


class _Int(int):
    """An int subclass: not the quick check's plain int."""


@pytest.mark.parametrize(("field", "value", "named"), [
    ("lsn", -1, "lsn"), ("lsn", True, "lsn"), ("lsn", 1 << 63, "lsn"),
    ("timestamp", 1 << 70, "timestamp"), ("timestamp", 1.5, "timestamp"),
    ("logged_at", None, "logged_at"), ("score", float("nan"), "score"),
    ("score", "1", "score"), ("latency_ms", float("-inf"), "latency_ms"),
    ("decision", "maybe", "decision"), ("event_id", 7, "event_id"),
    ("scene", None, "scene"), ("ruleset_version", b"v1", "ruleset_version"),
    ("document", ["not", "a", "mapping"], "document"), ("event", "text", "event"),
    ("score", float("inf"), "score"), ("latency_ms", True, "latency_ms"),
    ("decision", None, "decision"), ("lsn", _Int(3), "lsn")])
def test_records_of_the_usual_shape_are_still_checked_field_by_field(
        field: str, value: Any, named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record shaped as the engine's (float score and latency, dict event, text
    document) takes the quick check; one wrong field still refuses it, naming it."""
    with monkeypatch.context() as quick_only:
        quick_only.setattr(LogRecord, "_check", _not_called)
        usual = record(1, score=0.0, latency_ms=0.25, document="{}")
    with pytest.raises(DecisionLogError, match=named):
        replace(usual, **{field: value})


def _not_called(self: LogRecord) -> None:
    raise AssertionError("the usual record left the quick check")


@pytest.mark.parametrize(("field", "value"), [
    ("score", 1), ("latency_ms", 0), ("score", _Int(2)),
    ("event", MappingProxyType({"event_id": "e"})), ("document", OrderedDict(a=1))])
def test_records_of_other_plain_shapes_are_still_accepted(field: str, value: Any) -> None:
    """What fails the quick check is not refused for that: the field-by-field check
    accepts any finite number and any mapping, as it did."""
    usual = record(1, score=0.0, latency_ms=0.25, document="{}")
    assert getattr(replace(usual, **{field: value}), field) == value


def test_records_from_engine_decisions_rebuild_the_engine_state(log: DecisionLog) -> None:
    from riskengine import Engine

    live = Engine.from_config(None)
    events = [{"event_id": f"t-{i}", "timestamp": 1_700_000_000_000 + i * 60_000,
               "pay_account": "A-1", "rcv_account": "M-9", "amount": 1000.0}
              for i in range(8)]
    records: list[LogRecord] = []
    for event in events:
        decision = live.evaluate("transfer", event)
        records.append(LogRecord.from_decision(decision, event))
    write_all(log, records)
    assert log.get("t-7") == {**records[-1].document, "logged_at": records[-1].logged_at}
    assert log.query(decision=records[-1].decision, limit=1)[0]["event_id"] == "t-7"

    rebuilt = Engine.from_config(None)
    for _lsn, scene, event in log.events_after(0):
        rebuilt.evaluate(scene, event)
    probe = {"event_id": "probe", "timestamp": 1_700_000_000_000 + 9 * 60_000,
             "pay_account": "A-1", "rcv_account": "M-9", "amount": 1000.0}
    expected = live.evaluate("transfer", dict(probe))
    got = rebuilt.evaluate("transfer", dict(probe))
    assert got.features == expected.features
    assert (got.decision, got.score, got.lsn) == (expected.decision, expected.score,
                                                  expected.lsn)


def test_append_many_resolves_one_future_after_all_are_committed(log: DecisionLog) -> None:
    group = log.append_many([record(n) for n in range(1, 51)])
    group.result(timeout=30)
    assert log.count() == 50
    assert [lsn for lsn, _, _ in log.events_after(0)] == list(range(1, 51))
    assert log.pending() == 0


def test_append_many_fails_with_the_first_failure_and_keeps_the_rest(log: DecisionLog) -> None:
    log.append(record(5)).result(timeout=30)
    group = log.append_many([record(4), record(5), record(6)])  # 5 is a duplicate
    with pytest.raises(DecisionLogError, match="already logged"):
        group.result(timeout=30)
    assert [lsn for lsn, _, _ in log.events_after(0)] == [4, 5, 6]


def test_append_many_of_nothing_is_done_at_once(log: DecisionLog) -> None:
    assert log.append_many([]).result(timeout=1) is None
