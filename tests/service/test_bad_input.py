"""Hostile requests get a clear 4xx in one error shape; nothing changes; serving goes on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.service.helpers import transfer

COUNT = "count(pay_account.history,1h)"


def error_of(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    return body["error"]  # type: ignore[no-any-return]


def still_serving(client: TestClient, expected_count: int) -> None:
    body = client.post("/v1/transfer/evaluate", json=transfer(900)).json()
    assert body["features"][COUNT] == expected_count


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/v1/transfer/evaluate", content=b'{"amount": 1,,}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "malformed JSON" in error_of(response)["message"]
    still_serving(client, 1)


@pytest.mark.parametrize(("change", "field"), [
    ({"amount": "lots"}, "amount"),
    ({"pay_account": None}, "pay_account"),
    ({"amount": float("1e300")}, "amount"),
    ({"event_id": 12}, "event_id"),
    ({"timestamp": "yesterday"}, "timestamp"),
])
def test_schema_violations_are_422_naming_the_field(client: TestClient, change: dict[str, object],
                                                     field: str) -> None:
    event = {**transfer(1), **change}
    response = client.post("/v1/transfer/evaluate", json=event)
    assert response.status_code == 422
    error = error_of(response)
    assert error["field"] == field
    assert field in str(error["message"])
    still_serving(client, 1)


@pytest.mark.parametrize("body", [b"[]", b"1", b'"text"', b"null"])
def test_a_non_object_event_is_422(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/transfer/evaluate", content=body,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    still_serving(client, 1)


def test_body_over_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=2048)
    response = client.post("/v1/transfer/evaluate", json=transfer(1, note="x" * 5000))
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"
    still_serving(client, 1)


def test_huge_body_without_content_length_is_413(make_client: Callable[..., TestClient]
                                                  ) -> None:
    client = make_client(max_body_bytes=4096)

    def chunks() -> object:
        yield b'{"note": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    response = client.post("/v1/transfer/evaluate", content=chunks(),  # type: ignore[arg-type]
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_unknown_scene_is_404(client: TestClient) -> None:
    response = client.post("/v1/withdraw/evaluate", json=transfer(1))
    assert response.status_code == 404
    assert "unknown scene" in str(error_of(response)["message"])
    still_serving(client, 1)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_is_415(client: TestClient, ctype: str) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    response = client.post("/v1/transfer/evaluate", content=b'{"amount": 1}', headers=headers)
    assert response.status_code == 415
    still_serving(client, 1)


def test_batch_over_max_size_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_batch=3)
    response = client.post("/v1/transfer/evaluate/batch", json=[transfer(i) for i in range(4)])
    assert response.status_code == 413
    still_serving(client, 1)


def test_batch_with_one_bad_event_changes_nothing(client: TestClient) -> None:
    events = [transfer(1), transfer(2, amount="bad"), transfer(3)]
    response = client.post("/v1/transfer/evaluate/batch", json=events)
    assert response.status_code == 422
    assert "event 1" in str(error_of(response)["message"])
    still_serving(client, 1)


def test_batch_must_be_a_list(client: TestClient) -> None:
    response = client.post("/v1/transfer/evaluate/batch", json=transfer(1))
    assert response.status_code == 422


def test_deeply_nested_json_is_refused_cleanly(client: TestClient) -> None:
    body = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post("/v1/transfer/evaluate", content=body,
                           headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 413)
    still_serving(client, 1)


def test_many_unknown_fields_are_carried_not_fatal(client: TestClient) -> None:
    event = transfer(1, **{f"extra{i}": i for i in range(2000)})
    response = client.post("/v1/transfer/evaluate", json=event)
    assert response.status_code == 200
