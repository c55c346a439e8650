"""Experiments on shared state (a real redis-server): a worker process and an in-process
worker agree on every account's arm and follow each other's PUT, promote and end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from riskengine.experiment import CHAMPION
from tests.servers import redis_server
from tests.service.helpers import ADMIN_HEADERS, transfer
from tests.service.process import ServiceProcess
from tests.service.test_experiments import URL, spec
from tests.waiting import eventually


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def arms_of(post: Callable[..., Any], start: int, accounts: int) -> dict[str, tuple[str, Any]]:
    arms = {}
    for i in range(accounts):
        response = post("/v1/transfer/evaluate",
                        json=transfer(start + i, pay_account=f"A-{i}", amount=500.0))
        assert response.status_code == 200, response.text
        decision = response.json()
        arms[f"A-{i}"] = (decision["arm"], decision["experiment"])
    return arms


def test_two_workers_agree_on_arms_and_follow_put_promote_and_end(
        make_client: Callable[..., TestClient], tmp_path: Path, redis_url: str) -> None:
    process = ServiceProcess(tmp_path / "p", extra=["--state", redis_url]).start()
    try:
        local = make_client(state=redis_url, state_dir=tmp_path / "local")
        remote = httpx.Client(base_url=process.url, timeout=10.0)
        put = remote.put(URL, headers=ADMIN_HEADERS, json=spec())
        assert put.status_code == 200, put.text
        version = put.json()["version"]

        def local_has(expected: str | None) -> bool:
            live = local.get(URL, headers=ADMIN_HEADERS)
            got = live.json()["version"] if live.status_code == 200 else None
            return bool(got == expected)

        assert eventually(lambda: local_has(version), 10.0, 0.05)
        on_remote = arms_of(remote.post, 0, 40)
        on_local = arms_of(local.post, 1000, 40)
        assert on_local == on_remote
        assert {arm for arm, _ in on_local.values()} == {CHAMPION, "strict"}

        promoted = local.post("/v1/scenes/transfer/experiments/strict/promote",
                              headers=ADMIN_HEADERS).json()

        def remote_follows() -> bool:
            live = remote.get(URL, headers=ADMIN_HEADERS).json()
            champion = remote.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
            return bool(live.get("version") == promoted["experiment_version"]
                        and champion["version"] == promoted["ruleset_version"])

        assert eventually(remote_follows, 10.0, 0.05)
        decision = remote.post("/v1/transfer/evaluate",
                               json=transfer(5000, pay_account="A-1", amount=500.0)).json()
        assert decision["ruleset_version"] == promoted["ruleset_version"]
        assert decision["decision"] == "reject" and set(decision["arms"]) == {"watch"}

        assert remote.delete(URL, headers=ADMIN_HEADERS).status_code == 200
        assert eventually(lambda: local_has(None), 10.0, 0.05)
        remote.close()
    finally:
        process.stop()
