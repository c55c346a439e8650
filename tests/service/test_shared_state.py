"""The service on shared state in a real redis-server: several workers give the decisions
of one in-memory worker, see each other's ruleset and list changes, and degrade gracefully
when Redis goes away."""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.engine import Engine
from riskengine.exceptions import ConfigError
from riskengine.service.settings import ServiceSettings
from riskengine.state.redis import connect
from tests.example_config import example_config
from tests.oracle import Oracle
from tests.servers import redis_cluster, redis_server
from tests.service.helpers import ADMIN, ADMIN_HEADERS, T0
from tests.service.process import ServiceProcess, free_port
from tests.service.test_restart import traffic
from tests.waiting import eventually

KEEP = ("features", "decision", "late", "score", "ruleset_version", "list_hits")


def view(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: decision[k] for k in KEEP} | {"hits": [h["rule_id"] for h in decision["hits"]]}


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def test_two_workers_decide_as_one_in_memory_worker(
        make_client: Callable[..., TestClient], tmp_path: Path, redis_url: str) -> None:
    events = traffic(160, seed=21)
    a = make_client(state=redis_url, state_dir=tmp_path / "a")
    b = make_client(state=redis_url, state_dir=tmp_path / "b")
    got = [view((a if i % 2 else b).post("/v1/transfer/evaluate", json=e).json())
           for i, e in enumerate(events)]
    engine = Engine.from_config(None)
    expected = [view(engine.evaluate("transfer", e).to_dict()) for e in events]
    assert got == expected
    again = b.post("/v1/transfer/evaluate", json=events[1]).json()  # decided by a
    assert view(again) == got[1]


def test_ruleset_and_list_changes_reach_the_other_worker(
        make_client: Callable[..., TestClient], tmp_path: Path, redis_url: str) -> None:
    a = make_client(state=redis_url, state_dir=tmp_path / "a")
    b = make_client(state=redis_url, state_dir=tmp_path / "b")
    put = a.put("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS, json={
        "rules": [{"id": "everything", "when": "amount >= 0", "action": "review"}]})
    version = put.json()["version"]

    def b_has_it() -> bool:
        live = b.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
        return bool(live["version"] == version)

    assert eventually(b_has_it, 10.0, 0.05)
    event = {"event_id": "x1", "timestamp": T0, "pay_account": "P", "rcv_account": "R",
             "amount": 1.0, "device_id": "dev-shared"}
    assert b.post("/v1/transfer/evaluate", json=event).json()["decision"] == "review"

    assert a.put("/v1/lists/blocked_devices/dev-shared",
                 headers=ADMIN_HEADERS).status_code == 200

    def b_blocks() -> bool:
        event["event_id"] = f"x{time.monotonic_ns()}"
        body = b.post("/v1/transfer/evaluate", json=event).json()
        return "blocked_devices" in body["list_hits"]

    assert eventually(b_blocks, 10.0, 0.05)


