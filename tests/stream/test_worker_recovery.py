"""`riskengine worker` killed with SIGKILL mid-stream and started again, on in-memory
state (checkpoint folder) and on Redis state: every event ends with exactly one effect on
the state, and the decisions equal those of an uninterrupted run; a decision that appears
twice on the output is marked as a redelivery and is identical. Two workers in one group
over a 4-partition topic on Redis state decide as one worker does."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.servers import free_port, redis_server
from tests.stream.kafkatools import (
    committed,
    metric,
    new_topics,
    produce,
    produce_events,
    read_all,
    wait_for_messages,
)
from tests.stream.test_kafka_worker import _essence, _events, _expected, _finish, _worker
from tests.waiting import eventually

VOLATILE = ("latency_ms", "redelivery", "duplicate")
"""What may differ between two copies of one decision: the time it took, and the mark."""


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def test_each_worker_process_gets_the_state_timeout(redis_url: str) -> None:
    """What `--processes` builds in each process: an engine on the shared state with the
    worker's budget (the default without one)."""
    from riskengine.stream.processes import EngineSource

    for timeout_ms, budget_s in ((2_000, 2.0), (None, 0.05)):
        engine = EngineSource(None, redis_url, None, timeout_ms).load("transfer")
        try:
            assert engine.state.budget_s == budget_s  # type: ignore[attr-defined]
        finally:
            engine.close()


