"""`riskengine worker` against a real Kafka-protocol broker: events in, decisions out,
identical to the in-process engine; poison messages to the dead-letter topic; SIGTERM
commits and checkpoints, and a restart carries the state on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from riskengine.engine import Engine
from riskengine.stream.codec import ERROR_HEADERS
from riskengine.synth import generate_transfers
from tests.stream.kafkatools import (
    FAST_GROUP,
    committed,
    finish,
    new_topics,
    produce,
    produce_events,
    read_all,
)

ROOT = Path(__file__).resolve().parents[2]


def _worker(bootstrap: str, topics: dict[str, str], group: str, *extra: str
            ) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "riskengine", "worker",
            "--source", f"kafka://{bootstrap}/{topics['events']}",
            "--sink", f"kafka://{bootstrap}/{topics['decisions']}",
            "--group", group, *FAST_GROUP, *extra]
    if "dead" in topics:
        args += ["--dead-letter", f"kafka://{bootstrap}/{topics['dead']}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str], timeout: float = 60) -> str:
    return finish(process, timeout)[0]


def _essence(d: dict[str, Any]) -> tuple[Any, ...]:
    hits = [(h["rule_id"], h["score"]) for h in d["hits"]]
    return d["event_id"], d["decision"], d["score"], d["features"], hits, d["late"]


def _expected(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    engine = Engine.from_config(None)
    return [_essence(engine.evaluate("transfer", e).to_dict()) for e in events]


def _events(n: int, seed: int) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "label"} for e in generate_transfers(n, seed)]


def test_end_to_end_matches_the_engine(bootstrap: str) -> None:
    events = _events(3000, seed=11)
    topics = new_topics(bootstrap, events=1, decisions=1)
    produce_events(bootstrap, topics["events"], events)
    out = _finish(_worker(bootstrap, topics, "e2e", "--max-events", str(len(events)),
                          "--idle-exit", "20"))
    assert f"decided {len(events):,} events" in out
    messages = read_all(bootstrap, topics["decisions"], 1, len(events))
    decisions = [orjson.loads(m.value() or b"") for m in messages]
    assert len(decisions) == len(events)  # one decision per event, no duplicates
    assert [m.key() for m in messages] == [e["event_id"].encode() for e in events]
    assert [d["source"]["offset"] for d in decisions] == list(range(len(events)))
    assert not any(d["redelivery"] for d in decisions)
    assert [_essence(d) for d in decisions] == _expected(events)
    assert committed(bootstrap, "e2e", topics["events"], 1) == [len(events)]


def test_poison_messages_go_to_the_dead_letter_topic(bootstrap: str) -> None:
    good = _events(200, seed=5)
    ts = good[0]["timestamp"]
    bad: dict[int, tuple[bytes | None, str, str]] = {
        10: (b"{not json", "undecodable", ""),
        50: (b"[1, 2]", "undecodable", ""),
        90: (orjson.dumps({"event_id": "bad-1", "timestamp": ts, "pay_account": "A",
                           "rcv_account": "B", "amount": "lots"}), "invalid-event", "amount"),
        120: (orjson.dumps({"event_id": "bad-2", "timestamp": ts, "rcv_account": "B",
                            "amount": 1.0}), "invalid-event", "pay_account"),
        150: (None, "undecodable", ""),
    }
    stream: list[tuple[bytes | None, bytes | None]] = []
    for index, event in enumerate(good):
        if index in bad:
            stream.append((b"poison", bad[index][0]))
        stream.append((event["pay_account"].encode(), orjson.dumps(event)))
    topics = new_topics(bootstrap, events=1, decisions=1, dead=1)
    produce(bootstrap, topics["events"], stream)
    out = _finish(_worker(bootstrap, topics, "poison", "--idle-exit", "3"))
    assert f"decided {len(good):,} events" in out and f"{len(bad)} dead-lettered" in out

    decisions = read_all(bootstrap, topics["decisions"], 1, len(good))
    assert [_essence(orjson.loads(m.value() or b"")) for m in decisions] == _expected(good)
    dead = read_all(bootstrap, topics["dead"], 1, len(bad))
    assert len(dead) == len(bad)
    offsets = [i + n for n, i in enumerate(sorted(bad))]  # each poison sits before event i
    for msg, (index, (value, kind, field)), offset in zip(dead, sorted(bad.items()),
                                                           offsets, strict=True):
        headers = {k: v.decode() for k, v in (msg.headers() or [])
                   if isinstance(v, bytes)}
        assert msg.value() == value and msg.key() == b"poison", index
        assert headers["riskengine.error.kind"] == kind
        assert headers["riskengine.error.field"] == field
        assert headers["riskengine.error.message"]
        assert headers["riskengine.source.offset"] == str(offset)
        assert set(ERROR_HEADERS) <= set(headers)
    assert committed(bootstrap, "poison", topics["events"], 1) == [len(stream)]


def test_sigterm_commits_checkpoints_and_a_restart_goes_on(bootstrap: str,
                                                           tmp_path: Path) -> None:
    events = _events(2000, seed=23)
    first, second = events[:1200], events[1200:]
    topics = new_topics(bootstrap, events=1, decisions=1)
    state = tmp_path / "state"
    produce_events(bootstrap, topics["events"], first)
    worker = _worker(bootstrap, topics, "term", "--state-dir", str(state))
    deadline = time.monotonic() + 30
    while len(read_all(bootstrap, topics["decisions"], 1, len(first), timeout=1)) < len(first):
        assert worker.poll() is None and time.monotonic() < deadline
    worker.send_signal(signal.SIGTERM)
    assert f"decided {len(first):,} events" in _finish(worker)
    assert (state / "snapshot.pkl").exists()
    assert orjson.loads((state / "offsets.json").read_bytes()) == {
        f"{topics['events']}:0": len(first)}
    assert committed(bootstrap, "term", topics["events"], 1) == [len(first)]

    # Restart: the state comes back from the checkpoint, input resumes after it; the
    # repeat of an already decided event is answered from memory and marked.
    produce_events(bootstrap, topics["events"], [*second, first[-1]])
    out = _finish(_worker(bootstrap, topics, "term", "--state-dir", str(state),
                          "--max-events", str(len(second) + 1), "--idle-exit", "20"))
    assert f"decided {len(second) + 1:,} events" in out and "1 redeliveries" in out
    messages = read_all(bootstrap, topics["decisions"], 1, len(events) + 1)
    decisions = [orjson.loads(m.value() or b"") for m in messages]
    assert len(decisions) == len(events) + 1
    assert [_essence(d) for d in decisions[:-1]] == _expected(events)
    assert decisions[-1]["redelivery"] is True
    assert _essence(decisions[-1]) == _essence(decisions[len(first) - 1])
