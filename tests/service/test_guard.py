"""The guarded rollout in a service with in-memory state: a ruleset that rejects
everything is rolled back after its first N decisions, a harmless change stays, the guard
endpoint shows the watch as it goes; invalid guard settings stop the start."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from riskengine.cli import app
from riskengine.exceptions import ConfigError
from riskengine.service import ServiceSettings
from riskengine.service.settings import GuardSettings
from tests.example_config import example_config
from tests.service.helpers import ADMIN_HEADERS
from tests.service.test_restart import traffic
from tests.waiting import eventually

N = 200
GUARD = GuardSettings(decisions=N)
REJECT_ALL = {"rules": [{"id": "reject_all", "when": "amount >= 0", "action": "reject",
                         "reason": "a mistake: rejects every transfer"}]}
ROLLBACKS = 'riskengine_guard_rollbacks_total{kind="ruleset",scene="transfer"}'


def send(client: TestClient, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answers = [client.post("/v1/transfer/evaluate", json=e) for e in events]
    assert [a.status_code for a in answers] == [200] * len(events)
    return [a.json() for a in answers]


def guard_of(client: TestClient) -> dict[str, Any]:
    response = client.get("/v1/scenes/transfer/guard", headers=ADMIN_HEADERS)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def live(client: TestClient) -> str:
    body = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
    return str(body["version"])


def put(client: TestClient, body: dict[str, Any]) -> str:
    response = client.put("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS, json=body)
    assert response.status_code == 200 and response.json()["changed"] is True
    return str(response.json()["version"])


def test_a_ruleset_that_rejects_everything_is_rolled_back(
        make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="riskengine.service")
    client = make_client(guard=GUARD)
    events = traffic(520, seed=11)
    baseline = send(client, events[:300])
    before = live(client)
    assert {d["ruleset_version"] for d in baseline} == {before}
    bad = put(client, REJECT_ALL)

    answers = send(client, events[300:300 + N])
    assert {(d["ruleset_version"], d["decision"]) for d in answers} == {(bad, "reject")}

    def rolled_back() -> bool:
        return bool(guard_of(client)["verdicts"]) and live(client) == before

    assert eventually(rolled_back, 10.0, 0.05)
    again = send(client, events[300 + N:])
    assert {d["ruleset_version"] for d in again} == {before}  # the earlier version decides

    report = guard_of(client)
    assert report["enabled"] is True and report["watching"] == []
    [verdict] = report["verdicts"]
    assert {k: verdict[k] for k in ("kind", "version", "previous", "state", "decisions",
                                    "counts", "rates", "exceeded", "of")} == {
        "kind": "ruleset", "version": bad, "previous": before, "state": "rolled_back",
        "decisions": N, "counts": {"accept": 0, "review": 0, "reject": N},
        "rates": {"review": 0.0, "reject": 1.0}, "exceeded": ["reject"], "of": N}
    base = verdict["baseline"]
    # the previous version's last N, as whole flushes: N or a few more of its 300
    assert N <= base["decisions"] <= 300
    assert base["decisions"] == sum(base["counts"].values())
    assert base["rates"]["reject"] == base["counts"]["reject"] / base["decisions"] < 0.05

    metrics = client.get("/metrics").text
    assert f"{ROLLBACKS} 1.0" in metrics
    assert 'riskengine_ruleset_reloads_total{scene="transfer",source="guard"} 1.0' in metrics
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert warning.name == "riskengine.service.guard"
    assert f"ruleset {bad} rolled back to {before} by the guard" in message
    assert "reject 100.00% review 0.00%" in message
    assert f"reject {100 * base['rates']['reject']:.2f}%" in message

    versions = {v["version"]: v for v in client.get("/v1/scenes/transfer/ruleset/versions",
                                                    headers=ADMIN_HEADERS).json()}
    assert versions[bad]["rolled_back_by_guard"] == verdict
    assert versions[before]["rolled_back_by_guard"] is None
    assert versions[before]["active"] is True


def test_a_harmless_change_is_kept(make_client: Callable[..., TestClient]) -> None:
    client = make_client(guard=GUARD)
    events = traffic(500, seed=12)
    send(client, events[:300])
    before = live(client)
    rules = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
    rules["rules"].append({"id": "watch_large", "when": "amount > 1500", "score": 10,
                           "mode": "shadow", "reason": "being evaluated"})
    harmless = put(client, {"rules": rules["rules"], "policy": rules["policy"]})
    assert harmless != before
    send(client, events[300:])

    assert eventually(lambda: bool(guard_of(client)["verdicts"]), 10.0, 0.05)
    [verdict] = guard_of(client)["verdicts"]
    assert (verdict["state"], verdict["version"], verdict["exceeded"]) == (
        "kept", harmless, [])
    assert verdict["decisions"] == N
    assert live(client) == harmless
    assert ROLLBACKS not in client.get("/metrics").text
    versions = client.get("/v1/scenes/transfer/ruleset/versions", headers=ADMIN_HEADERS)
    assert all(v["rolled_back_by_guard"] is None for v in versions.json())


def test_the_guard_endpoint_during_the_watch(make_client: Callable[..., TestClient]) -> None:
    client = make_client(guard=GUARD)
    events = traffic(450, seed=13)
    send(client, events[:300])
    before = live(client)
    bad = put(client, REJECT_ALL)
    send(client, events[300:420])

    def counted() -> bool:
        watching = guard_of(client)["watching"]
        return bool(watching) and watching[0]["decisions"] == 120

    assert eventually(counted, 10.0, 0.05)
    report = guard_of(client)
    assert report["settings"] == {"decisions": N, "factor": 3.0, "min_delta": 0.01}
    assert report["verdicts"] == []
    [watch] = report["watching"]
    assert {k: watch[k] for k in ("kind", "version", "previous", "state", "of", "counts",
                                  "rates", "exceeded", "decided_at_ms")} == {
        "kind": "ruleset", "version": bad, "previous": before, "state": "watching", "of": N,
        "counts": {"accept": 0, "review": 0, "reject": 120},
        "rates": {"review": 0.0, "reject": 1.0}, "exceeded": ["reject"],
        "decided_at_ms": None}
    assert N <= watch["baseline"]["decisions"] <= 300
    assert live(client) == bad  # not judged before its N decisions

    # an admin puts the earlier version back first: that watch ends, one of it starts
    back = client.post(f"/v1/scenes/transfer/ruleset/activate/{before}",
                       headers=ADMIN_HEADERS)
    assert back.status_code == 200
    report = guard_of(client)
    [superseded] = report["verdicts"]
    assert (superseded["state"], superseded["version"], superseded["decisions"]) == (
        "superseded", bad, 120)
    [watch] = report["watching"]
    assert (watch["version"], watch["previous"], watch["decisions"]) == (before, bad, 0)


def test_a_version_put_before_any_decision_has_no_baseline(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client(guard=GuardSettings(decisions=20))
    bad = put(client, REJECT_ALL)
    send(client, traffic(20, seed=14))
    assert eventually(lambda: bool(guard_of(client)["verdicts"]), 10.0, 0.05)
    [verdict] = guard_of(client)["verdicts"]
    assert (verdict["state"], verdict["baseline"]["decisions"]) == ("no_baseline", 0)
    assert live(client) == bad


def test_a_config_reload_is_watched_too(make_client: Callable[..., TestClient],
                                        tmp_path: Path) -> None:
    raw = example_config()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    client = make_client(guard=GuardSettings(decisions=50), config=config)
    events = traffic(150, seed=15)
    send(client, events[:60])
    before = live(client)
    raw["scenes"]["transfer"]["rules"].append(
        {"id": "review_all", "when": "amount >= 0", "action": "review"})
    config.write_text(yaml.safe_dump(raw))
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.reload_config() == ["transfer"]
    reloaded = live(client)
    assert reloaded != before
    send(client, events[60:110])
    assert eventually(lambda: live(client) == before, 10.0, 0.05)
    [verdict] = guard_of(client)["verdicts"]
    assert (verdict["version"], verdict["state"], verdict["exceeded"]) == (
        reloaded, "rolled_back", ["review"])
    assert runtime.reload_config() == []  # the same file again: the rollback stays


def test_the_guard_endpoint_refuses_what_it_should(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()  # no guard
    off = guard_of(client)
    assert off == {"scene": "transfer", "enabled": False, "settings": None, "watching": [],
                   "verdicts": []}
    assert client.get("/v1/scenes/transfer/guard").status_code == 401
    wrong = client.get("/v1/scenes/transfer/guard",
                       headers={"Authorization": "Bearer not-the-token-0123456789"})
    assert wrong.status_code == 403
    unknown = client.get("/v1/scenes/nope/guard", headers=ADMIN_HEADERS)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
    huge = client.get("/v1/scenes/" + "x" * 5000 + "/guard", headers=ADMIN_HEADERS)
    assert huge.status_code == 422
    put(client, REJECT_ALL)  # without a guard a change is not watched
    assert guard_of(client)["watching"] == []


@pytest.mark.parametrize(("guard", "message"), [
    ("yes", "must be a mapping"),
    ([1000], "must be a mapping"),
    ({"decisions": 0}, "decisions must be an integer from 1"),
    ({"decisions": -5}, "decisions must be an integer from 1"),
    ({"decisions": 2.5}, "decisions must be an integer from 1"),
    ({"decisions": True}, "decisions must be an integer from 1"),
    ({"decisions": "1000"}, "decisions must be an integer from 1"),
    ({"decisions": 10**12}, "decisions must be an integer from 1"),
    ({"factor": 0.5}, "factor must be 1 or more"),
    ({"factor": float("nan")}, "factor must be 1 or more"),
    ({"factor": float("inf")}, "factor must be 1 or more"),
    ({"factor": "3"}, "factor must be a number"),
    ({"min_delta": -0.01}, "min_delta must be a rate from 0"),
    ({"min_delta": 1}, "min_delta must be a rate from 0"),
    ({"min_delta": None}, "min_delta must be a number"),
    ({"decisons": 100}, "unknown keys ['decisons']"),
])
def test_invalid_guard_settings_are_refused(guard: object, message: str) -> None:
    with pytest.raises(ConfigError, match="service: guard") as refused:
        ServiceSettings().with_service_section({"guard": guard})
    assert message in str(refused.value)


def test_guard_settings_from_the_config_flags_and_workers() -> None:
    assert ServiceSettings().with_service_section({}).guard is None
    assert ServiceSettings().with_service_section({"guard": None}).guard is None
    assert ServiceSettings().with_service_section({"guard": {}}).guard == GuardSettings()
    section = {"guard": {"decisions": 500, "factor": 2, "min_delta": 0.05}}
    assert ServiceSettings().with_service_section(section).guard == GuardSettings(
        500, 2.0, 0.05)
    flags = ServiceSettings(guard=GuardSettings(decisions=50))
    assert flags.with_service_section(section).guard == GuardSettings(decisions=50)
    assert ServiceSettings.from_env(flags.to_env()).guard == GuardSettings(decisions=50)
    assert ServiceSettings.from_env(ServiceSettings().to_env()).guard is None


def test_serve_refuses_invalid_guard_settings(tmp_path: Path) -> None:
    flag = CliRunner().invoke(app, ["serve", "--guard-factor", "0.5", "--state-dir",
                                    str(tmp_path / "a")])
    assert flag.exit_code == 2
    assert "--guard-*: factor must be 1 or more" in flag.output
    raw = example_config()
    raw["service"] = {"guard": {"decisions": "many"}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    for extra in ([], ["--workers", "2", "--state", "redis://127.0.0.1:1/0"]):
        result = CliRunner().invoke(app, ["serve", "--config", str(config), "--port", "0",
                                          "--state-dir", str(tmp_path / "b"), *extra])
        assert result.exit_code == 2, result.output
        assert "service: guard: decisions must be an integer" in result.output
