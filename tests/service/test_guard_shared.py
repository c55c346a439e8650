"""The guarded rollout with shared state: two `riskengine serve` processes on one
redis-server count together, one of them rolls the bad version back, once, and both end
on the previous version."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from riskengine.service.settings import GuardSettings
from tests.servers import redis_server
from tests.service.helpers import ADMIN_HEADERS
from tests.service.process import ServiceProcess
from tests.service.test_guard import REJECT_ALL, ROLLBACKS
from tests.service.test_restart import traffic
from tests.waiting import eventually

N = 200


@pytest.fixture
def two_services(tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with redis_server() as url:
        services = [ServiceProcess(tmp_path / name, extra=[
            "--state", url, "--guard-decisions", str(N)]) for name in ("a", "b")]
        try:
            for service in services:
                service.start()
            with httpx.Client(base_url=services[0].url, timeout=30) as a, \
                    httpx.Client(base_url=services[1].url, timeout=30) as b:
                yield a, b
        finally:
            for service in services:
                service.kill()


def live(client: httpx.Client) -> str:
    return str(client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS)
               .json()["version"])


def split(a: httpx.Client, b: httpx.Client, events: list[dict[str, Any]]) -> list[str]:
    """Send the events to the two services in turn; the versions that decided them."""
    versions = []
    for i, event in enumerate(events):
        response = (a if i % 2 else b).post("/v1/transfer/evaluate", json=event)
        assert response.status_code == 200
        versions.append(response.json()["ruleset_version"])
    return versions


def rollbacks(client: httpx.Client) -> float:
    found = re.search(re.escape(ROLLBACKS) + r" (\S+)", client.get("/metrics").text)
    return float(found.group(1)) if found else 0.0


def test_two_services_roll_back_once_and_both_end_on_the_previous_version(
        two_services: tuple[httpx.Client, httpx.Client], tmp_path: Path) -> None:
    a, b = two_services
    events = traffic(560, seed=31)
    split(a, b, events[:300])
    before = live(a)
    assert live(b) == before
    put = a.put("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS, json=REJECT_ALL)
    bad = put.json()["version"]
    assert eventually(lambda: live(b) == bad, 10.0, 0.05)

    watching = b.get("/v1/scenes/transfer/guard", headers=ADMIN_HEADERS).json()["watching"]
    assert [(w["version"], w["previous"]) for w in watching] == [(bad, before)]
    assert set(split(a, b, events[300:300 + N])) == {bad}  # N decisions, half on each

    assert eventually(lambda: live(a) == before and live(b) == before, 15.0, 0.05)
    assert set(split(a, b, events[300 + N:])) == {before}
    assert rollbacks(a) + rollbacks(b) == 1.0

    reports = [c.get("/v1/scenes/transfer/guard", headers=ADMIN_HEADERS).json()
               for c in (a, b)]
    assert reports[0] == reports[1]
    [verdict] = reports[0]["verdicts"]
    assert (verdict["state"], verdict["version"], verdict["previous"]) == (
        "rolled_back", bad, before)
    # both services' counts: N, nothing more was sent before the verdict
    assert verdict["counts"]["reject"] == verdict["decisions"] == N
    assert verdict["baseline"]["decisions"] >= N
    for client in (a, b):
        versions = {v["version"]: v for v in client.get(
            "/v1/scenes/transfer/ruleset/versions", headers=ADMIN_HEADERS).json()}
        assert versions[bad]["rolled_back_by_guard"]["state"] == "rolled_back"
    logged = "".join(path.read_text() for path in tmp_path.glob("serve-*.log"))
    assert logged.count(f"ruleset {bad} rolled back to {before} by the guard") == 1


def test_without_redis_the_service_keeps_deciding_and_the_guard_answers_503(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    with redis_server() as url:
        client = make_client(state=url, state_dir=tmp_path / "s", guard=GuardSettings(N))
        assert client.post("/v1/transfer/evaluate", json=traffic(1)[0]).status_code == 200
        assert client.get("/v1/scenes/transfer/guard",
                          headers=ADMIN_HEADERS).json()["enabled"] is True
    for event in traffic(5, seed=4):  # Redis is gone: fallback decisions, not counted
        answer = client.post("/v1/transfer/evaluate", json=event)
        assert answer.status_code == 200 and answer.json()["degraded"] is True
    down = client.get("/v1/scenes/transfer/guard", headers=ADMIN_HEADERS)
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "state_unavailable"
    versions = client.get("/v1/scenes/transfer/ruleset/versions", headers=ADMIN_HEADERS)
    assert versions.status_code == 200  # the marks are left out while Redis is away
    assert all(v["rolled_back_by_guard"] is None for v in versions.json())
