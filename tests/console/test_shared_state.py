"""The console on a service whose state is in Redis: the same pages, and a session of one
worker is good on another (the signing key comes from the shared admin token); the review
pages work one queue from either worker (one decision log, lists in Redis)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from riskengine.console.session import COOKIE
from riskengine.service import ServiceSettings, create_app
from tests.console.conftest import csrf_of
from tests.console.reviewing import FRAUD_LIST, review_config, reviewed
from tests.servers import redis_server
from tests.service.helpers import ADMIN, ADMIN_HEADERS, transfer
from tests.waiting import eventually


def _worker(url: str, state_dir: Path, **settings: Any) -> TestClient:
    app = create_app(ServiceSettings(state_dir=state_dir, admin_token=ADMIN,
                                     watch_config=False, state=url, **settings))
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


def test_review_pages_with_redis_state(tmp_path: Path) -> None:
    shared = {"config": review_config(tmp_path / "project"),
              "decision_log": f"sqlite:///{tmp_path / 'decisions.db'}"}
    with redis_server() as url, _worker(url, tmp_path / "a", **shared) as a, \
            _worker(url, tmp_path / "b", **shared) as b:
        login = a.post("/console/login", data={"token": ADMIN, "analyst": "ann"})
        assert login.status_code == 303
        b.cookies.set(COOKIE, a.cookies[COOKIE])
        answer = a.post("/v1/transfer/evaluate", json=reviewed(1, "P-9")).json()
        assert answer["decision"] == "review"
        assert ">e1</a>" in b.get("/console/reviews").text
        claimed = b.post("/console/review/claim", data={
            "csrf": csrf_of(b, "/console/review?id=e1"), "id": "e1"})
        assert claimed.status_code == 303
        page = a.get("/console/review", params={"id": "e1"}).text
        assert 'id="review-state">claimed<' in page and 'id="resolve"' in page
        resolved = a.post("/console/review/resolve", data={
            "csrf": csrf_of(a, "/console/review?id=e1"), "id": "e1", "outcome": "fraud",
            "list": FRAUD_LIST, "field": "pay_account"})
        assert resolved.status_code == 303, resolved.text
        assert 'id="label">fraud (review:ann, ' in b.get("/console/decision?id=e1").text
        assert eventually(lambda: "<td>P-9</td>" in b.get(
            f"/console/lists?name={FRAUD_LIST}").text, 10.0, 0.05)
        again = b.post("/v1/transfer/evaluate", json=transfer(
            2, pay_account="P-9", rcv_account="M-1", amount=5.0)).json()
        assert again["decision"] == "reject"
        trail = b.get("/v1/reviews/e1/audit", headers=ADMIN_HEADERS).json()
        assert [(row["action"], row["analyst"]) for row in trail] == [
            ("claim", "ann"), ("resolve", "ann"), ("list", "ann")]
