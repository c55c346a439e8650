"""Reading: get, logged_event, query filters and order, events_after for replay, max_lsn,
purge."""

from __future__ import annotations

from typing import Any

import pytest

from riskengine.decisionlog import MAX_QUERY_LIMIT, DecisionLog
from tests.decisionlog.logsupport import BASE_TS, record, write_all


def test_get_returns_the_latest_decision_of_an_event_id(log: DecisionLog) -> None:
    write_all(log, [record(1, event_id="same", decision="accept"),
                    record(2, event_id="other"),
                    record(3, event_id="same", decision="reject", logged_at=99)])
    found = log.get("same")
    assert found is not None
    assert found["decision"] == "reject" and found["lsn"] == 3 and found["logged_at"] == 99
    assert log.get("missing") is None


def test_logged_event_is_the_event_of_a_decision(log: DecisionLog) -> None:
    nested = {"event_id": "same", "timestamp": BASE_TS, "note": "<b>\u00e9\u4e2d</b>",
              "tags": ["x", {"y": None}], "amount": 12.5}
    write_all(log, [record(1, event_id="same", event=nested),
                    record(2, event_id="other"),
                    record(3, event_id="same", event={**nested, "amount": 99.0})])
    assert log.logged_event("same") == {**nested, "amount": 99.0}  # the latest decision's
    assert log.logged_event("same", lsn=1) == nested
    assert log.logged_event("same", lsn=2) is None  # lsn 2 is another event id
    assert log.logged_event("missing") is None
    assert log.logged_event("other", lsn=10**6) is None
    for bad in (-1, 1 << 63, "1", True):
        with pytest.raises(ValueError, match="lsn"):
            log.logged_event("same", lsn=bad)  # type: ignore[arg-type]


@pytest.fixture
def mixed(log: DecisionLog) -> DecisionLog:
    """24 records over two scenes and three outcomes; event time disagrees with LSN order."""
    outcomes = ("reject", "accept", "review")
    records = [record(n, scene="transfer" if n % 2 else "login", decision=outcomes[n % 3],
                      timestamp=BASE_TS + (24 - n) * 1000) for n in range(1, 25)]
    # Two events share a timestamp: the larger LSN comes first.
    records.append(record(25, scene="login", decision="review", timestamp=BASE_TS + 1000))
    write_all(log, records)
    return log


def _lsns(rows: list[dict[str, Any]]) -> list[int]:
    return [row["lsn"] for row in rows]


def test_query_is_newest_event_time_first(mixed: DecisionLog) -> None:
    rows = mixed.query(limit=1000)
    assert len(rows) == 25
    times = [(row["timestamp"], row["lsn"]) for row in rows]
    assert times == sorted(times, reverse=True)
    assert _lsns(rows)[:3] == [1, 2, 3]
    assert _lsns(rows)[-3:] == [25, 23, 24]  # 25 has the time of 23: larger LSN first
    assert all("logged_at" in row for row in rows)


def test_query_filters(mixed: DecisionLog) -> None:
    assert {r["scene"] for r in mixed.query(scene="login")} == {"login"}
    assert len(mixed.query(scene="login")) == 13
    assert len(mixed.query(scene="nope")) == 0
    rejects = mixed.query(decision="reject")
    assert _lsns(rejects) == [3, 6, 9, 12, 15, 18, 21, 24]
    both = mixed.query(scene="transfer", decision="reject")
    assert _lsns(both) == [3, 9, 15, 21]
    window = mixed.query(since=BASE_TS + 10_000, until=BASE_TS + 14_000)
    assert sorted(r["timestamp"] for r in window) == [BASE_TS + t * 1000 for t in range(10, 14)]
    assert _lsns(mixed.query(since=BASE_TS + 23_000)) == [1]
    assert _lsns(mixed.query(until=BASE_TS + 2_000)) == [25, 23, 24]
    assert _lsns(mixed.query(scene="login", decision="review", until=BASE_TS + 2_000)) == [25]


def test_query_limit(mixed: DecisionLog) -> None:
    assert _lsns(mixed.query(limit=3)) == [1, 2, 3]
    assert len(mixed.query()) == 25
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="limit"):
            mixed.query(limit=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decision"):
        mixed.query(decision="maybe")
    with pytest.raises(ValueError, match="since"):
        mixed.query(since="yesterday")  # type: ignore[arg-type]


def test_query_limit_is_capped(log: DecisionLog) -> None:
    write_all(log, [record(n) for n in range(1, MAX_QUERY_LIMIT + 51)])
    assert len(log.query(limit=10**9)) == MAX_QUERY_LIMIT
    assert len(log.query()) == 100


def test_events_after_replays_in_lsn_order_in_chunks(log: DecisionLog) -> None:
    records = [record(n, scene="login" if n % 3 == 0 else "transfer") for n in range(1, 11)]
    write_all(log, records)
    for chunk_size in (1, 3, 10, 1000):
        replay = list(log.events_after(0, chunk_size=chunk_size))
        assert replay == [(r.lsn, r.scene, dict(r.event)) for r in records]
    assert [lsn for lsn, _, _ in log.events_after(6, chunk_size=2)] == [7, 8, 9, 10]
    assert list(log.events_after(10)) == []
    assert list(log.events_after(99)) == []
    with pytest.raises(ValueError, match="chunk_size"):
        list(log.events_after(0, chunk_size=0))


def test_events_after_sees_records_committed_while_it_runs(log: DecisionLog) -> None:
    write_all(log, [record(n) for n in range(1, 6)])
    replay = log.events_after(0, chunk_size=2)
    first = [next(replay)[0] for _ in range(2)]
    write_all(log, [record(n) for n in range(6, 9)])
    assert first + [lsn for lsn, _, _ in replay] == list(range(1, 9))


def test_max_lsn_and_count(log: DecisionLog) -> None:
    assert (log.max_lsn(), log.count()) == (0, 0)
    write_all(log, [record(n) for n in (3, 10, 4)])
    assert (log.max_lsn(), log.count()) == (10, 3)


def test_purge_deletes_by_logged_at_and_max_lsn_never_goes_back(log: DecisionLog) -> None:
    write_all(log, [record(n, logged_at=1_000 + n) for n in range(1, 21)])
    assert log.purge(1_000) == 0
    assert log.purge(1_011) == 10  # logged_at 1001 … 1010
    assert log.count() == 10
    assert [lsn for lsn, _, _ in log.events_after(0)] == list(range(11, 21))
    assert log.get("ev-5") is None and log.get("ev-15") is not None
    assert log.purge(10**15) == 10
    assert log.count() == 0
    assert log.max_lsn() == 20  # remembered after the rows are gone
    write_all(log, [record(21)])
    assert log.max_lsn() == 21
    with pytest.raises(ValueError, match="older_than_ms"):
        log.purge("old")  # type: ignore[arg-type]


def test_purge_of_many_records(log: DecisionLog) -> None:
    write_all(log, [record(n, logged_at=n) for n in range(1, 7_001)])
    assert log.purge(6_001) == 6_000
    assert log.count() == 1000
    assert log.max_lsn() == 7_000
