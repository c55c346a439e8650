"""POST /v1/{scene}/evaluate and /batch: decisions, the seed scenario, idempotency."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.helpers import T0, transfer

COUNT = "count(pay_account.history,1h)"


def test_evaluate_returns_the_decision(client: TestClient) -> None:
    response = client.post("/v1/transfer/evaluate", json=transfer(1))
    assert response.status_code == 200
    body = response.json()
    assert body["event_id"] == "e1"
    assert body["decision"] == "accept"
    assert body["features"][COUNT] == 1
    assert body["ruleset_version"].startswith("r")
    assert body["late"] is False and body["degraded"] is False


def test_seed_scenario_over_http(client: TestClient) -> None:
    answers = [client.post("/v1/transfer/evaluate",
                           json=transfer(i, amount=1000.0, rcv_account="MULE")).json()
               for i in range(6)]
    assert "mule_drain" not in [h["rule_id"] for h in answers[4]["hits"]]
    assert answers[5]["decision"] == "reject"
    assert "mule_drain" in [h["rule_id"] for h in answers[5]["hits"]]


def test_missing_timestamp_is_the_arrival_time(client: TestClient) -> None:
    event = transfer(1)
    del event["timestamp"]
    body = client.post("/v1/transfer/evaluate", json=event).json()
    assert body["timestamp"] > T0


def test_duplicate_event_id_gets_the_stored_decision(client: TestClient) -> None:
    first = client.post("/v1/transfer/evaluate", json=transfer(1)).json()
    again = client.post("/v1/transfer/evaluate", json=transfer(1, amount=99.0)).json()
    assert again == {**first, "duplicate": True} and first["duplicate"] is False
    nxt = client.post("/v1/transfer/evaluate", json=transfer(2)).json()
    assert nxt["features"][COUNT] == 2  # the duplicate was not counted


def test_batch_answers_in_order(client: TestClient) -> None:
    events = [transfer(i) for i in range(5)]
    response = client.post("/v1/transfer/evaluate/batch", json=events)
    assert response.status_code == 200
    body = response.json()
    assert [d["event_id"] for d in body] == [e["event_id"] for e in events]
    assert [d["features"][COUNT] for d in body] == [1, 2, 3, 4, 5]


def test_login_scene(client: TestClient) -> None:
    response = client.post("/v1/login/evaluate", json={
        "timestamp": T0, "account": "u1", "result": "fail"})
    assert response.status_code == 200
    assert response.json()["scene"] == "login"
