"""The review queue in the decision log, on SQLite and PostgreSQL: review decisions are
queued with their commit (once per event id, never for a duplicate LSN), claimed by one
analyst at a time until the claim expires, resolved with their label and audit trail,
counted per scene, kept across a reopen, and a version-2 log gains the queue."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from riskengine.decisionlog import DecisionLog, DecisionLogError
from tests.decisionlog.logsupport import BASE_TS, record, write_all

CLAIM_MS = 15 * 60_000


def reviews(log: DecisionLog, *lsns: int, **overrides: Any) -> None:
    write_all(log, [record(lsn, decision="review", **overrides) for lsn in lsns])


def test_review_decisions_are_queued_with_their_commit_once(log: DecisionLog) -> None:
    write_all(log, [record(1), record(2, decision="review"), record(3, decision="reject")])
    assert [i.event_id for i in log.review_items()] == ["ev-2"]
    # the same LSN again is refused, and a second review of the event id is not queued again
    duplicate = log.append(record(2, decision="review"))
    with pytest.raises(DecisionLogError, match="already logged"):
        duplicate.result(timeout=60)
    reviews(log, 9, event_id="ev-2")
    (item,) = log.review_items()
    assert (item.event_id, item.lsn, item.scene, item.state) == ("ev-2", 2, "transfer", "open")
    assert log.review_stats() == {"transfer": (1, BASE_TS + 2)}


def test_the_queue_is_oldest_first_filtered_by_scene_and_state(log: DecisionLog) -> None:
    reviews(log, 3, 1)
    reviews(log, 2, scene="card")
    now = BASE_TS + 10
    assert [i.event_id for i in log.review_items(now=now)] == ["ev-1", "ev-2", "ev-3"]
    assert [i.event_id for i in log.review_items(scene="card")] == ["ev-2"]
    assert log.review_items(limit=1)[0].event_id == "ev-1"
    assert log.claim_review("ev-3", "ann", claim_ms=CLAIM_MS, now=now).done
    assert [i.event_id for i in log.review_items(state="claimed", now=now)] == ["ev-3"]
    assert [i.event_id for i in log.review_items(state="open", now=now)] == ["ev-1", "ev-2"]
    item = log.review_items(now=now)[0]
    assert item.to_dict()["age_seconds"] == (now - item.queued_at) / 1000.0
    with pytest.raises(ValueError, match="state"):
        log.review_items(state="lost")
    with pytest.raises(ValueError, match="limit"):
        log.review_items(limit=0)


def test_one_claim_at_a_time_until_it_expires(log: DecisionLog) -> None:
    reviews(log, 1)
    assert log.claim_review("ev-1", "ann", claim_ms=1000, now=BASE_TS).done
    taken = log.claim_review("ev-1", "bob", claim_ms=1000, now=BASE_TS + 999)
    assert not taken.done and taken.item is not None and taken.item.claimed_by == "ann"
    assert log.claim_review("ev-1", "ann", claim_ms=1000, now=BASE_TS + 500).done  # renew
    assert not log.claim_review("ev-1", "bob", claim_ms=1000, now=BASE_TS + 1499).done
    assert log.review_item("ev-1", now=BASE_TS + 1500).state == "open"  # type: ignore[union-attr]
    later = log.claim_review("ev-1", "bob", claim_ms=1000, now=BASE_TS + 1500)
    assert later.done and later.item is not None and later.item.claimed_by == "bob"
    missing = log.claim_review("nope", "bob", claim_ms=1000)
    assert not missing.done and missing.item is None


def test_resolving_stores_the_label_and_the_audit_trail(log: DecisionLog) -> None:
    reviews(log, 1, 2)
    log.claim_review("ev-1", "ann", claim_ms=CLAIM_MS, now=BASE_TS + 10)
    refused = log.resolve_review("ev-1", "bob", "legit", now=BASE_TS + 20)
    assert not refused.done and log.labels_for(["ev-1"]) == {}
    done = log.resolve_review("ev-1", "ann", "fraud", note="mule \x00 pattern",
                              detail={"list": "blocked"}, now=BASE_TS + 30)
    assert done.done and done.item is not None and done.item.state == "resolved"
    assert done.item.note == "mule \x00 pattern"
    label = log.labels_for(["ev-1"])["ev-1"]
    assert (label.label, label.source, label.time) == ("fraud", "review:ann", BASE_TS + 30)
    assert not log.resolve_review("ev-1", "ann", "legit").done  # resolved once
    assert [(a.action, a.analyst, a.at) for a in log.review_audit("ev-1")] == [
        ("claim", "ann", BASE_TS + 10), ("resolve", "ann", BASE_TS + 30)]
    assert log.review_audit("ev-1")[1].detail == {"outcome": "fraud",
                                                   "note": "mule \x00 pattern",
                                                   "list": "blocked"}
    log.audit_review("ev-1", "ann", "list", {"value": "A-1"}, now=BASE_TS + 40)
    assert log.review_audit("ev-1")[-1].detail == {"value": "A-1"}
    # resolving without a claim works while nobody holds the item
    assert log.resolve_review("ev-2", "bob", "legit").done
    assert log.review_stats() == {}
    assert [i.event_id for i in log.review_items(state="resolved")] == ["ev-1", "ev-2"]
    with pytest.raises(ValueError, match="outcome"):
        log.resolve_review("ev-2", "bob", "maybe")


def test_the_queue_survives_a_reopen_and_purge_drops_old_items(
        log_url: str, open_at: Any) -> None:
    first = open_at(log_url)
    reviews(first, 1, 2)
    first.claim_review("ev-1", "ann", claim_ms=CLAIM_MS, now=BASE_TS)
    first.close()
    again = open_at(log_url)
    assert [(i.event_id, i.claimed_by) for i in again.review_items(now=BASE_TS)] == [
        ("ev-1", "ann"), ("ev-2", None)]
    again.purge(BASE_TS + 2)  # ev-1 was logged at BASE_TS + 1, ev-2 at BASE_TS + 2
    assert [i.event_id for i in again.review_items()] == ["ev-2"]
    assert again.review_audit("ev-1") == []


def test_recent_decisions_of_an_entity(log: DecisionLog) -> None:
    write_all(log, [record(lsn) for lsn in range(1, 16)])
    found = log.query(scene="transfer", entity=("pay_account", "A-1"))
    assert [d["event_id"] for d in found] == ["ev-15", "ev-8", "ev-1"]
    assert log.query(scene="transfer", entity=("pay_account", "A-1"), limit=1)[0][
        "event_id"] == "ev-15"
    assert log.query(entity=("amount", "nope")) == []
    assert log.query(entity=("no_such_field", "A-1")) == []


def _drop_review_tables(url: str, tmp_path: Path) -> None:
    """Make the log at `url` what schema version 2 wrote: no review tables."""
    statements = ("DROP TABLE review_queue", "DROP TABLE review_audit",
                  "UPDATE decision_log_meta SET value = '2' WHERE name = 'schema_version'")
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "decisions.db") as conn:
            for statement in statements:
                conn.execute(statement)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_a_version_2_log_gains_the_queue_with_its_review_decisions(
        log_url: str, open_at: Any, tmp_path: Path) -> None:
    first = open_at(log_url)
    write_all(first, [record(1), record(2, decision="review"), record(3, decision="review")])
    first.close()
    _drop_review_tables(log_url, tmp_path)
    upgraded = open_at(log_url)
    assert [i.event_id for i in upgraded.review_items()] == ["ev-2", "ev-3"]
    reviews(upgraded, 4)
    assert len(upgraded.review_items()) == 3


def test_two_processes_racing_for_each_item_one_wins(log_url: str, open_at: Any) -> None:
    first, second = open_at(log_url), open_at(log_url)  # two service workers, one database
    reviews(first, *range(1, 31))
    barrier = threading.Barrier(2)
    wins: dict[str, list[str]] = {f"ev-{lsn}": [] for lsn in range(1, 31)}

    def claim_all(log: DecisionLog, analyst: str) -> None:
        barrier.wait()
        for event_id in wins:
            if log.claim_review(event_id, analyst, claim_ms=CLAIM_MS).done:
                wins[event_id].append(analyst)

    threads = [threading.Thread(target=claim_all, args=(log, name))
               for log, name in ((first, "ann"), (second, "bob"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(len(winners) == 1 for winners in wins.values()), wins
    for event_id, (winner,) in wins.items():
        assert [a.analyst for a in first.review_audit(event_id)] == [winner]
