"""Labels in the decision log, on SQLite and PostgreSQL: stored, replaced by newer ones,
joined to their decisions when read (whichever came first), purged, and the schema of a
version-1 log upgraded in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from riskengine.decisionlog import DecisionLog, DecisionLogError
from riskengine.decisionlog.labels import Label, LabelError, parse_label
from tests.decisionlog.logsupport import BASE_TS, record, write_all


def label(event_id: str, name: str, time: int = 1000, received: int = 5000,
          source: str = "") -> Label:
    return parse_label({"event_id": event_id, "label": name, "time": time, "source": source},
                       received_at=received)


def test_a_label_before_its_decision_and_one_after_are_both_matched(log: DecisionLog) -> None:
    assert log.add_labels([label("ev-1", "fraud")]) == 1  # no decision yet: kept
    write_all(log, [record(1), record(2), record(3)])
    log.add_labels([label("ev-3", "chargeback", source="card network")])
    rows = list(log.labelled_decisions("transfer"))
    assert [r.document["event_id"] for r in rows] == ["ev-1", "ev-2", "ev-3"]
    assert [None if r.label is None else r.label.label for r in rows] == [
        "fraud", None, "chargeback"]
    assert rows[2].label is not None and rows[2].label.source == "card network"
    assert rows[0].event["amount"] == 10.0
    assert log.labels_for(["ev-1", "ev-2", "nope"]) == {"ev-1": label("ev-1", "fraud")}


def test_a_newer_label_replaces_the_older_and_a_late_older_one_is_ignored(
        log: DecisionLog) -> None:
    log.add_labels([label("e", "legit", time=100)])
    log.add_labels([label("e", "fraud", time=200)])
    log.add_labels([label("e", "legit", time=150, received=9000)])  # older, arrives later
    assert log.labels_for(["e"])["e"].label == "fraud"
    log.add_labels([label("e", "mule_drain", time=200, received=9999)])  # tie: later wins
    assert log.labels_for(["e"])["e"].label == "mule_drain"
    # within one call the newest per event wins too, whatever the order
    log.add_labels([label("f", "fraud", time=300), label("f", "legit", time=100)])
    assert log.labels_for(["f"])["f"].label == "fraud"
    assert log.label_count() == 2


def test_event_ids_that_text_cannot_hold_round_trip_and_join(log: DecisionLog) -> None:
    odd = "a\x00b\ud800"
    write_all(log, [record(1, event_id=odd)])
    log.add_labels([label(odd, "fraud", source="\x00src")])
    assert log.labels_for([odd])[odd].source == "\x00src"
    (row,) = log.labelled_decisions("transfer")
    assert row.label is not None and row.label.event_id == odd


def test_labelled_decisions_pages_through_ties_and_the_window(log: DecisionLog) -> None:
    same = BASE_TS + 5000
    write_all(log, [record(i, timestamp=same if i % 2 else BASE_TS + i * 1000)
                    for i in range(1, 12)])
    write_all(log, [record(20, scene="login")])
    rows = list(log.labelled_decisions("transfer", chunk_size=2))
    assert sorted(r.lsn for r in rows) == list(range(1, 12))
    keys = [(r.document["timestamp"], r.lsn) for r in rows]
    assert keys == sorted(keys)
    window = list(log.labelled_decisions("transfer", since=BASE_TS + 4000,
                                         until=BASE_TS + 8000, chunk_size=1))
    assert {r.lsn for r in window} == {1, 3, 4, 5, 6, 7, 9, 11}
    with pytest.raises(ValueError):
        list(log.labelled_decisions("transfer", since="yesterday"))  # type: ignore[arg-type]


def test_purge_drops_labels_received_before_the_cutoff(log: DecisionLog) -> None:
    log.add_labels([label("old", "fraud", received=1_000), label("new", "fraud",
                                                                 received=9_000)])
    log.purge(5_000)
    assert set(log.labels_for(["old", "new"])) == {"new"}


def test_parse_label_refuses_what_it_cannot_store() -> None:
    for raw, field in (({"event_id": "", "label": "x"}, "event_id"),
                       ({"event_id": "e" * 257, "label": "x"}, "event_id"),
                       ({"event_id": 5, "label": "x"}, "event_id"),
                       ({"event_id": "e", "label": "a b"}, "label"),
                       ({"event_id": "e", "label": "x" * 65}, "label"),
                       ({"event_id": "e", "label": None}, "label"),
                       ({"event_id": "e", "label": "x", "time": "soon"}, "time"),
                       ({"event_id": "e", "label": "x", "time": True}, "time"),
                       ({"event_id": "e", "label": "x", "source": "s" * 201}, "source"),
                       ({"event_id": "e", "label": "x", "extra": 1}, "extra")):
        with pytest.raises(LabelError) as caught:
            parse_label(raw, received_at=1)
        assert caught.value.field == field, raw
    with pytest.raises(LabelError):
        parse_label(["e", "fraud"], received_at=1)
    assert parse_label({"event_id": "e", "label": "x", "time": "2026-01-05T00:00:00Z"},
                       received_at=1).time == 1_767_571_200_000


def _downgrade(url: str, tmp_path: Path) -> None:
    """Make the log at `url` what schema version 1 wrote: no labels table."""
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "decisions.db") as conn:
            conn.execute("DROP TABLE labels")
            conn.execute("UPDATE decision_log_meta SET value = '1' WHERE name = "
                         "'schema_version'")
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE labels")
        conn.execute("UPDATE decision_log_meta SET value = '1' WHERE name = 'schema_version'")


def _set_version(url: str, tmp_path: Path, version: str) -> None:
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "decisions.db") as conn:
            conn.execute("UPDATE decision_log_meta SET value = ? WHERE name = "
                         "'schema_version'", (version,))
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE decision_log_meta SET value = %s WHERE name = 'schema_version'",
                     (version,))


def test_a_version_1_log_opens_gains_labels_and_a_newer_one_is_refused(
        log_url: str, open_at: Any, tmp_path: Path) -> None:
    first = open_at(log_url)
    write_all(first, [record(1)])
    first.close()
    _downgrade(log_url, tmp_path)
    upgraded = open_at(log_url)
    assert upgraded.count() == 1
    upgraded.add_labels([label("ev-1", "fraud")])
    assert [r.label.label for r in upgraded.labelled_decisions("transfer")
            if r.label] == ["fraud"]
    upgraded.close()
    _set_version(log_url, tmp_path, "4")
    with pytest.raises(DecisionLogError, match="schema version 4"):
        open_at(log_url)
