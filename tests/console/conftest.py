"""The console in process (TestClient) on the example config, signed in or not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riskengine.service import ServiceSettings, create_app
from tests.service.helpers import ADMIN

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISKENGINE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("RISKENGINE_API_TOKEN", raising=False)


@pytest.fixture
def anonymous(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                                     watch_config=False))
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def console(anonymous: TestClient) -> TestClient:
    """A client signed in to the console."""
    response = anonymous.post("/console/login", data={"token": ADMIN})
    assert response.status_code == 303, response.text
    return anonymous


def csrf_of(client: TestClient, page: str = "/console") -> str:
    """The CSRF token the forms of `page` carry."""
    response = client.get(page)
    assert response.status_code == 200, response.text
    found = CSRF.search(response.text)
    assert found is not None
    return found.group(1)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (the browser tests skip without it)."""
    from tests.console.browser import chromium

    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context's page; the test fails if any dialog opened (a script of
    user input that ran)."""
    context = browser.new_context()
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()
    assert dialogs == [], "a script of user input ran"
