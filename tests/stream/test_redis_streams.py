"""`riskengine worker` on Redis Streams against a real redis-server: events in through a
consumer group, decisions out by XADD, identical to the engine; poison entries to the
dead-letter stream; kill -9 and restart (own pending entries, and entries taken over from
a consumer gone quiet) with every event counted once; replay by time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tests.servers import redis_server
from tests.stream.kafkatools import finish, metric_in
from tests.stream.test_kafka_worker import ROOT, _essence, _events, _expected

VOLATILE = ("latency_ms", "redelivery", "duplicate")


@pytest.fixture
def server() -> Iterator[str]:
    with redis_server() as url:  # redis://127.0.0.1:PORT/0
        yield url


def _address(url: str) -> str:
    return url.removeprefix("redis://").rsplit("/", 1)[0]


def _worker(url: str, *extra: str, sink: bool = True) -> subprocess.Popen[str]:
    where = _address(url)
    args = [sys.executable, "-m", "riskengine", "worker",
            "--source", f"redis-stream://{where}/0/events", *extra]
    if sink:
        args += ["--sink", f"redis-stream://{where}/0/decisions"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str], timeout: float = 90) -> str:
    return finish(process, timeout)[0]


def _add(client: redis.Redis, events: list[dict[str, Any]], stream: str = "events") -> None:
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream, {"event": orjson.dumps(event)})
    pipe.execute()


def _decisions(client: redis.Redis) -> list[dict[str, Any]]:
    return [orjson.loads(fields[b"decision"]) for _, fields in client.xrange("decisions")]


def _first_copies(decisions: list[dict[str, Any]], events: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for decision in decisions:
        first = seen.setdefault(decision["event_id"], decision)
        if first is not decision:
            assert decision["redelivery"] is True, decision["event_id"]
            assert {k: v for k, v in decision.items() if k not in VOLATILE} == \
                {k: v for k, v in first.items() if k not in VOLATILE}
    assert sorted(seen) == sorted(e["event_id"] for e in events)
    return [seen[e["event_id"]] for e in events]


def test_end_to_end_matches_the_engine(server: str) -> None:
    client = redis.Redis.from_url(server)
    events = _events(2000, seed=71)
    _add(client, events)
    out = _finish(_worker(server, "--idle-exit", "2", "--consumer", "w1"))
    assert f"decided {len(events):,} events" in out
    decisions = _decisions(client)
    assert [_essence(d) for d in decisions] == _expected(events)
    assert not any(d["redelivery"] for d in decisions)
    ids = [i for i, _ in client.xrange("events")]
    assert [d["source"]["id"] for d in decisions] == [i.decode() for i in ids]
    assert client.xpending("events", "riskengine")["pending"] == 0


def test_poison_entries_go_to_the_dead_letter_stream(server: str) -> None:
    client = redis.Redis.from_url(server)
    good = _events(100, seed=72)
    _add(client, good[:50])
    client.xadd("events", {"other": "no event here"})
    client.xadd("events", {"event": b"{not json"})
    client.xadd("events", {"event": orjson.dumps({"event_id": "bad", "timestamp": 1,
                                                  "pay_account": "A", "rcv_account": "B",
                                                  "amount": "lots"})})
    _add(client, good[50:])
    where = _address(server)
    out = _finish(_worker(server, "--idle-exit", "2", "--dead-letter",
                          f"redis-stream://{where}/0/dead"))
    assert "decided 100 events" in out and "3 dead-lettered" in out
    assert [_essence(d) for d in _decisions(client)] == _expected(good)
    dead = [fields for _, fields in client.xrange("dead")]
    assert [d[b"riskengine.error.kind"] for d in dead] == [
        b"undecodable", b"undecodable", b"invalid-event"]
    assert dead[0][b"other"] == b"no event here"  # the entry's own fields are kept
    assert dead[1][b"event"] == b"{not json"
    assert dead[2][b"riskengine.error.field"] == b"amount"
    assert all(d[b"riskengine.error.message"] and d[b"riskengine.source.id"] for d in dead)
    assert client.xpending("events", "riskengine")["pending"] == 0


def _kill_after(process: subprocess.Popen[str], client: redis.Redis, at_least: int) -> None:
    deadline = time.monotonic() + 60
    try:
        while client.xlen("decisions") < at_least:
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_sigkill_then_restart_counts_every_event_once(server: str, tmp_path: Path,
                                                      state: str) -> None:
    client = redis.Redis.from_url(server)
    events = _events(5000, seed=73)
    _add(client, events)
    if state == "memory":  # the same consumer comes back and reads its pending entries
        first = ["--state-dir", str(tmp_path / "s"), "--checkpoint-interval", "1",
                 "--consumer", "w1"]
        second = first
    else:  # another consumer takes over what the dead one left pending
        shared = ["--state", server.rsplit("/", 1)[0] + "/1", "--claim-idle", "300"]
        first = [*shared, "--consumer", "w1"]
        second = [*shared, "--consumer", "w2"]
    _kill_after(_worker(server, "--batch-size", "100", *first), client, len(events) // 3)
    assert client.xlen("decisions") < len(events)
    _finish(_worker(server, "--idle-exit", "3", *second))
    decisions = _first_copies(_decisions(client), events)
    assert [_essence(d) for d in decisions] == _expected(events)
    assert client.xpending("events", "riskengine")["pending"] == 0


def test_replay_from_a_time_as_a_dry_run_and_bad_options(server: str) -> None:
    client = redis.Redis.from_url(server)
    events = _events(300, seed=74)
    _add(client, events[:100])
    time.sleep(0.01)
    start_ms = int(time.time() * 1000)
    time.sleep(0.01)
    _add(client, events[100:])
    out = _finish(_worker(server, "--from-timestamp", str(start_ms), "--dry-run",
                          sink=False))
    assert "decided 200 events" in out
    assert client.xlen("decisions") == 0
    assert not client.exists("riskengine") and not client.xinfo_groups("events")

    for extra, message in [(["--from-offset", "3", "--dry-run"], "no offsets"),
                           (["-X", "a=b"], "kafka")]:
        process = _worker(server, *extra, "--idle-exit", "1")
        _, err = process.communicate(timeout=60)
        assert process.returncode != 0 and message in err, (extra, err[-500:])
    bad = subprocess.run([sys.executable, "-m", "riskengine", "worker", "--source",
                          "redis-stream://127.0.0.1/", "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode != 0 and "stream name" in bad.stderr


def test_metrics_count_the_decisions_and_show_the_group_lag(server: str) -> None:
    import httpx

    from tests.servers import free_port

    client = redis.Redis.from_url(server)
    events = _events(500, seed=75)
    port = free_port()
    worker = _worker(server, "--idle-exit", "4", "--metrics-port", str(port))
    _add(client, events)
    seen: dict[str, float | None] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        seen = {"decided": metric_in(text, "riskengine_stream_messages_total",
                                   outcome="decided"),
                "lag": metric_in(text, "riskengine_stream_consumer_lag", topic="events",
                               partition="0")}
        if seen["decided"] == len(events) and seen["lag"] == 0:
            break
        time.sleep(0.3)
    assert seen == {"decided": len(events), "lag": 0}
    _finish(worker)


def test_metrics_listen_on_the_metrics_host_only(server: str) -> None:
    """--metrics-host 127.0.0.2 (another loopback address): /metrics answers there, and
    not on 127.0.0.1 (as 0.0.0.0 in a container serves the other containers)."""
    import httpx

    from tests.servers import free_port

    client = redis.Redis.from_url(server)
    events = _events(50, seed=76)
    port = free_port()
    worker = _worker(server, "--idle-exit", "4", "--metrics-port", str(port),
                     "--metrics-host", "127.0.0.2")
    _add(client, events)
    decided = None
    deadline = time.monotonic() + 30
    while decided != len(events) and time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=2).text
            decided = metric_in(text, "riskengine_stream_messages_total", outcome="decided")
        except httpx.HTTPError:
            time.sleep(0.2)
    assert decided == len(events)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    _finish(worker)


def test_a_metrics_host_that_cannot_be_served_stops_the_worker_with_a_message(
        server: str) -> None:
    worker = _worker(server, "--idle-exit", "2", "--metrics-port", "0",
                     "--metrics-host", "no.such.host.invalid")
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert "cannot serve metrics on no.such.host.invalid:0" in err
    assert "Traceback" not in err
