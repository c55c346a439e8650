"""The service as a real process: kill -9 and restart, graceful SIGTERM, and ruleset swaps
under concurrent load."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from riskengine.engine import Engine
from tests.service.helpers import ADMIN_HEADERS, T0
from tests.service.process import ServiceProcess


def traffic(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"event_id": f"p{i}", "timestamp": T0 + i * 5_000 + rng.randint(-20_000, 0),
             "pay_account": f"A{rng.randint(0, 7)}", "rcv_account": f"R{rng.randint(0, 4)}",
             "amount": round(rng.uniform(1, 3000), 2), "device_id": f"d{rng.randint(0, 5)}"}
            for i in range(n)]


@pytest.fixture
def services() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for service in started:
        service.kill()


def test_kill_9_then_restart_gives_uninterrupted_features(
        tmp_path: Path, services: list[ServiceProcess]) -> None:
    events = traffic(400, seed=11)
    cut = random.Random(7).randint(150, 250)
    state = tmp_path / "state"
    first = ServiceProcess(state).start()
    services.append(first)
    with httpx.Client(base_url=first.url, timeout=10) as client:
        for i, event in enumerate(events[:cut]):
            assert client.post("/v1/transfer/evaluate", json=event).status_code == 200
            if i == cut // 2:  # a snapshot mid-stream, as the periodic one would write
                taken = client.post("/v1/admin/snapshot", headers=ADMIN_HEADERS)
                assert taken.json() == {"lsn": i + 1}
        last = client.post("/v1/transfer/evaluate", json=events[cut - 1]).json()
    first.kill()
    assert (state / "snapshot.pkl").exists()

    second = ServiceProcess(state).start()
    services.append(second)
    with httpx.Client(base_url=second.url, timeout=10) as client:
        ready = client.get("/readyz").json()["detail"]
        assert ready["recovered_events"] == cut - (cut // 2 + 1)  # the log after the snapshot
        again = client.post("/v1/transfer/evaluate", json=events[cut - 1]).json()
        # an acknowledged event stays decided (no double count); only the timing differs
        assert {**again, "latency_ms": 0} == {**last, "latency_ms": 0}
        got = [client.post("/v1/transfer/evaluate", json=e).json()["features"]
               for e in events[cut:]]
    engine = Engine.from_config(None)
    expected = [engine.evaluate("transfer", e).features for e in events]
    assert got == expected[cut:]


def test_sigterm_snapshots_and_restart_needs_no_replay(
        tmp_path: Path, services: list[ServiceProcess]) -> None:
    events = traffic(60, seed=3)
    state = tmp_path / "state"
    first = ServiceProcess(state).start()
    services.append(first)
    with httpx.Client(base_url=first.url, timeout=10) as client:
        for event in events[:40]:
            assert client.post("/v1/transfer/evaluate", json=event).status_code == 200
    assert first.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert (state / "snapshot.pkl").exists()
    second = ServiceProcess(state).start()
    services.append(second)
    with httpx.Client(base_url=second.url, timeout=10) as client:
        assert client.get("/readyz").json()["detail"]["recovered_events"] == 0
        got = [client.post("/v1/transfer/evaluate", json=e).json()["features"]
               for e in events[40:]]
    engine = Engine.from_config(None)
    assert got == [engine.evaluate("transfer", e).features for e in events][40:]


RULESET_A = {"rules": [{"id": "always_a", "when": "amount >= 0", "score": 1}]}
RULESET_B = {"rules": [{"id": "always_b", "when": "amount >= 0", "action": "review"}]}


def test_ruleset_swaps_under_concurrent_load_are_atomic(
        tmp_path: Path, services: list[ServiceProcess]) -> None:
    service = ServiceProcess(tmp_path / "state").start()
    services.append(service)
    admin = httpx.Client(base_url=service.url, timeout=10, headers=ADMIN_HEADERS)
    version_a = admin.put("/v1/scenes/transfer/ruleset", json=RULESET_A).json()["version"]
    version_b = admin.put("/v1/scenes/transfer/ruleset", json=RULESET_B).json()["version"]
    expected_hits = {version_a: ["always_a"], version_b: ["always_b"]}
    stop = threading.Event()
    answers: list[tuple[int, dict[str, Any]]] = []
    failures: list[str] = []

    def load(worker: int) -> None:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            i = 0
            while not stop.is_set():
                event = {"event_id": f"w{worker}-{i}", "timestamp": T0 + i,
                         "pay_account": f"A{worker}", "rcv_account": "R", "amount": 5.0}
                try:
                    response = client.post("/v1/transfer/evaluate", json=event)
                except httpx.TransportError as exc:
                    failures.append(repr(exc))
                    continue
                answers.append((response.status_code, response.json()))
                i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    try:
        n = 0
        deadline = time.monotonic() + 120
        while (n < 20 or len(answers) < 300) and time.monotonic() < deadline:
            target = version_a if n % 2 == 0 else version_b
            swap = admin.post(f"/v1/scenes/transfer/ruleset/activate/{target}")
            assert swap.status_code == 200
            n += 1
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        admin.close()
    assert not failures
    assert len(answers) >= 300
    seen_versions = set()
    for status, body in answers:
        assert status == 200
        version = body["ruleset_version"]
        seen_versions.add(version)
        assert [h["rule_id"] for h in body["hits"]] == expected_hits[version]
        assert body["decision"] == ("review" if version == version_b else "accept")
    assert seen_versions == {version_a, version_b}
