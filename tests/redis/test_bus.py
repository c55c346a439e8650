"""Ruleset activation reaches every worker: in one process, after a reconnect, and across
processes (three subscriber processes switch when a fourth activates a version)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from riskengine.lists import ListEntry
from riskengine.state.redis.bus import RulesetBus
from riskengine.state.redis.connect import connect
from riskengine.state.redis.functions import Client
from riskengine.state.redis.lists import RedisListStore
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
V1 = {"rules": [{"id": "big", "when": "amount > 1000", "score": 50}], "policy": {}}
V2 = {"rules": [{"id": "big", "when": "amount > 500", "score": 60}], "policy": {}}


class Seen:
    """Collects callback calls from the subscriber thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._changed = threading.Condition()

    def __call__(self, *args: Any) -> None:
        with self._changed:
            self.calls.append(args)
            self._changed.notify_all()

    def wait_for(self, check: Callable[[list[tuple[Any, ...]]], bool],
                 timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: check(self.calls), timeout)


@pytest.fixture
def bus_factory(redis_url: str, client: Client) -> Iterator[Callable[..., RulesetBus]]:
    made: list[tuple[RulesetBus, Client]] = []

    def make(**options: Any) -> RulesetBus:
        connection = connect(redis_url)
        bus = RulesetBus(connection, ["transfer", "login"], **options)
        made.append((bus, connection))
        return bus

    yield make
    for bus, connection in made:
        bus.stop()
        connection.close()


def test_activation_reaches_other_workers_not_the_sender(
        bus_factory: Callable[..., RulesetBus]) -> None:
    seen_a, seen_b = Seen(), Seen()
    a, b = bus_factory(on_ruleset=seen_a), bus_factory(on_ruleset=seen_b)
    a.start()
    b.start()
    assert seen_a.calls == [] and seen_b.calls == []  # nothing active yet
    assert a.activate("transfer", "v1", V1)
    assert seen_b.wait_for(lambda calls: calls == [("transfer", "v1", V1)])
    assert a.active("transfer") == ("v1", V1) and b.active("transfer") == ("v1", V1)
    a.put_version("transfer", "v2", V2)
    assert a.versions("transfer") == ["v1", "v2"]
    assert a.active("transfer") == ("v1", V1)  # stored, not active
    assert b.activate("transfer", "v2")  # a stored version, by name
    assert seen_a.wait_for(lambda calls: calls == [("transfer", "v2", V2)])
    assert a.activate("transfer", "v1")  # rollback
    assert seen_b.wait_for(lambda calls: len(calls) == 2)
    assert seen_b.calls[-1] == ("transfer", "v1", V1)  # b's own activation came not back


def test_unknown_versions_and_scenes_change_nothing(
        bus_factory: Callable[..., RulesetBus]) -> None:
    seen = Seen()
    a, b = bus_factory(), bus_factory(on_ruleset=seen)
    b.start()
    assert not a.activate("transfer", "missing")
    assert a.active("transfer") is None
    a.activate("checkout", "v1", V1)  # a scene b does not run
    a.activate("login", "v1", V1)
    assert seen.wait_for(lambda calls: calls == [("login", "v1", V1)])
    assert a.version("login", "nope") is None


def test_a_worker_starting_later_loads_the_active_versions(
        bus_factory: Callable[..., RulesetBus]) -> None:
    bus_factory().activate("transfer", "v2", V2)
    seen = Seen()
    late = bus_factory(on_ruleset=seen)
    late.start()  # the first read happens before start returns
    assert seen.calls == [("transfer", "v2", V2)]


def test_activations_missed_while_disconnected_arrive_on_reconnect(
        bus_factory: Callable[..., RulesetBus], client: Client) -> None:
    seen = Seen()
    sender, worker = bus_factory(), bus_factory(on_ruleset=seen, reconnect_delay=0.05)
    worker.start()
    sender.activate("transfer", "v1", V1)
    assert seen.wait_for(lambda calls: len(calls) == 1)
    resyncs = worker.resyncs
    for _ in range(20):  # keep killing it: some activations find nobody subscribed
        kill_subscribers(client)
    sender.activate("transfer", "v2", V2)
    kill_subscribers(client)
    assert seen.wait_for(lambda calls: calls[-1] == ("transfer", "v2", V2))
    assert eventually(lambda: worker.resyncs > resyncs)
    sender.activate("transfer", "v1")
    assert seen.wait_for(lambda calls: calls[-1] == ("transfer", "v1", V1))


