"""Model versions across the workers of a shared-state service (Redis)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.models.onnx_files import linear
from tests.servers import redis_server
from tests.service.helpers import ADMIN_HEADERS, T0
from tests.service.test_models_api import MODELS, project
from tests.waiting import eventually


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def test_a_version_put_on_one_worker_goes_live_on_every_worker(
        make_client: Callable[..., TestClient], tmp_path: Path, redis_url: str) -> None:
    config = project(tmp_path, linear(tmp_path / "times1.onnx", [1.0]))
    a = make_client(state=redis_url, state_dir=tmp_path / "a", config=config)
    b = make_client(state=redis_url, state_dir=tmp_path / "b", config=config)
    linear(tmp_path / "times3.onnx", [3.0])
    put = a.put(f"{MODELS}/risk", json={"uri": "times3.onnx", "version": "v3"},
                headers=ADMIN_HEADERS)
    assert put.status_code == 200, put.text

    def live_on(client: TestClient) -> str:
        return str(client.get(MODELS, headers=ADMIN_HEADERS).json()["models"][0]["version"])

    assert eventually(lambda: live_on(b) == "v3", 10.0, 0.05)
    event = {"event_id": "s1", "timestamp": T0, "acct": "A", "amount": 2.0}
    decided = b.post("/v1/pay/evaluate", json=event).json()
    assert decided["features"]["model:risk"] == 6.0 and decided["models"] == {"risk": "v3"}
    late = make_client(state=redis_url, state_dir=tmp_path / "c", config=config)
    assert live_on(late) == "v3"   # a worker that starts later takes the live version