def test_redis_down_gives_degraded_fallback_decisions_and_recovers(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    with redis_server() as url:
        client = make_client(state=url, state_dir=tmp_path / "s")
        ok = client.post("/v1/transfer/evaluate", json=traffic(1)[0]).json()
        assert ok["degraded"] is False
    # the server is gone: answers still come, degraded, with the scene's fallback
    for event in traffic(5, seed=4):
        response = client.post("/v1/transfer/evaluate", json=event)
        assert response.status_code == 200
        body = response.json()
        assert body["degraded"] is True and body["decision"] == "review"
        assert all(v is None for v in body["features"].values())
    assert "riskengine_degraded_decisions_total" in client.get("/metrics").text


def test_serve_with_four_worker_processes_decides_as_one_and_loses_no_update(
        tmp_path: Path, redis_url: str) -> None:
    service = ServiceProcess(tmp_path / "state", extra=["--workers", "4", "--state",
                                                        redis_url]).start()
    try:
        sequential = traffic(120, seed=33)
        with httpx.Client(base_url=service.url, timeout=30) as client:
            # one event after the other, each on a new connection: the kernel spreads
            # the connections over the workers
            got = [view(client.post("/v1/transfer/evaluate", json=e,
                                    headers={"Connection": "close"}).json())
                   for e in sequential]
            engine = Engine.from_config(None)
            assert got == [view(engine.evaluate("transfer", e).to_dict())
                           for e in sequential]

            t0 = max(e["timestamp"] for e in sequential) + 1
            events = [{"event_id": f"h{i}", "timestamp": t0 + i, "pay_account": "HOT",
                       "rcv_account": f"R{i % 3}", "amount": 1.0} for i in range(120)]
            import concurrent.futures

            def send(event: dict[str, Any]) -> int:
                return client.post("/v1/transfer/evaluate", json=event).status_code

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                assert set(pool.map(send, events)) == {200}
            last = client.post("/v1/transfer/evaluate", json={
                "event_id": "h-final", "timestamp": t0 + 500, "pay_account": "HOT",
                "rcv_account": "R0", "amount": 1.0}).json()
        assert last["features"]["count(pay_account.history,1h)"] == 121
    finally:
        service.kill()


def lagging(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """`events` with, now and then, one sent again (same id) and one of a lagging source:
    an earlier paying account's transfer stamped 6 to 40 minutes behind the latest time
    (behind the clock by more than the 5-minute lateness, often on a key idle since)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    latest = 0
    for i, event in enumerate(events):
        out.append(event)
        latest = max(latest, event["timestamp"])
        if i > 10 and rng.random() < 0.08:
            out.append(dict(out[rng.randrange(len(out))]))
        if i > 10 and rng.random() < 0.12:
            behind = dict(events[rng.randrange(i)], event_id=f"lag{i}")
            behind["timestamp"] = latest - rng.randrange(6 * 60_000, 40 * 60_000)
            out.append(behind)
    return out


def serve_in_turns(url: str, state_dir: Path, events: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """`serve --workers 2 --state <url>` on an empty Redis: `events` one at a time, each on
    a new connection (the kernel spreads them over the two workers)."""
    cluster = connect(url)
    try:
        cluster.flushall()
    finally:
        cluster.close()
    service = ServiceProcess(state_dir, extra=["--workers", "2", "--state", url]).start()
    close = {"Connection": "close"}
    try:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            answers = [client.post("/v1/transfer/evaluate", json=e, headers=close).json()
                       for e in events]
            # each worker counts its own decisions: a count between none and all of them
            # shows that both workers decided
            fresh = len({e["event_id"] for e in events})

            def both_decided() -> bool:
                text = client.get("/metrics", headers=close).text
                counts = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                          if line.startswith("riskengine_decisions_total{")
                          and 'scene="transfer"' in line]
                return 0 < sum(counts) < fresh

            assert eventually(both_decided, 10.0, 0.01)
            return answers
    finally:
        service.kill()


def test_two_workers_on_a_redis_cluster_decide_as_one_run_after_run(tmp_path: Path) -> None:
    """`serve --workers 2 --state redis+cluster://…` on a 3-primary cluster, one request
    in flight at a time, a stream with lagging sources and repeated ids: every decision
    equals the in-memory engine's, features and late flags the oracle's, and a second
    run on fresh state gives the very same answers."""
    events = lagging(traffic(240, seed=8), seed=9)
    scene = yaml.safe_load(EXAMPLE_CONFIG_PATH.read_text())["scenes"]["transfer"]
    oracle = Oracle.from_scene(scene, base_dir=str(EXAMPLE_CONFIG_PATH.parent))
    answers = [oracle.feed(copy.deepcopy(e)) for e in events]
    assert sum(a.late and not a.duplicate for a in answers) > 10
    assert sum(a.duplicate for a in answers) > 10
    engine = Engine.from_config(None)
    expected = [view(engine.evaluate("transfer", e).to_dict()) for e in events]
    with redis_cluster() as url:
        runs = [serve_in_turns(url, tmp_path / f"run{n}", events) for n in range(2)]
    for got in runs:
        assert [view(d) for d in got] == expected
        assert [(d["features"], d["late"]) for d in got] == [
            ({**a.features}, a.late) for a in answers]
    assert runs[0] == [{**d, "latency_ms": runs[0][i]["latency_ms"]}
                       for i, d in enumerate(runs[1])]


def test_state_timeout_from_the_flag_the_config_and_workers(
        make_client: Callable[..., TestClient], tmp_path: Path, redis_url: str) -> None:
    """The budget of a Redis round trip: 50 ms unless `service: state_timeout` or
    `--state-timeout` (which wins) says otherwise; the service's workers get it too."""
    assert ServiceSettings().with_service_section({}).state_timeout_ms is None
    section = {"state_timeout": "250ms"}
    assert ServiceSettings().with_service_section(section).state_timeout_ms == 250
    flag = ServiceSettings(state_timeout_ms=40)
    assert flag.with_service_section(section).state_timeout_ms == 40
    assert ServiceSettings.from_env(flag.to_env()).state_timeout_ms == 40
    for value in ("0ms", "2m", True, "soon", -5, [50], "50"):
        with pytest.raises(ConfigError, match="service: state_timeout"):
            ServiceSettings().with_service_section({"state_timeout": value})
    raw = example_config()
    raw["service"] = section
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    client = make_client(state=redis_url, state_dir=tmp_path / "s", config=config)
    assert client.app.state.runtime.engine.state.budget_s == 0.25  # type: ignore[attr-defined]
    default = make_client(state=redis_url, state_dir=tmp_path / "d")
    assert default.app.state.runtime.engine.state.budget_s == 0.05  # type: ignore[attr-defined]


def test_serve_refuses_an_invalid_state_timeout(tmp_path: Path) -> None:
    for value in ("0ms", "fast", "61s"):
        done = subprocess.run(
            [sys.executable, "-m", "riskengine", "serve", "--port", str(free_port()),
             "--state-dir", str(tmp_path), "--state", "redis://127.0.0.1:1/0",
             "--state-timeout", value],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "RISKENGINE_ADMIN_TOKEN": ADMIN})
        assert done.returncode == 2, done.stderr
        assert "--state-timeout" in done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_redis_state_of_the_per_key_layout(tmp_path: Path, redis_url: str,
                                                         workers: str) -> None:
    """State written before the scene clock (its LSN counter ``re:lsn``) is refused at
    start, with what to delete, by one worker and by several (checked once, before any
    worker starts)."""
    old = connect(redis_url)
    try:
        old.set("re:lsn", "5000")
    finally:
        old.close()
    done = subprocess.run(
        [sys.executable, "-m", "riskengine", "serve", "--port", str(free_port()),
         "--state-dir", str(tmp_path), "--state", redis_url, "--workers", workers],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "RISKENGINE_ADMIN_TOKEN": ADMIN})
    assert done.returncode == 2, done.stderr
    assert "re:lsn" in done.stderr and "re:*" in done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_another_bucket_count_than_the_states(tmp_path: Path, redis_url: str,
                                                            workers: str) -> None:
    """State made with 16 buckets per key set; a service given 64 on its state URL is
    refused at start, naming both counts (one worker, and the parent of several)."""
    from riskengine.state.redis.clock import SharedClock

    made = connect(redis_url)  # a private server per test: empty
    try:
        SharedClock(made, buckets=16).check(["transfer"])
    finally:
        made.close()
    done = subprocess.run(
        [sys.executable, "-m", "riskengine", "serve", "--port", str(free_port()),
         "--state-dir", str(tmp_path), "--state", f"{redis_url}?buckets=64",
         "--workers", workers],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "RISKENGINE_ADMIN_TOKEN": ADMIN})
    assert done.returncode == 2, done.stderr
    assert "16 buckets" in done.stderr and "given 64" in done.stderr


