"""Admin API: tokens, rulesets (versions, 422 with position, rollback), lists, decisions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.service.helpers import ADMIN, ADMIN_HEADERS, T0, transfer

ALWAYS_A = {"rules": [{"id": "always_a", "when": "amount >= 0", "score": 1}],
            "policy": {"review_at": 50, "reject_at": 80}}
ALWAYS_B = {"rules": [{"id": "always_b", "when": "amount >= 0", "action": "review"}]}

ADMIN_GETS = ["/v1/decisions/e1", "/v1/decisions", "/v1/scenes/transfer/ruleset",
              "/v1/scenes/transfer/ruleset/versions", "/v1/lists/blocked_devices"]


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_admin_endpoints_need_the_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Basic abc"}).status_code == 401
    wrong = client.get(path, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403
    assert ADMIN not in wrong.text
    assert client.get(path, headers=ADMIN_HEADERS).status_code in (200, 404)


def test_admin_writes_need_the_token(client: TestClient) -> None:
    assert client.put("/v1/scenes/transfer/ruleset", json=ALWAYS_A).status_code == 401
    assert client.put("/v1/lists/blocked_devices/d1").status_code == 401
    assert client.delete("/v1/lists/blocked_devices/dev-blocked-0001").status_code == 401
    assert client.post("/v1/scenes/transfer/ruleset/activate/r0").status_code == 401


def test_evaluate_token_is_optional_and_enforced_when_set(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_token="api-token-for-tests-0123456789")
    assert client.post("/v1/transfer/evaluate", json=transfer(1)).status_code == 401
    bad = client.post("/v1/transfer/evaluate", json=transfer(1),
                      headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 403
    ok = client.post("/v1/transfer/evaluate", json=transfer(1),
                     headers={"Authorization": "Bearer api-token-for-tests-0123456789"})
    assert ok.status_code == 200


def test_without_a_configured_token_one_is_generated_privately(
        make_client: Callable[..., TestClient], tmp_path: object) -> None:
    client = make_client(admin_token=None)
    state = client.app.state.runtime.state_dir  # type: ignore[attr-defined]
    token_file = state / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert client.get("/v1/scenes/transfer/ruleset").status_code == 401
    ok = client.get("/v1/scenes/transfer/ruleset", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


def test_put_ruleset_goes_live_and_rollback_restores(client: TestClient) -> None:
    before = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
    put = client.put("/v1/scenes/transfer/ruleset", json=ALWAYS_A, headers=ADMIN_HEADERS)
    assert put.status_code == 200
    new_version = put.json()["version"]
    assert put.json()["active"] and put.json()["changed"]
    decision = client.post("/v1/transfer/evaluate", json=transfer(1)).json()
    assert decision["ruleset_version"] == new_version
    assert [h["rule_id"] for h in decision["hits"]] == ["always_a"]

    versions = client.get("/v1/scenes/transfer/ruleset/versions", headers=ADMIN_HEADERS).json()
    assert [v["version"] for v in versions] == [before["version"], new_version]
    assert [v["active"] for v in versions] == [False, True]

    back = client.post(f"/v1/scenes/transfer/ruleset/activate/{before['version']}",
                       headers=ADMIN_HEADERS)
    assert back.status_code == 200
    decision = client.post("/v1/transfer/evaluate", json=transfer(2)).json()
    assert decision["ruleset_version"] == before["version"]
    missing = client.post("/v1/scenes/transfer/ruleset/activate/rdeadbeef0000",
                          headers=ADMIN_HEADERS)
    assert missing.status_code == 404


@pytest.mark.parametrize(("body", "rule_id", "has_position"), [
    ({"rules": [{"id": "bad", "when": "amount >", "score": 1}]}, "bad", True),
    ({"rules": [{"id": "esc", "when": "amount.__class__", "score": 1}]}, "esc", True),
    ({"rules": [{"id": "imp", "when": "__import__('os')", "score": 1}]}, "imp", True),
    ({"rules": [{"id": "bomb", "when": "9**9**9 > 1", "score": 1}]}, "bomb", True),
    ({"rules": [{"id": "call", "when": "open('x') is None", "score": 1}]}, "call", True),
])
def test_refused_rule_is_422_with_id_and_position(client: TestClient, body: dict[str, object],
                                                   rule_id: str, has_position: bool) -> None:
    live = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()["version"]
    response = client.put("/v1/scenes/transfer/ruleset", json=body, headers=ADMIN_HEADERS)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["rule_id"] == rule_id
    assert rule_id in error["message"]
    if has_position:
        assert isinstance(error["line"], int) and isinstance(error["column"], int)
    after = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()["version"]
    assert after == live
    assert client.post("/v1/transfer/evaluate", json=transfer(1)).json()[
        "ruleset_version"] == live


@pytest.mark.parametrize("body", [{"rules": "x"}, {"rules": [1]}, {"policy": {}},
                                  {"rules": [], "extra": 1}, [],
                                  {"rules": [], "policy": {"review_at": 90, "reject_at": 10}}])
def test_malformed_rulesets_are_422(client: TestClient, body: object) -> None:
    response = client.put("/v1/scenes/transfer/ruleset", json=body, headers=ADMIN_HEADERS)
    assert response.status_code == 422


def test_staged_version_is_not_live_until_activated(client: TestClient) -> None:
    live = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()["version"]
    staged = client.put("/v1/scenes/transfer/ruleset?activate=false", json=ALWAYS_B,
                        headers=ADMIN_HEADERS).json()
    assert staged["active"] is False
    assert client.post("/v1/transfer/evaluate", json=transfer(1)).json()[
        "ruleset_version"] == live
    client.post(f"/v1/scenes/transfer/ruleset/activate/{staged['version']}",
                headers=ADMIN_HEADERS)
    assert client.post("/v1/transfer/evaluate", json=transfer(2)).json()["decision"] == "review"


def test_list_entries_change_decisions(client: TestClient) -> None:
    put = client.put("/v1/lists/blocked_devices/dev-X", json={"reason": "chargeback"},
                     headers=ADMIN_HEADERS)
    assert put.status_code == 200
    assert put.json() == {"value": "dev-X", "expires_at_ms": None, "reason": "chargeback"}
    hit = client.post("/v1/transfer/evaluate", json=transfer(1, device_id="dev-X")).json()
    assert hit["decision"] == "reject" and "blocked_devices" in hit["list_hits"]
    listing = client.get("/v1/lists/blocked_devices", headers=ADMIN_HEADERS).json()
    assert "dev-X" in [e["value"] for e in listing["entries"]]
    assert client.delete("/v1/lists/blocked_devices/dev-X",
                         headers=ADMIN_HEADERS).status_code == 200
    clean = client.post("/v1/transfer/evaluate", json=transfer(2, device_id="dev-X")).json()
    assert clean["list_hits"] == []
    assert client.delete("/v1/lists/blocked_devices/dev-X",
                         headers=ADMIN_HEADERS).status_code == 404


def test_list_expiry_is_judged_against_event_time(client: TestClient) -> None:
    client.put("/v1/lists/blocked_devices/dev-E", json={"expires": T0 + 5000},
               headers=ADMIN_HEADERS)
    early = client.post("/v1/transfer/evaluate", json=transfer(1, device_id="dev-E")).json()
    late = client.post("/v1/transfer/evaluate", json=transfer(9, device_id="dev-E")).json()
    assert early["list_hits"] == ["blocked_devices"]
    assert late["list_hits"] == []


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/v1/lists/no_such_list/v", None, 404),
    ("/v1/lists/blocked_devices/v", {"expires": "not a time"}, 422),
    ("/v1/lists/blocked_devices/v", {"other": 1}, 422),
    ("/v1/lists/blocked_devices/v", [1, 2], 422),
])
def test_bad_list_changes(client: TestClient, path: str, body: object, status: int) -> None:
    kwargs = {"json": body} if body is not None else {}
    assert client.put(path, headers=ADMIN_HEADERS, **kwargs).status_code == status  # type: ignore[arg-type]


def test_decisions_are_logged_and_queryable(client: TestClient) -> None:
    for i in range(6):
        client.post("/v1/transfer/evaluate", json=transfer(i, amount=1000.0))
    one = client.get("/v1/decisions/e5", headers=ADMIN_HEADERS)
    assert one.status_code == 200
    assert one.json()["decision"] == "reject"
    assert one.json()["features"]["count(pay_account.history,1h)"] == 6
    rejects = client.get("/v1/decisions?decision=reject", headers=ADMIN_HEADERS).json()
    assert [d["event_id"] for d in rejects] == ["e5"]
    newest = client.get("/v1/decisions?limit=2", headers=ADMIN_HEADERS).json()
    assert [d["event_id"] for d in newest] == ["e5", "e4"]
    window = client.get(f"/v1/decisions?since={T0 + 1000}&until={T0 + 3000}",
                        headers=ADMIN_HEADERS).json()
    assert sorted(d["event_id"] for d in window) == ["e1", "e2"]
    assert client.get("/v1/decisions/nope", headers=ADMIN_HEADERS).status_code == 404
    assert client.get("/v1/decisions?limit=0", headers=ADMIN_HEADERS).status_code == 422
    assert client.get("/v1/decisions?since=garbage", headers=ADMIN_HEADERS).status_code == 422
    assert client.get("/v1/decisions?scene=nope", headers=ADMIN_HEADERS).status_code == 404


def test_metrics_count_decisions_and_hits(client: TestClient) -> None:
    for i in range(6):
        client.post("/v1/transfer/evaluate", json=transfer(i, amount=1000.0))
    client.post("/v1/transfer/evaluate", content=b"{", headers={"Content-Type":
                                                                "application/json"})
    text = client.get("/metrics").text
    assert 'riskengine_decisions_total{decision="reject",scene="transfer"} 1.0' in text
    assert 'riskengine_decisions_total{decision="accept",scene="transfer"} 5.0' in text
    assert 'riskengine_rule_hits_total{mode="active",rule="mule_drain",scene="transfer"} 1.0' \
        in text
    assert "riskengine_decision_seconds_bucket" in text
    assert 'riskengine_request_errors_total{status="400"} 1.0' in text


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_entity_shows_current_values_without_counting(client: TestClient) -> None:
    for i in range(3):
        client.post("/v1/transfer/evaluate", json=transfer(i, amount=100.0 * (i + 1)))
    client.post("/v1/transfer/evaluate", json=transfer(3, pay_account="Z", amount=7.0))
    response = client.get("/v1/entities/transfer/pay_account/A", headers=ADMIN_HEADERS)
    assert response.status_code == 200
    body = response.json()
    assert body["as_of"] == T0 + 3000
    assert body["features"]["count(pay_account.history,1h)"] == 3
    assert body["features"]["avg_amount_24h"] == 200.0
    assert "sum(amount#rcv_account.history,1h)" not in body["features"]  # keyed otherwise
    again = client.get("/v1/entities/transfer/pay_account/A", headers=ADMIN_HEADERS).json()
    assert again == body  # reading changes nothing
    nxt = client.post("/v1/transfer/evaluate", json=transfer(4)).json()
    assert nxt["features"]["count(pay_account.history,1h)"] == 4
    receiver = client.get("/v1/entities/transfer/rcv_account/B", headers=ADMIN_HEADERS).json()
    assert receiver["features"]["sum(amount#rcv_account.history,1h)"] == 617.0
    unknown = client.get("/v1/entities/transfer/pay_account/nobody", headers=ADMIN_HEADERS)
    assert unknown.json()["features"]["count(pay_account.history,1h)"] == 0
    assert client.get("/v1/entities/transfer/amount/5",
                      headers=ADMIN_HEADERS).status_code == 404
    assert client.get("/v1/entities/nope/pay_account/A",
                      headers=ADMIN_HEADERS).status_code == 404
    assert client.get("/v1/entities/transfer/pay_account/A").status_code == 401
