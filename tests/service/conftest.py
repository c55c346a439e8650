"""A service on a temporary state directory, driven in process through TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riskengine.service import ServiceSettings, create_app
from tests.service.helpers import ADMIN


@pytest.fixture(autouse=True)
def _no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISKENGINE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("RISKENGINE_API_TOKEN", raising=False)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Start a service (lifespan included); every client started is stopped at the end."""
    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {"state_dir": tmp_path / "state", "admin_token": ADMIN,
                                  "watch_config": False}
        values.update(overrides)
        client = TestClient(create_app(ServiceSettings(**values)),
                            raise_server_exceptions=True)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
