"""Admin API of model versions: list, put (hot, checked), rollback, persistence, refusals;
a model that fails at scoring answers 200 with a null term, counted in /metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riskengine.models import content_version
from riskengine.service.settings import GuardSettings
from tests.models.onnx_files import linear, logistic, lookup
from tests.service.helpers import ADMIN_HEADERS, T0
from tests.waiting import eventually

MODELS = "/v1/scenes/pay/models"


def project(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "project.yaml"
    path.write_text(f"""
scenes:
  pay:
    schema: {{acct: str, amount: float}}
    features:
      - {{name: n_1h, func: count, by: [acct], window: 1h}}
    models:
      risk: {{uri: {model.name}, inputs: [amount], output: value}}
    rules:
      - {{id: risky, when: 'model("risk") >= 10', action: review, score: 60}}
    policy: {{review_at: 50, reject_at: 80}}
  other:
    schema: {{acct: str}}
    features: ["count(acct.history,1h)"]
""")
    return path


@pytest.fixture
def setup(tmp_path: Path, make_client: Callable[..., TestClient]
          ) -> tuple[TestClient, Path, Callable[..., TestClient]]:
    model = linear(tmp_path / "times1.onnx", [1.0])
    config = project(tmp_path, model)
    return make_client(config=config), tmp_path, lambda: make_client(config=config)


def pay(client: TestClient, i: int, amount: float) -> dict[str, Any]:
    response = client.post("/v1/pay/evaluate", json={"event_id": f"e{i}", "acct": "A",
                                                      "timestamp": T0 + i, "amount": amount})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_list_shows_the_live_version_uri_inputs_and_versions(setup: Any) -> None:
    client, folder, _ = setup
    body = client.get(MODELS, headers=ADMIN_HEADERS).json()
    version = content_version((folder / "times1.onnx").read_bytes())
    (model,) = body["models"]
    assert body["scene"] == "pay"
    assert (model["name"], model["version"], model["inputs"], model["output"]) == (
        "risk", version, ["amount"], "value")
    assert model["uri"] == str(folder / "times1.onnx")
    assert [(v["version"], v["source"], v["active"]) for v in model["versions"]] == [
        (version, "config", True)]
    assert client.get("/v1/scenes/other/models", headers=ADMIN_HEADERS).json() == {
        "scene": "other", "models": []}


def test_put_goes_live_at_once_and_activate_rolls_back(setup: Any) -> None:
    client, folder, _ = setup
    first = client.get(MODELS, headers=ADMIN_HEADERS).json()["models"][0]["version"]
    before = pay(client, 1, 5.0)
    assert before["features"]["model:risk"] == 5.0 and before["decision"] == "accept"
    assert before["models"] == {"risk": first}
    linear(folder / "times3.onnx", [3.0])
    put = client.put(f"{MODELS}/risk", json={"uri": "times3.onnx", "version": "v3"},
                     headers=ADMIN_HEADERS)
    assert put.status_code == 200, put.text
    assert put.json() == {"scene": "pay", "model": "risk", "version": "v3", "active": True,
                          "changed": True}
    after = pay(client, 2, 5.0)
    assert after["features"]["model:risk"] == 15.0 and after["decision"] == "review"
    assert after["models"] == {"risk": "v3"}
    again = client.put(f"{MODELS}/risk", json={"uri": "times3.onnx", "version": "v3"},
                       headers=ADMIN_HEADERS)
    assert again.json()["changed"] is False
    back = client.post(f"{MODELS}/risk/activate/{first}", headers=ADMIN_HEADERS)
    assert back.status_code == 200 and back.json()["changed"] is True
    assert pay(client, 3, 5.0)["features"]["model:risk"] == 5.0
    versions = client.get(MODELS, headers=ADMIN_HEADERS).json()["models"][0]["versions"]
    assert [(v["version"], v["source"], v["active"]) for v in versions] == [
        (first, "config", True), ("v3", "api", False)]


def test_the_version_defaults_to_the_content_hash(setup: Any) -> None:
    client, folder, _ = setup
    model = linear(folder / "times2.onnx", [2.0])
    put = client.put(f"{MODELS}/risk", json={"uri": str(model)}, headers=ADMIN_HEADERS)
    assert put.json()["version"] == content_version(model.read_bytes())


def test_versions_and_the_live_choice_survive_a_restart(setup: Any) -> None:
    client, folder, restart = setup
    linear(folder / "times3.onnx", [3.0])
    client.put(f"{MODELS}/risk", json={"uri": "times3.onnx", "version": "v3"},
               headers=ADMIN_HEADERS)
    client.__exit__(None, None, None)
    again = restart()
    model = again.get(MODELS, headers=ADMIN_HEADERS).json()["models"][0]
    assert model["version"] == "v3"
    assert [v["version"] for v in model["versions"]][-1] == "v3"
    assert pay(again, 9, 2.0)["features"]["model:risk"] == 6.0


def test_a_bad_model_version_is_rolled_back_by_the_guard(
        tmp_path: Path, make_client: Callable[..., TestClient]) -> None:
    config = project(tmp_path, linear(tmp_path / "times1.onnx", [1.0]))
    client = make_client(config=config, guard=GuardSettings(decisions=50))
    first = client.get(MODELS, headers=ADMIN_HEADERS).json()["models"][0]["version"]
    assert {pay(client, i, 1.0)["decision"] for i in range(100)} == {"accept"}
    linear(tmp_path / "times100.onnx", [100.0])  # scores 100: every payment reviewed
    assert client.put(f"{MODELS}/risk", json={"uri": "times100.onnx", "version": "v100"},
                      headers=ADMIN_HEADERS).status_code == 200
    answers = [pay(client, 100 + i, 1.0) for i in range(50)]
    assert {(a["models"]["risk"], a["decision"]) for a in answers} == {("v100", "review")}

    def live() -> str:
        return str(client.get(MODELS, headers=ADMIN_HEADERS).json()["models"][0]["version"])

    assert eventually(lambda: live() == first, 10.0, 0.05)
    assert pay(client, 200, 1.0)["models"] == {"risk": first}
    [verdict] = client.get("/v1/scenes/pay/guard", headers=ADMIN_HEADERS).json()["verdicts"]
    assert (verdict["kind"], verdict["version"], verdict["previous"], verdict["state"],
            verdict["exceeded"]) == ("model:risk", "v100", first, "rolled_back", ["review"])
    metrics = client.get("/metrics").text
    assert 'riskengine_guard_rollbacks_total{kind="model:risk",scene="pay"} 1.0' in metrics
    # an admin's rollback is a change like any other: watched, and kept when harmless
    client.post(f"{MODELS}/risk/activate/v100", headers=ADMIN_HEADERS)
    client.post(f"{MODELS}/risk/activate/{first}", headers=ADMIN_HEADERS)
    watching = client.get("/v1/scenes/pay/guard", headers=ADMIN_HEADERS).json()["watching"]
    assert [(w["kind"], w["version"], w["previous"]) for w in watching] == [
        ("model:risk", first, "v100")]


@pytest.mark.parametrize(("make_file", "wanted"), [
    (lambda folder: folder / "missing.onnx", "cannot read"),
    (lambda folder: folder, "cannot read"),
    (lambda folder: _junk(folder / "junk.onnx"), "not a loadable ONNX model"),
    (lambda folder: linear(folder / "two.onnx", [1.0, 2.0]), "takes 2 inputs"),
    (lambda folder: logistic(folder / "clf.onnx", [1.0]), "one number per row"),
])
def test_a_refused_file_is_422_and_the_live_version_stays(
        setup: Any, make_file: Callable[[Path], Path], wanted: str) -> None:
    client, folder, _ = setup
    live = client.get(MODELS, headers=ADMIN_HEADERS).json()
    response = client.put(f"{MODELS}/risk", json={"uri": str(make_file(folder))},
                          headers=ADMIN_HEADERS)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_model" and wanted in error["message"]
    assert "model 'risk'" in error["message"]
    assert client.get(MODELS, headers=ADMIN_HEADERS).json() == live
    assert pay(client, 1, 4.0)["features"]["model:risk"] == 4.0


def _junk(path: Path) -> Path:
    path.write_bytes(b"\x08\x07garbage" * 100)
    return path


def test_a_taken_version_name_with_another_file_is_409(setup: Any) -> None:
    client, folder, _ = setup
    linear(folder / "times3.onnx", [3.0])
    linear(folder / "times4.onnx", [4.0])
    assert client.put(f"{MODELS}/risk", json={"uri": "times3.onnx", "version": "v"},
                      headers=ADMIN_HEADERS).status_code == 200
    clash = client.put(f"{MODELS}/risk", json={"uri": "times4.onnx", "version": "v"},
                       headers=ADMIN_HEADERS)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "version_conflict"
    assert pay(client, 1, 1.0)["features"]["model:risk"] == 3.0


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/v1/scenes/nope/models", 404),
    ("put", "/v1/scenes/nope/models/risk", 404),
    ("put", f"{MODELS}/nope", 404),
    ("put", "/v1/scenes/other/models/risk", 404),
    ("post", f"{MODELS}/nope/activate/v1", 404),
    ("post", f"{MODELS}/risk/activate/v-never", 404),
    ("post", "/v1/scenes/nope/models/risk/activate/v1", 404),
])
def test_unknown_scenes_models_and_versions_are_404(setup: Any, method: str, path: str,
                                                    status: int) -> None:
    client, _, _ = setup
    kwargs: dict[str, Any] = {"json": {"uri": "times1.onnx"}} if method == "put" else {}
    response = getattr(client, method)(path, headers=ADMIN_HEADERS, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(("content", "headers", "status"), [
    (b"{not json", {}, 400),
    (b"[1, 2]", {}, 422),
    (b'"models/x.onnx"', {}, 422),
    (b"{}", {}, 422),
    (b'{"uri": 7}', {}, 422),
    (b'{"uri": ""}', {}, 422),
    (b'{"uri": "x\\u0000y"}', {}, 422),
    (b'{"uri": "times1.onnx", "inputs": ["amount"]}', {}, 422),
    (b'{"uri": "times1.onnx", "version": {"a": 1}}', {}, 422),
    (b'{"uri": "' + b"a" * 100_000 + b'"}', {}, 413),
    (b'{"uri": "times1.onnx"}', {"Content-Type": "text/plain"}, 415),
])
def test_hostile_put_bodies_are_refused_and_nothing_changes(
        setup: Any, content: bytes, headers: dict[str, str], status: int) -> None:
    client, _, _ = setup
    live = client.get(MODELS, headers=ADMIN_HEADERS).json()
    response = client.put(f"{MODELS}/risk", content=content,
                          headers={"Content-Type": "application/json", **headers,
                                   **ADMIN_HEADERS})
    assert response.status_code == status, response.text
    assert client.get(MODELS, headers=ADMIN_HEADERS).json() == live
    assert pay(client, 1, 2.0)["features"]["model:risk"] == 2.0


def test_model_routes_need_the_admin_token(setup: Any) -> None:
    client, _, _ = setup
    assert client.get(MODELS).status_code == 401
    assert client.put(f"{MODELS}/risk", json={"uri": "times1.onnx"}).status_code == 401
    assert client.post(f"{MODELS}/risk/activate/v1").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.put(f"{MODELS}/risk", json={"uri": "x"}, headers=wrong).status_code == 403


def test_a_model_failing_at_scoring_answers_200_with_null_and_is_counted(setup: Any) -> None:
    client, folder, _ = setup
    failing = lookup(folder / "lookup.onnx", 1)
    assert client.put(f"{MODELS}/risk", json={"uri": str(failing)},
                      headers=ADMIN_HEADERS).status_code == 200
    ok = pay(client, 1, 1.0)
    assert ok["features"]["model:risk"] == 0.75
    broken = pay(client, 2, 50.0)   # index 50 of a table of two: onnxruntime raises
    assert broken["features"]["model:risk"] is None and broken["decision"] == "accept"
    pay(client, 3, 60.0)
    metrics = client.get("/metrics").text
    assert 'riskengine_model_failures_total{model="risk",scene="pay"} 2.0' in metrics
