"""Inputs that once got a 500: each now gets a clear 4xx in the error shape, and serving
goes on."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.service.helpers import ADMIN_HEADERS, transfer

COUNT = "count(pay_account.history,1h)"


def error_of(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"code", "message", "field"}
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("param", ["since", "until"])
@pytest.mark.parametrize("value", ["--5", "²", "-²", "٣", "1٣"])
def test_odd_digit_strings_as_decision_times_are_422(client: TestClient, param: str,
                                                     value: str) -> None:
    response = client.get("/v1/decisions", params={param: value}, headers=ADMIN_HEADERS)
    assert response.status_code == 422
    error = error_of(response)
    assert error["field"] == param
    assert str(error["message"]).startswith(f"{param}: ")


def test_rule_scores_that_could_add_up_past_any_float_are_refused(client: TestClient) -> None:
    rules = [{"id": name, "when": "amount > 0", "score": 1e308} for name in ("a", "b")]
    response = client.put("/v1/scenes/transfer/ruleset", json={"rules": rules},
                          headers=ADMIN_HEADERS)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_ruleset"
    assert "rule 'a': score" in str(error["message"])
    body = client.post("/v1/transfer/evaluate", json=transfer(1)).json()
    assert body["features"][COUNT] == 1
    assert body["ruleset_version"] == client.get("/v1/scenes/transfer/ruleset",
                                                 headers=ADMIN_HEADERS).json()["version"]