def test_a_failing_callback_does_not_stop_the_thread(
        bus_factory: Callable[..., RulesetBus]) -> None:
    seen = Seen()

    def flaky(scene: str, version: str, body: dict[str, Any]) -> None:
        seen(scene, version)
        if version == "bad":
            raise ValueError("refused")

    sender, worker = bus_factory(), bus_factory(on_ruleset=flaky)
    worker.start()
    sender.client.publish(sender.channel, b"not json")
    sender.activate("transfer", "bad", V1)
    sender.activate("transfer", "good", V2)
    assert seen.wait_for(lambda calls: calls == [("transfer", "bad"), ("transfer", "good")])


def test_list_notifications_carry_the_entry(bus_factory: Callable[..., RulesetBus]) -> None:
    seen = Seen()
    sender, worker = bus_factory(), bus_factory(on_list=seen)
    worker.start()
    sender.publish_list("block", "add", "42", ListEntry(42, 1000, "mule"))
    sender.publish_list("block", "remove", "42")
    sender.publish_list("block", "reload")
    assert seen.wait_for(lambda calls: calls == [
        ("block", "add", "42", ListEntry(42, 1000, "mule")),
        ("block", "remove", "42", None), ("block", "reload", None, None)])
    with pytest.raises(Exception, match="list op"):
        sender.publish_list("block", "drop", "42")


def kill_subscribers(client: Client) -> None:
    """Make the server(s) drop every subscriber connection."""
    if isinstance(client, RedisCluster):
        client.client_kill_filter(_type="pubsub", target_nodes=RedisCluster.ALL_NODES)
    else:
        client.client_kill_filter(_type="pubsub")


# -- across processes

WORKER = """
import json, sys, time
from riskengine.state.redis.connect import connect
from riskengine.state.redis.bus import RulesetBus
from riskengine.state.redis.lists import RedisListStore

url, out = sys.argv[1], sys.argv[2]
client = connect(url)
report = open(out, "a", buffering=1)

def on_ruleset(scene, version, body):
    report.write(json.dumps({"ruleset": version, "at": time.time()}) + "\\n")

bus = RulesetBus(client, ["transfer"], on_ruleset=on_ruleset)
store = RedisListStore.from_config({"block": {"values": ["seed"]}}, None, client, bus=bus)

def on_list(name, op, value, entry):
    store.apply(name, op, value, entry)
    if op == "add" and store.contains(name, value):
        report.write(json.dumps({"list": value, "at": time.time()}) + "\\n")

bus.on_list = on_list
bus.start()
report.write(json.dumps({"ready": True}) + "\\n")
sys.stdin.read()  # until the test closes our stdin
bus.stop()
"""


def _reports(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_three_processes_switch_on_one_activation(
        redis_url: str, client: Client, tmp_path: Path) -> None:
    publisher = RulesetBus(client, ["transfer"])
    publisher.activate("transfer", "v1", V1)
    outputs = [tmp_path / f"worker{i}.jsonl" for i in range(3)]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, redis_url, str(out)],
                                cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
               for out in outputs]
    try:
        def all_have(key: str, value: Any) -> bool:
            return all(any(r.get(key) == value for r in _reports(o)) for o in outputs)

        assert eventually(lambda: all_have("ready", True), timeout=20), _stderr(workers)
        assert all_have("ruleset", "v1")  # loaded from Redis at start
        activated = time.time()
        assert publisher.activate("transfer", "v2", V2)
        assert eventually(lambda: all_have("ruleset", "v2"), timeout=10), _stderr(workers)
        lags = [next(r["at"] for r in _reports(o) if r.get("ruleset") == "v2") - activated
                for o in outputs]
        print(f"switch lag per process: {', '.join(f'{lag * 1000:.1f} ms' for lag in lags)}")

        lists = RedisListStore.from_config({"block": {"values": ["seed"]}}, None, client,
                                           bus=publisher)
        lists.add("block", "mule-7")
        assert eventually(lambda: all_have("list", "mule-7"), timeout=10), _stderr(workers)
    finally:
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            if worker.stderr is not None:
                worker.stderr.close()
    assert [w.returncode for w in workers] == [0, 0, 0]


def _stderr(workers: list[subprocess.Popen[bytes]]) -> str:
    done = [w for w in workers if w.poll() is not None and w.stderr is not None]
    return "\n".join(w.stderr.read().decode()[-2000:] for w in done if w.stderr)