def _first_copies(messages: list[Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One decision per event, in event order, after checking every repeat: a later copy
    of an event's decision is marked as a redelivery and equal to the first but for
    `VOLATILE`."""
    seen: dict[str, dict[str, Any]] = {}
    for message in messages:
        decision = orjson.loads(message.value() or b"")
        first = seen.setdefault(decision["event_id"], decision)
        if first is not decision:
            assert decision["redelivery"] is True, decision["event_id"]
            assert {k: v for k, v in decision.items() if k not in VOLATILE} == \
                {k: v for k, v in first.items() if k not in VOLATILE}
    assert sorted(seen) == sorted(e["event_id"] for e in events)  # none lost
    return [seen[e["event_id"]] for e in events]


def _kill_mid_stream(bootstrap: str, topics: dict[str, str], group: str, total: int,
                     *extra: str) -> None:
    worker = _worker(bootstrap, topics, group, "--batch-size", "100", *extra)
    try:
        wait_for_messages(bootstrap, topics["decisions"], 1, total // 3)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    assert worker.returncode == -signal.SIGKILL


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_sigkill_mid_stream_then_restart_equals_an_uninterrupted_run(
        bootstrap: str, tmp_path: Path, state: str, request: pytest.FixtureRequest) -> None:
    events = _events(6000, seed=41)
    topics = new_topics(bootstrap, events=1, decisions=1)
    # Half the stream first: however fast the worker, the kill comes before the end.
    produce_events(bootstrap, topics["events"], events[:3000])
    if state == "memory":
        where = ["--state-dir", str(tmp_path / "state"), "--checkpoint-interval", "1"]
    else:
        where = ["--state", request.getfixturevalue("redis_url")]
    group = f"crash-{state}"
    _kill_mid_stream(bootstrap, topics, group, len(events) // 2, *where)
    done = committed(bootstrap, group, topics["events"], 1)[0]
    assert 0 < done <= 3000  # the kill came mid-stream
    produce_events(bootstrap, topics["events"], events[3000:])

    out = _finish(_worker(bootstrap, topics, group, "--idle-exit", "5", *where))
    assert "decided" in out
    messages = read_all(bootstrap, topics["decisions"], 1, len(events))
    decisions = _first_copies(messages, events)
    # the same decisions (and so the same state behind them) as an uninterrupted run
    assert [_essence(d) for d in decisions] == _expected(events)
    assert committed(bootstrap, group, topics["events"], 1) == [len(events)]

    # one more event on a busy account counts each earlier event of it exactly once
    account = events[-1]["pay_account"]
    probe = {**events[-1], "event_id": "probe", "timestamp": events[-1]["timestamp"] + 1}
    produce_events(bootstrap, topics["events"], [probe])
    _finish(_worker(bootstrap, topics, group, "--idle-exit", "5", *where))
    last = orjson.loads(read_all(bootstrap, topics["decisions"], 1,
                                 len(messages) + 1)[-1].value() or b"")
    assert last["event_id"] == "probe"
    hour = [e for e in events if e["pay_account"] == account
            and e["timestamp"] > probe["timestamp"] - 3_600_000]
    assert last["features"]["count(pay_account.history,1h)"] == len(hour) + 1


def _population(index: int, n: int) -> list[dict[str, Any]]:
    """Events whose accounts and devices belong to population `index` alone."""
    out = []
    for e in _events(n, seed=100 + index):
        e = dict(e)
        e["event_id"] = f"p{index}-{e['event_id']}"
        for field in ("pay_account", "rcv_account", "device_id"):
            if e.get(field) is not None:
                e[field] = f"p{index}-{e[field]}"
        out.append(e)
    return out


def test_two_workers_over_four_partitions_decide_as_one(bootstrap: str) -> None:
    """Shared state, one clock per partition: with one worker or two, however they
    interleave the partitions, each partition's decisions equal the in-process engine
    deciding that partition alone (the populations share no entity)."""
    populations = [_population(i, 700) for i in range(4)]
    everything = [e for p in populations for e in p]
    results = []
    for workers in (1, 2):
        topics = new_topics(bootstrap, events=4, decisions=2)
        for partition, events in enumerate(populations):
            produce(bootstrap, topics["events"],
                    ((e["pay_account"].encode(), orjson.dumps(e)) for e in events),
                    partition=partition)
        with redis_server() as url:
            group = f"pair-{workers}"
            # a budget a loaded machine keeps (the default 50 ms holds the stream often)
            started = [_worker(bootstrap, topics, group, "--state", url, "--state-timeout",
                               "5s", "--batch-size", "50", "--idle-exit", "8")
                       for _ in range(workers)]
            for process in started:
                _finish(process, timeout=120)
        assert committed(bootstrap, group, topics["events"], 4) == [700] * 4
        messages = read_all(bootstrap, topics["decisions"], 2, len(everything))
        decided = _first_copies(messages, everything)
        assert len({d["lsn"] for d in decided}) == len(everything)  # one arrival order
        results.append([_essence(d) for d in decided])
    one, two = results
    assert two == one
    assert one == [x for p in populations for x in _expected(p)]


def test_a_rebalance_rebuilds_in_memory_state_for_the_partition_taken_over(
        bootstrap: str) -> None:
    """In-memory state, two partitions whose entities do not overlap: worker A runs
    alone, then B joins and takes a partition A had: B rebuilds that partition's state
    from the log before deciding, so nothing is lost or counted twice."""
    populations = [_population(i, 600) for i in range(2)]
    everything = [e for p in populations for e in p]
    topics = new_topics(bootstrap, events=2, decisions=1)

    def send(part: slice) -> None:
        for partition, events in enumerate(populations):
            produce(bootstrap, topics["events"],
                    ((e["pay_account"].encode(), orjson.dumps(e)) for e in events[part]),
                    partition=partition)

    send(slice(0, 300))
    ports = free_port(), free_port()
    a = _worker(bootstrap, topics, "rebalance", "--batch-size", "50", "--idle-exit", "12",
                "--metrics-port", str(ports[0]))
    wait_for_messages(bootstrap, topics["decisions"], 1, 600)
    b = _worker(bootstrap, topics, "rebalance", "--batch-size", "50", "--idle-exit", "12",
                "--metrics-port", str(ports[1]))

    def one_partition_each() -> bool:  # the group has rebalanced over both workers
        return all(metric(port, "riskengine_stream_assigned_partitions") == 1
                   for port in ports)

    assert eventually(one_partition_each, 60.0, 0.2)
    send(slice(300, 600))
    out_a, out_b = _finish(a, timeout=120), _finish(b, timeout=120)
    assert "decided" in out_a and "decided" in out_b
    assert committed(bootstrap, "rebalance", topics["events"], 2) == [600, 600]
    messages = read_all(bootstrap, topics["decisions"], 1, len(everything))
    decisions = _first_copies(messages, everything)
    assert [_essence(d) for d in decisions] == \
        [x for p in populations for x in _expected(p)]
    assert "re-read to rebuild the state" in out_a + out_b  # one of them took one over


def test_the_stream_is_held_while_the_shared_state_is_away(bootstrap: str,
                                                          tmp_path: Path) -> None:
    """Redis (the state) dies mid-stream and comes back with its AOF: the worker produces
    no fallback decision meanwhile, commits nothing past what it decided, and goes on."""
    from tests.servers import redis_server_aof

    events = _events(900, seed=57)
    topics = new_topics(bootstrap, events=1, decisions=1)
    port, metrics_port = free_port(), free_port()
    state = redis_server_aof(tmp_path, port)
    url = f"redis://127.0.0.1:{port}/0"
    worker = _worker(bootstrap, topics, "held", "--state", url, "--batch-size", "50",
                     "--idle-exit", "15", "--metrics-port", str(metrics_port))
    try:
        produce_events(bootstrap, topics["events"], events[:300])
        wait_for_messages(bootstrap, topics["decisions"], 1, 300)
        state.terminate()  # a clean stop: the AOF keeps every answered write
        state.wait()
        produce_events(bootstrap, topics["events"], events[300:])
        # the worker says it holds the stream for the state
        assert eventually(lambda: (metric(metrics_port, "riskengine_stream_state_waits_total")
                                   or 0) >= 1, 60.0, 0.2)
        held = len(read_all(bootstrap, topics["decisions"], 1, 300, timeout=2))
        assert held == 300  # nothing decided without the state
        assert worker.poll() is None  # and the worker waits
        state = redis_server_aof(tmp_path, port)
        out = _finish(worker, timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
        state.kill()
        state.wait()
    assert "decided 900 events" in out
    messages = read_all(bootstrap, topics["decisions"], 1, len(events))
    decisions = _first_copies(messages, events)
    assert not any(d["degraded"] for d in decisions)
    assert [_essence(d) for d in decisions] == _expected(events)
