"""The review queue API on a real service, with the decision log in SQLite and in
PostgreSQL: a review decision is queued, claimed by one analyst at a time (claims expire),
shown with its evidence, resolved (label, list entry, audit trail), the listed entity is
rejected afterwards, the queue survives a restart, the gauges count it, and hostile
requests are refused without changing anything."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riskengine.exceptions import ConfigError
from riskengine.service import ServiceSettings
from tests.service.helpers import ADMIN_HEADERS, transfer
from tests.waiting import eventually

MALFORMED = (b"{", b"", b"nul", b'{"analyst": "ann",}', b"\xff\xfe", b"[" * 5000)
CONFIG = """
lists:
  blocked_accounts:
    reason: accounts confirmed as fraud
    values: [A-old]
scenes:
  transfer:
    schema: {pay_account: str, rcv_account: str, amount: float}
    features:
      - {name: payments_1h, func: count, by: [pay_account], window: 1h}
    lists:
      - {list: blocked_accounts, field: pay_account}
    rules:
      - {id: large, when: amount >= 1000, score: 60, reason: large transfer}
      - id: blocked
        when: in_list("blocked_accounts", pay_account)
        action: reject
        score: 100
        reason: paying account on the block list
    policy: {review_at: 50, reject_at: 80}
"""


@pytest.fixture(params=("sqlite", "postgresql"))
def start(request: pytest.FixtureRequest, tmp_path: Path,
          make_client: Callable[..., TestClient]) -> Callable[..., TestClient]:
    """`start(**settings)` starts the service on the test config and the backend's log."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    log = None if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_url")

    def started(**overrides: Any) -> TestClient:
        return make_client(config=config, decision_log=log, **overrides)
    return started


def evaluate(client: TestClient, i: int, **fields: Any) -> str:
    answer = client.post("/v1/transfer/evaluate", json=transfer(i, **fields))
    assert answer.status_code == 200, answer.text
    decision: str = answer.json()["decision"]
    return decision


def get(client: TestClient, path: str) -> Any:
    answer = client.get(path, headers=ADMIN_HEADERS)
    assert answer.status_code == 200, answer.text
    return answer.json()


def post(client: TestClient, path: str, body: Any) -> Any:
    return client.post(path, headers=ADMIN_HEADERS, json=body)


def gauge(client: TestClient, name: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf'^{name}{{scene="transfer"}} (\S+)$', text, re.MULTILINE)
    assert found is not None, name
    return float(found.group(1))


