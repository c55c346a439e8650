"""The console on a service whose state is in Redis: the same pages, and a session of one
worker is good on another (the signing key comes from the shared admin token); the review
pages work one queue from either worker (one decision log, lists in Redis)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from riskengine.console.session import COOKIE
from riskengine.service import ServiceSettings, create_app
from tests.console.conftest import csrf_of
from tests.console.pages import row, tables
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


def test_experiments_and_backtests_pages_with_redis_state(tmp_path: Path) -> None:
    strict = [{"id": "big", "when": "amount >= 100", "action": "reject", "score": 100}]
    experiment = {"key": "pay_account", "salt": "r1", "split": {"champion": 50, "strict": 50},
                  "challengers": {"strict": {"mode": "decide", "rules": strict}}}
    with _clients(tmp_path) as (a, b):
        assert a.post("/console/login", data={"token": ADMIN}).status_code == 303
        b.cookies.set(COOKIE, a.cookies[COOKIE])
        put = a.post("/console/experiments/put", data={
            "csrf": csrf_of(a, "/console/experiments"), "scene": "transfer",
            "experiment": json.dumps(experiment)})
        assert put.status_code == 303
        version = a.get("/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS).json()[
            "version"]
        assert eventually(lambda: f'id="live-version">{version}<' in b.get(
            "/console/experiments").text, 10.0, 0.05)
        for i in range(8):
            event = transfer(i, pay_account=f"R{i % 4}", amount=150.0 if i % 2 == 0 else 5.0)
            assert a.post("/v1/transfer/evaluate", json=event).status_code == 200
        report = a.get("/v1/scenes/transfer/experiments", headers=ADMIN_HEADERS).json()
        doc = report["experiments"][0]["comparison"]
        assert doc["events"] == 8 and doc["decisions"]["strict"]["reject"] == 4
        page = a.get("/console/experiments").text
        assert f'id="decision-mix-{version}"' in page
        assert 'href="/console/decision?id=e0">e0</a>' in page
        strict_version = a.get("/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS).json()[
            "ruleset_versions"]["strict"]
        promoted = b.post("/console/experiments/promote", data={
            "csrf": csrf_of(b, "/console/experiments"), "scene": "transfer", "arm": "strict",
            "version": version})
        assert promoted.status_code == 303
        assert eventually(lambda: a.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS)
                          .json()["version"] == strict_version, 10.0, 0.05)
        assert "No experiment is running" in a.get("/console/experiments").text
        # backtest the config's ruleset (stored, no longer live) on a's logged events
        original = next(v["version"] for v in a.get(
            "/v1/scenes/transfer/ruleset/versions", headers=ADMIN_HEADERS).json()
            if v["source"] == "config")
        started = a.post("/console/backtests/run", data={
            "csrf": csrf_of(a, "/console/backtests"), "scene": "transfer",
            "version": original})
        assert started.status_code == 303, started.text
        assert eventually(lambda: 'job-state">finished<' in a.get(
            "/console/backtests/job").text, 60.0, 0.05), a.get("/console/backtests/job").text
        listing = a.get("/console/backtests").text
        name = listing.split('href="/console/backtest?name=')[1].split('"')[0]
        shown = a.get("/console/backtest", params={"name": name})
        assert shown.status_code == 200
        mix = tables(shown.text)["Decisions per ruleset"]
        assert row(mix, "reject")["live"] == "4"  # the promoted rule, live now


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
