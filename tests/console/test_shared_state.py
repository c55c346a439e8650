"""The console on a service whose state is in Redis: the same pages, and a session of one
worker is good on another (the signing key comes from the shared admin token)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from riskengine.console.session import COOKIE
from riskengine.service import ServiceSettings, create_app
from tests.console.conftest import csrf_of
from tests.servers import redis_server
from tests.service.helpers import ADMIN, transfer
from tests.waiting import eventually


def _worker(url: str, state_dir: Path) -> TestClient:
    app = create_app(ServiceSettings(state_dir=state_dir, admin_token=ADMIN,
                                     watch_config=False, state=url))
    return TestClient(app, follow_redirects=False)


@contextlib.contextmanager
def _clients(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    with redis_server() as url, _worker(url, tmp_path / "a") as a, \
            _worker(url, tmp_path / "b") as b:
        yield a, b


def test_console_pages_with_redis_state(tmp_path: Path) -> None:
    with _clients(tmp_path) as (a, b):
        assert a.post("/console/login", data={"token": ADMIN}).status_code == 303
        b.cookies.set(COOKIE, a.cookies[COOKIE])
        assert a.post("/v1/transfer/evaluate",
                      json=transfer(1, pay_account="acct-r")).status_code == 200
        entity = b.get("/console/entity", params={"scene": "transfer", "field": "pay_account",
                                                  "value": "acct-r"})
        assert entity.status_code == 200 and "count(pay_account.history,1h)" in entity.text
        assert a.get("/console/decision", params={"id": "e1"}).status_code == 200
        csrf = csrf_of(b, "/console/lists")
        added = b.post("/console/lists/add", data={"csrf": csrf, "name": "blocked_ips",
                                                    "value": "192.0.2.5"})
        assert added.status_code == 303
        assert eventually(lambda: "192.0.2.5" in a.get("/console/lists?name=blocked_ips").text,
                          10.0, 0.05)
        for page in ("/console", "/console/rules", "/console/decisions"):
            assert b.get(page).status_code == 200, page
