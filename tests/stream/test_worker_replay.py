"""`riskengine worker --from-offset / --from-timestamp`: past traffic re-run into a
separate sink (or counted in a dry run) with a ruleset of choice, from fresh state,
without moving the group's offsets; progress and lag shown; Prometheus metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer

from riskengine.engine import Engine
from tests.servers import free_port
from tests.stream.kafkatools import (
    FAST_GROUP,
    committed,
    finish,
    metric_in,
    new_topics,
    produce_events,
    read_all,
)
from tests.stream.test_kafka_worker import ROOT, _essence, _events, _finish, _worker


def _replay(bootstrap: str, topics: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "riskengine", "worker",
            "--source", f"kafka://{bootstrap}/{topics['events']}", *FAST_GROUP, *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_replay_from_an_offset_into_another_sink_with_another_ruleset(
        bootstrap: str, tmp_path: Path) -> None:
    events = _events(1500, seed=61)
    topics = new_topics(bootstrap, events=1, decisions=1, replayed=1)
    produce_events(bootstrap, topics["events"], events)
    # the live run
    _finish(_worker(bootstrap, topics, "live", "--idle-exit", "4"))
    assert committed(bootstrap, "live", topics["events"], 1) == [len(events)]

    rules = tmp_path / "strict.yaml"
    rules.write_text("rules:\n  - id: big\n    when: amount >= 100\n    action: reject\n"
                     "    score: 90\n", encoding="utf-8")
    out, err = finish(_replay(
        bootstrap, topics, "--group", "live", "--from-offset", "1000", "--ruleset",
        str(rules), "--sink", f"kafka://{bootstrap}/{topics['replayed']}"))
    assert "decided 500 events" in out
    assert "progress:" in err and "1 of 1 partitions read to their end" in err
    replayed = [orjson.loads(m.value() or b"")
                for m in read_all(bootstrap, topics["replayed"], 1, 500)]
    tail = events[1000:]
    engine = Engine.from_config(None)  # fresh state, the chosen rules
    version = engine.activate_ruleset(
        "transfer", [{"id": "big", "when": "amount >= 100", "action": "reject",
                      "score": 90}], engine.ruleset("transfer").policy.to_dict()).version
    assert [d["event_id"] for d in replayed] == [e["event_id"] for e in tail]
    assert [_essence(d) for d in replayed] == \
        [_essence(engine.evaluate("transfer", e).to_dict()) for e in tail]
    assert {d["ruleset_version"] for d in replayed} == {version}
    assert any(d["decision"] == "reject" for d in replayed)
    assert [d["source"]["offset"] for d in replayed] == list(range(1000, 1500))
    # the live group's offsets did not move, and the live sink got nothing more
    assert committed(bootstrap, "live", topics["events"], 1) == [len(events)]
    assert len(read_all(bootstrap, topics["decisions"], 1, len(events))) == len(events)


def test_replay_from_a_timestamp_as_a_dry_run(bootstrap: str) -> None:
    events = _events(800, seed=62)
    topics = new_topics(bootstrap, events=2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, e in enumerate(events):  # message time = event time
        producer.produce(topics["events"], orjson.dumps(e), e["pay_account"].encode(),
                         partition=i % 2, timestamp=e["timestamp"])
    assert producer.flush(30) == 0
    start = events[500]["timestamp"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start // 1000)) + \
        f".{start % 1000:03d}Z"
    out, err = finish(_replay(bootstrap, topics, "--from-timestamp", iso,
                                    "--dry-run"))
    later = [e for e in events if e["timestamp"] >= start]
    assert f"decided {len(later):,} events" in out
    assert "2 of 2 partitions read to their end" in err


def test_replay_refuses_bad_options(bootstrap: str, tmp_path: Path) -> None:
    topics = new_topics(bootstrap, events=1)
    cases: list[tuple[list[str], str]] = [
        (["--from-offset", "0"], "--sink is needed"),
        (["--from-offset", "0", "--from-timestamp", "0", "--dry-run"], "not both"),
        (["--from-timestamp", "yesterday", "--dry-run"], "ISO-8601"),
        (["--from-offset", "0", "--dry-run", "--state-dir", str(tmp_path)], "--state-dir"),
        (["--from-offset", "0", "--dry-run", "--ruleset", str(tmp_path / "none.yaml")],
         "cannot read"),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"id": "x", "when": "__import__(1)", "action": "reject"}]}')
    cases.append((["--from-offset", "0", "--dry-run", "--ruleset", str(bad)], "x"))
    for extra, message in cases:
        process = _replay(bootstrap, topics, *extra)
        out, err = process.communicate(timeout=60)
        assert process.returncode != 0, extra
        assert message in out + err, (extra, err[-500:])


def test_metrics_show_throughput_counters_and_lag(bootstrap: str) -> None:
    events = _events(1200, seed=63)
    topics = new_topics(bootstrap, events=1, decisions=1)
    port = free_port()
    worker = _worker(bootstrap, topics, "metrics", "--metrics-port", str(port),
                     "--idle-exit", "6")
    produce_events(bootstrap, topics["events"], events)
    url = f"http://127.0.0.1:{port}/metrics"
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=2).text
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        seen = {
            "decided": metric_in(text, "riskengine_stream_messages_total", outcome="decided"),
            "lag": metric_in(text, "riskengine_stream_consumer_lag",
                           topic=topics["events"], partition="0"),
            "accept": metric_in(text, "riskengine_stream_decisions_total", decision="accept"),
        }
        if seen["decided"] == len(events) and seen["lag"] == 0:
            break
        time.sleep(0.3)
    assert seen["decided"] == len(events) and seen["lag"] == 0, seen
    assert seen["accept"] and 0 < seen["accept"] <= len(events)
    assert "riskengine_stream_batch_seconds_count" in text
    _finish(worker)


def test_sequence_patterns_in_the_worker_equal_the_engine(bootstrap: str) -> None:
    from tests.features.test_patterns import EXAMPLE, _traffic, _view

    events = _traffic(300, seed=8)
    topics = new_topics(bootstrap, events=1, decisions=1)
    produce_events(bootstrap, topics["events"], events, key_field="account")
    _finish(_worker(bootstrap, topics, "patterns", "--config", str(EXAMPLE), "--scene",
                    "account", "--idle-exit", "4"))
    got = [_view(orjson.loads(m.value() or b""))
           for m in read_all(bootstrap, topics["decisions"], 1, len(events))]
    engine = Engine.from_config(EXAMPLE)
    expected = [_view(engine.evaluate("account", e).to_dict()) for e in events]
    assert got == expected and any(v[2] for v in expected) and any(v[3] for v in expected)