def test_config_file_list_changes_reach_redis_lists(
        make_client: Callable[..., TestClient], tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "config.yaml"
    raw = example_config()
    config.write_text(yaml.safe_dump(raw))
    client = make_client(state=redis_url, state_dir=tmp_path / "s", config=config,
                         watch_config=True)
    raw["lists"]["blocked_devices"]["values"].append("dev-from-file")
    event = {"event_id": "f1", "timestamp": T0, "pay_account": "P", "rcv_account": "R",
             "amount": 1.0, "device_id": "dev-from-file"}

    def blocked() -> bool:
        config.write_text(yaml.safe_dump(raw))  # again on every try: the watcher may start
        event["event_id"] = f"f{time.monotonic_ns()}"  # after the first write
        body = client.post("/v1/transfer/evaluate", json=event).json()
        return "blocked_devices" in body["list_hits"]

    assert eventually(blocked, 10.0, 0.3)


def test_entity_reads_with_shared_state(make_client: Callable[..., TestClient],
                                        tmp_path: Path) -> None:
    events = traffic(60, seed=12)
    memory = make_client(state_dir=tmp_path / "m")
    with redis_server() as url:
        shared = make_client(state=url, state_dir=tmp_path / "s")
        for event in events:
            assert shared.post("/v1/transfer/evaluate", json=event).status_code == 200
            assert memory.post("/v1/transfer/evaluate", json=event).status_code == 200
        for field in ("pay_account", "rcv_account"):
            path = f"/v1/entities/transfer/{field}/{events[-1][field]}"
            got = shared.get(path, headers=ADMIN_HEADERS)
            assert got.status_code == 200
            assert got.json() == memory.get(path, headers=ADMIN_HEADERS).json()
        assert shared.get("/v1/entities/transfer/amount/5",
                          headers=ADMIN_HEADERS).status_code == 404
    gone = shared.get(f"/v1/entities/transfer/pay_account/{events[-1]['pay_account']}",
                      headers=ADMIN_HEADERS)
    assert gone.status_code == 503 and gone.json()["error"]["code"] == "state_unavailable"


def test_feature_filters_see_list_changes_with_shared_state(
        make_client: Callable[..., TestClient], tmp_path: Path, redis_url: str) -> None:
    """A feature whose `where` reads a list counts by the list as it is now, as with
    in-memory state: a list entry put through the API on one worker counts on another."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "lists": {"watched": {"values": []}},
        "scenes": {"transfer": {
            "schema": {"pay_account": "str", "rcv_account": "str", "amount": "float"},
            "features": [{"name": "watched_payments_1h", "func": "count",
                          "by": ["rcv_account"], "window": "1h",
                          "where": 'in_list("watched", pay_account)'}]}}}))
    results = {}
    for name, state in (("memory", None), ("redis", redis_url)):
        extra = {} if state is None else {"state": state}
        a = make_client(state_dir=tmp_path / f"{name}-a", config=config, **extra)
        b = a if state is None else make_client(state_dir=tmp_path / f"{name}-b",
                                                config=config, **extra)
        counts = []
        for i in range(4):
            if i == 2:
                assert a.put("/v1/lists/watched/W", headers=ADMIN_HEADERS).status_code == 200

                def b_sees_it(b: TestClient = b) -> bool:  # over pub/sub, to other receivers
                    n = time.monotonic_ns()
                    probe = b.post("/v1/transfer/evaluate", json={
                        "event_id": f"probe{n}", "timestamp": T0 + 1, "pay_account": "W",
                        "rcv_account": f"probe{n}", "amount": 1.0}).json()
                    return bool(probe["features"]["watched_payments_1h"] == 1)

                assert eventually(b_sees_it, 10.0, 0.05)
            body = b.post("/v1/transfer/evaluate", json={
                "event_id": f"{name}{i}", "timestamp": T0 + i, "pay_account": "W",
                "rcv_account": "R", "amount": 1.0}).json()
            counts.append(body["features"]["watched_payments_1h"])
        results[name] = counts
    assert results["memory"] == [0, 0, 1, 2]
    assert results["redis"] == results["memory"]