def test_the_full_review_loop(start: Callable[..., TestClient]) -> None:
    client = start()
    assert evaluate(client, 1, amount=1500.0) == "review"
    assert evaluate(client, 2, amount=20.0) == "accept"
    assert evaluate(client, 3, pay_account="Z", amount=2000.0) == "review"
    queue = get(client, "/v1/reviews")
    assert [(i["event_id"], i["state"]) for i in queue] == [("e1", "open"), ("e3", "open")]
    assert all(i["age_seconds"] >= 0 for i in queue)
    assert gauge(client, "riskengine_review_queue_size") == 2
    assert gauge(client, "riskengine_review_queue_oldest_age_seconds") >= 0

    claimed = post(client, "/v1/reviews/e1/claim", {"analyst": "ann"})
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "ann"
    assert [i["event_id"] for i in get(client, "/v1/reviews?state=claimed")] == ["e1"]
    assert [i["event_id"] for i in get(client, "/v1/reviews?state=open")] == ["e3"]

    evidence = get(client, "/v1/reviews/e1")
    assert evidence["event"]["pay_account"] == "A" and evidence["event"]["amount"] == 1500.0
    assert evidence["decision"]["decision"] == "review"
    assert evidence["decision"]["features"]["payments_1h"] == 1
    assert [h["rule_id"] for h in evidence["decision"]["hits"]] == ["large"]
    assert evidence["reasons"] == ["large transfer"]
    assert evidence["label"] is None
    entity = evidence["entity"]
    assert (entity["field"], entity["value"]) == ("pay_account", "A")
    assert [d["event_id"] for d in entity["recent_decisions"]] == ["e2", "e1"]

    resolved = post(client, "/v1/reviews/e1/resolve", {
        "analyst": "ann", "outcome": "fraud", "note": "drained by a mule",
        "add_to_list": {"list": "blocked_accounts", "field": "pay_account",
                        "expires": "2040-01-01T00:00:00Z"}})
    assert resolved.status_code == 200, resolved.text
    result = resolved.json()
    assert result["item"]["state"] == "resolved" and result["item"]["outcome"] == "fraud"
    assert (result["label"]["label"], result["label"]["source"]) == ("fraud", "review:ann")
    assert result["list_entry"]["value"] == "A"
    entries = get(client, "/v1/lists/blocked_accounts")["entries"]
    assert "A" in [e["value"] for e in entries]
    assert get(client, "/v1/reviews/e1")["label"]["label"] == "fraud"
    trail = get(client, "/v1/reviews/e1/audit")
    assert [(a["action"], a["analyst"]) for a in trail] == [
        ("claim", "ann"), ("resolve", "ann"), ("list", "ann")]
    assert trail[1]["detail"]["note"] == "drained by a mule"
    assert trail[2]["detail"]["value"] == "A"
    assert gauge(client, "riskengine_review_queue_size") == 1
    # the entity is now on the list: its next transfer is rejected by the list rule
    answer = client.post("/v1/transfer/evaluate", json=transfer(4, amount=5.0)).json()
    assert answer["decision"] == "reject"
    assert "blocked" in [h["rule_id"] for h in answer["hits"]]
    # resolved once: a second resolution or claim is refused
    again = post(client, "/v1/reviews/e1/resolve", {"analyst": "bob", "outcome": "legit"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "resolved"
    assert post(client, "/v1/reviews/e1/claim", {"analyst": "bob"}).status_code == 409
    # a resolution without a list change, by an analyst who did not claim the open item
    legit = post(client, "/v1/reviews/e3/resolve", {"analyst": "bob", "outcome": "legit"})
    assert legit.status_code == 200 and legit.json()["list_entry"] is None
    assert [i["event_id"] for i in get(client, "/v1/reviews?state=resolved")] == ["e1", "e3"]
    assert gauge(client, "riskengine_review_queue_size") == 0
    assert gauge(client, "riskengine_review_queue_oldest_age_seconds") == 0


def test_two_analysts_claim_one_wins(start: Callable[..., TestClient]) -> None:
    client = start()
    evaluate(client, 1, amount=1500.0)
    evaluate(client, 1, amount=1500.0)  # a duplicate is not queued again
    assert len(get(client, "/v1/reviews")) == 1
    first = post(client, "/v1/reviews/e1/claim", {"analyst": "ann"})
    second = post(client, "/v1/reviews/e1/claim", {"analyst": "bob"})
    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "claimed"
    assert "ann" in second.json()["error"]["message"]
    refused = post(client, "/v1/reviews/e1/resolve", {"analyst": "bob", "outcome": "legit"})
    assert refused.status_code == 409
    assert get(client, "/v1/reviews/e1")["label"] is None
    assert [a["analyst"] for a in get(client, "/v1/reviews/e1/audit")] == ["ann"]


def test_a_claim_expires(start: Callable[..., TestClient]) -> None:
    client = start(review_claim_ms=1000)
    evaluate(client, 1, amount=1500.0)
    assert post(client, "/v1/reviews/e1/claim", {"analyst": "ann"}).status_code == 200
    assert eventually(lambda: post(client, "/v1/reviews/e1/claim",
                                   {"analyst": "bob"}).status_code == 200)
    assert get(client, "/v1/reviews/e1")["item"]["claimed_by"] == "bob"
    assert [a["analyst"] for a in get(client, "/v1/reviews/e1/audit")] == ["ann", "bob"]


def test_the_queue_survives_a_restart(start: Callable[..., TestClient]) -> None:
    first = start()
    evaluate(first, 1, amount=1500.0)
    evaluate(first, 2, amount=1800.0)
    post(first, "/v1/reviews/e1/claim", {"analyst": "ann"})
    first.__exit__(None, None, None)
    second = start()
    queue = get(second, "/v1/reviews")
    assert [(i["event_id"], i["state"], i["claimed_by"]) for i in queue] == [
        ("e1", "claimed", "ann"), ("e2", "open", None)]
    assert post(second, "/v1/reviews/e1/claim", {"analyst": "bob"}).status_code == 409


def test_hostile_requests_are_refused_and_change_nothing(
        start: Callable[..., TestClient]) -> None:
    client = start()
    evaluate(client, 1, amount=1500.0)
    for path in ("/v1/reviews/nope", "/v1/reviews/nope/audit"):
        assert client.get(path, headers=ADMIN_HEADERS).status_code == 404
    assert post(client, "/v1/reviews/nope/claim", {"analyst": "ann"}).status_code == 404
    assert post(client, "/v1/reviews/nope/resolve",
                {"analyst": "ann", "outcome": "fraud"}).status_code == 404
    assert client.get("/v1/reviews").status_code == 401
    assert client.post("/v1/reviews/e1/claim", json={"analyst": "ann"}).status_code == 401
    assert client.get("/v1/reviews?scene=nope", headers=ADMIN_HEADERS).status_code == 404
    for query in ("state=lost", "limit=0", "limit=x", "limit=100000"):
        assert client.get(f"/v1/reviews?{query}", headers=ADMIN_HEADERS).status_code == 422
    assert client.get("/v1/reviews/" + "x" * 300, headers=ADMIN_HEADERS).status_code == 422
    for body in MALFORMED:
        answer = client.post("/v1/reviews/e1/claim", content=body,
                             headers={**ADMIN_HEADERS, "Content-Type": "application/json"})
        assert answer.status_code in (400, 422), body[:40]
    bad_claims: list[Any] = [[], "ann", {}, {"analyst": 5}, {"analyst": ""},
                             {"analyst": "a b"}, {"analyst": "x" * 101},
                             {"analyst": "ann", "extra": 1}]
    for body in bad_claims:
        assert post(client, "/v1/reviews/e1/claim", body).status_code == 422, body
    good = {"analyst": "ann", "outcome": "fraud"}
    bad_resolutions: list[Any] = [
        {"analyst": "ann"}, {"outcome": "fraud"}, {**good, "outcome": "maybe"},
        {**good, "outcome": 1}, {**good, "note": 5}, {**good, "note": "n" * 2001},
        {**good, "add_to_list": "blocked_accounts"},
        {**good, "add_to_list": {"list": "nope", "field": "pay_account"}},
        {**good, "add_to_list": {"list": "blocked_accounts", "field": "no_such_field"}},
        {**good, "add_to_list": {"list": "blocked_accounts", "field": "amount"}},
        {**good, "add_to_list": {"list": "blocked_accounts"}},
        {**good, "add_to_list": {"list": "blocked_accounts", "field": "pay_account",
                                 "expires": "soon"}},
        {**good, "add_to_list": {"list": "blocked_accounts", "field": "pay_account",
                                 "reason": "r" * 1001}},
        {**good, "add_to_list": {"list": "blocked_accounts", "field": "pay_account",
                                 "who": "me"}}]
    for body in bad_resolutions:
        answer = post(client, "/v1/reviews/e1/resolve", body)
        assert answer.status_code == 422, (body, answer.text)
    huge = post(client, "/v1/reviews/e1/resolve", {**good, "note": "n" * 100_000})
    assert huge.status_code == 413
    # nothing changed, and the service still serves
    (item,) = get(client, "/v1/reviews")
    assert (item["state"], item["claimed_by"]) == ("open", None)
    assert get(client, "/v1/reviews/e1/audit") == []
    assert get(client, "/v1/reviews/e1")["label"] is None
    assert [e["value"] for e in get(client, "/v1/lists/blocked_accounts")["entries"]] == [
        "A-old"]
    assert post(client, "/v1/reviews/e1/resolve", good).status_code == 200


def test_the_claim_time_setting() -> None:
    assert ServiceSettings().review_claim_ms == 15 * 60_000
    assert ServiceSettings().with_service_section(
        {"review_claim": "2m"}).review_claim_ms == 120_000
    for bad in ("0s", "500ms", "soon", -5, True):
        with pytest.raises(ConfigError, match="review_claim"):
            ServiceSettings().with_service_section({"review_claim": bad})
