"""The experiment admin API, labels over HTTP and the live comparison: put, end, list,
promote (atomic), the split and the arms across a restart, hostile bodies, and the API
and the CLI reading the same report."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riskengine.cli import app as cli_app
from riskengine.experiment import CHAMPION, Experiment, parse_experiment
from riskengine.rules.expr import ExprNames
from riskengine.rules.ruleset import Policy
from riskengine.service.label_routes import MAX_LABELS
from tests.example_config import example_config
from tests.service.helpers import ADMIN_HEADERS, T0, transfer
from tests.waiting import eventually

URL = "/v1/scenes/transfer/experiment"
STRICT = [{"id": "big", "when": "amount >= 100", "action": "reject", "score": 100}]
WATCH = [{"id": "any_amount", "when": "amount >= 0", "score": 5}]


def spec(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": "pay_account", "salt": "t1", "split": {"champion": 50, "strict": 50},
        "challengers": {"strict": {"mode": "decide", "rules": STRICT},
                        "watch": {"mode": "shadow", "rules": WATCH}}}
    body.update(changes)
    return body


def evaluate(client: TestClient, i: int, account: str, amount: float = 50.0) -> Any:
    response = client.post("/v1/transfer/evaluate",
                           json=transfer(i, pay_account=account, amount=amount))
    assert response.status_code == 200, response.text
    return response.json()


def test_put_get_versions_and_end(client: TestClient) -> None:
    assert client.get(URL, headers=ADMIN_HEADERS).status_code == 404
    put = client.put(URL, headers=ADMIN_HEADERS, json=spec())
    assert put.status_code == 200, put.text
    version = put.json()["version"]
    assert put.json()["arms"] == [CHAMPION, "strict", "watch"] and put.json()["changed"]
    assert not client.put(URL, headers=ADMIN_HEADERS, json=spec()).json()["changed"]
    live = client.get(URL, headers=ADMIN_HEADERS).json()
    assert live["version"] == version and live["experiment"]["salt"] == "t1"
    decision = evaluate(client, 1, "A-1")
    assert decision["experiment"] == version
    assert set(decision["arms"]) | {decision["arm"]} == {CHAMPION, "strict", "watch"}
    assert client.delete(URL, headers=ADMIN_HEADERS).json()["version"] == version
    assert client.delete(URL, headers=ADMIN_HEADERS).status_code == 404
    after = evaluate(client, 2, "A-1")
    assert after["experiment"] is None and after["arms"] == {} and after["arm"] == CHAMPION
    versions = client.get(URL + "/versions", headers=ADMIN_HEADERS).json()
    assert [v["version"] for v in versions] == [version] and not versions[0]["active"]


@pytest.mark.parametrize(("body", "named"), [
    (spec(split={"champion": 60, "strict": 30}), "add up to 90"),
    (spec(split={"champion": 50, "ghost": 50}), "unknown arm 'ghost'"),
    (spec(split={"champion": 50, "strict": 40, "watch": 10}), "shadow"),
    (spec(split={"champion": 100}), "leaves out 'strict'"),
    (spec(challengers={"strict": {"mode": "decide", "rules": [
        {"id": "broken", "when": "amount >=", "action": "reject"}]}}), "broken"),
    (spec(challengers={"strict": {"mode": "decide", "rules": [
        {"id": "f", "when": "features['nope'] > 1", "action": "reject"}]}}), "nope"),
    (spec(challengers={"strict": {"mode": "sometimes", "rules": STRICT}}), "mode"),
    (spec(challengers={"champion": {"mode": "shadow", "rules": STRICT}}), "invalid"),
    (spec(key="no_such_field"), "no_such_field"),
    (spec(extra=1), "extra"),
    (spec(challengers={"strict": {"mode": "decide", "ruleset_version": "r000000000000"}}),
     "r000000000000"),
    ([spec()], "mapping"),
    ("experiment", "mapping"),
    (spec(challengers={f"a{i}": {"mode": "shadow", "rules": WATCH} for i in range(30)},
          split={"champion": 100}), "at most"),
])
def test_a_refused_experiment_names_the_fault_and_the_live_one_stays(
        client: TestClient, body: Any, named: str) -> None:
    live = client.put(URL, headers=ADMIN_HEADERS, json=spec(salt="live")).json()["version"]
    refused = client.put(URL, headers=ADMIN_HEADERS, json=body)
    assert refused.status_code == 422, refused.text
    assert named in refused.json()["error"]["message"]
    assert client.get(URL, headers=ADMIN_HEADERS).json()["version"] == live
    assert evaluate(client, 1, "A-9")["experiment"] == live


def test_hostile_requests_on_the_new_routes(client: TestClient) -> None:
    routes = [("put", URL), ("post", "/v1/labels")]
    for method, url in routes:
        call = getattr(client, method)
        assert call(url, json={}).status_code == 401
        assert call(url, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert call(url, content=b"{not json", headers={
            **ADMIN_HEADERS, "Content-Type": "application/json"}).status_code == 400
        assert call(url, content=b"{}", headers={
            **ADMIN_HEADERS, "Content-Type": "text/plain"}).status_code == 415
        huge = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
        assert call(url, content=huge, headers={
            **ADMIN_HEADERS, "Content-Type": "application/json"}).status_code == 413
    assert client.put("/v1/scenes/nope/experiment", headers=ADMIN_HEADERS,
                      json=spec()).status_code == 404
    assert client.get("/v1/scenes/nope/experiments", headers=ADMIN_HEADERS).status_code == 404
    assert client.get("/v1/scenes/transfer/experiments?since=yesterday",
                      headers=ADMIN_HEADERS).status_code == 422
    assert client.post("/v1/scenes/transfer/experiments/strict/promote",
                       headers=ADMIN_HEADERS).status_code == 404  # no experiment yet
    assert client.get("/healthz").status_code == 200


def test_labels_over_http_refuse_a_bad_batch_whole(client: TestClient) -> None:
    evaluate(client, 1, "A-1")
    good = {"event_id": "e1", "label": "fraud", "time": T0, "source": "analyst"}
    for bad, field in (({"event_id": "e2", "label": "not ok"}, "label"),
                       ({"event_id": 7, "label": "fraud"}, "event_id"),
                       ({"event_id": "e2", "label": "fraud", "time": "later"}, "time"),
                       ({"event_id": "e2", "label": "fraud", "why": "x"}, "why"),
                       ("e2", "label")):
        refused = client.post("/v1/labels", headers=ADMIN_HEADERS, json=[good, bad])
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["index"] == 1 and error["field"] == field
        assert error["message"].startswith("label 1:")
    too_many = [{"event_id": f"e{i}", "label": "legit"} for i in range(MAX_LABELS + 1)]
    assert client.post("/v1/labels", headers=ADMIN_HEADERS, json=too_many).status_code == 422
    report = client.get("/v1/scenes/transfer/experiments", headers=ADMIN_HEADERS).json()
    assert report["without_experiment"] == 1  # nothing stored from the refused batches
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    assert rt.log.label_count() == 0
    stored = client.post("/v1/labels", headers=ADMIN_HEADERS, json=good)
    assert stored.json() == {"received": 1, "events": 1}
    assert rt.log.labels_for(["e1"])["e1"].source == "analyst"


def test_a_challenger_may_name_a_stored_ruleset_version(client: TestClient) -> None:
    stored = client.put("/v1/scenes/transfer/ruleset?activate=false", headers=ADMIN_HEADERS,
                        json={"rules": STRICT}).json()["version"]
    put = client.put(URL, headers=ADMIN_HEADERS, json=spec(challengers={
        "strict": {"mode": "decide", "ruleset_version": stored}}))
    assert put.status_code == 200, put.text
    decision = evaluate(client, 1, "A-1", amount=500.0)
    versions = {decision["arm"]: decision["ruleset_version"],
                **{arm: other["version"] for arm, other in decision["arms"].items()}}
    assert versions["strict"] == stored


def test_promote_makes_the_arm_champion_and_survives_a_restart(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    client.put(URL, headers=ADMIN_HEADERS, json=spec())
    assert client.post("/v1/scenes/transfer/experiments/ghost/promote",
                       headers=ADMIN_HEADERS).status_code == 404
    promoted = client.post("/v1/scenes/transfer/experiments/strict/promote",
                           headers=ADMIN_HEADERS)
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    versions = client.get("/v1/scenes/transfer/ruleset/versions", headers=ADMIN_HEADERS).json()
    assert {v["version"]: v["source"] for v in versions}[body["ruleset_version"]] == "promote"
    live = client.get(URL, headers=ADMIN_HEADERS).json()
    assert live["version"] == body["experiment_version"]
    assert live["arms"] == [CHAMPION, "watch"] and live["experiment"]["split"] == {
        CHAMPION: 100.0}
    decision = evaluate(client, 1, "A-1", amount=500.0)
    assert decision["decision"] == "reject" and decision["ruleset_version"] == body[
        "ruleset_version"]
    client.__exit__(None, None, None)
    again = make_client()
    assert again.get(URL, headers=ADMIN_HEADERS).json()["version"] == body["experiment_version"]
    assert again.get("/v1/scenes/transfer/ruleset",
                     headers=ADMIN_HEADERS).json()["version"] == body["ruleset_version"]
    assert again.post("/v1/scenes/transfer/experiments/watch/promote",
                      headers=ADMIN_HEADERS).json()["experiment_version"] is None
    assert again.get(URL, headers=ADMIN_HEADERS).status_code == 404


def test_promote_is_atomic_under_concurrent_requests(client: TestClient) -> None:
    before = client.put(URL, headers=ADMIN_HEADERS, json=spec()).json()["version"]
    champion = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def traffic(worker: int) -> None:
        i = 0
        while not stop.is_set() or i < 30:
            i += 1
            seen.append(evaluate(client, worker * 1_000_000 + i, f"A-{i % 50}"))

    threads = [threading.Thread(target=traffic, args=(w,)) for w in (1, 2)]
    for thread in threads:
        thread.start()
    # decisions of the experiment before the promotion, however the threads are scheduled
    assert eventually(lambda: len(seen) >= 10, 10.0, 0.01)
    promoted = client.post("/v1/scenes/transfer/experiments/strict/promote",
                           headers=ADMIN_HEADERS).json()
    stop.set()
    for thread in threads:
        thread.join()
    lineups = {
        before: ({champion["version"]}, {CHAMPION, "strict", "watch"}),
        promoted["experiment_version"]: ({promoted["ruleset_version"]}, {CHAMPION, "watch"})}
    for decision in seen:
        champions, arms = lineups[decision["experiment"]]
        versions = {decision["arm"]: decision["ruleset_version"],
                    **{arm: other["version"] for arm, other in decision["arms"].items()}}
        assert set(versions) == arms
        assert versions[CHAMPION] in champions
    assert {d["experiment"] for d in seen} == set(lineups)


def test_the_split_over_20000_accounts_is_within_2_percent() -> None:
    parsed = parse_experiment({"key": "pay_account", "salt": "2026-12", "split": {
        CHAMPION: 70, "strict": 15, "loose": 15}, "challengers": {
            "strict": {"rules": []}, "loose": {"rules": []}}}, "transfer")
    assert parsed is not None
    names = ExprNames(features=frozenset(), lists=frozenset(), patterns=frozenset(),
                      models=frozenset(), allow_features=True)
    experiment = Experiment.build(parsed, "transfer", names, Policy.from_dict({}))
    counts = Counter(experiment.assign({"pay_account": f"acct-{i}"}) for i in range(20_000))
    for arm, share in parsed.split.items():
        assert abs(counts[arm] / 20_000 * 100 - share) <= 2.0, counts


def test_an_account_keeps_its_arm_across_a_restart(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    client.put(URL, headers=ADMIN_HEADERS, json=spec())
    first = {f"A-{i}": evaluate(client, i, f"A-{i}")["arm"] for i in range(40)}
    assert set(first.values()) == {CHAMPION, "strict"}
    client.__exit__(None, None, None)
    again = make_client()
    second = {f"A-{i}": evaluate(again, 100 + i, f"A-{i}")["arm"] for i in range(40)}
    assert second == first


def test_the_api_and_the_cli_give_the_same_report(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    client = make_client()
    client.put(URL, headers=ADMIN_HEADERS, json=spec())
    for i in range(30):
        evaluate(client, i, f"A-{i % 7}", amount=40.0 * i)
    client.post("/v1/labels", headers=ADMIN_HEADERS, json=[
        {"event_id": f"e{i}", "label": "fraud" if i % 4 == 0 else "legit"} for i in range(30)])
    api = client.get("/v1/scenes/transfer/experiments", headers=ADMIN_HEADERS,
                     params={"since": T0 + 5000}).json()
    assert api["experiments"][0]["comparison"]["events"] == 25
    assert api["experiments"][0]["comparison"]["money"]["positive_amount"] == sum(
        40.0 * i for i in range(8, 30, 4))
    client.__exit__(None, None, None)
    result = CliRunner().invoke(cli_app, [
        "experiments", "report", "--scene", "transfer", "--since", str(T0 + 5000),
        "--state-dir", str(tmp_path / "state"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    assert cli["experiments"] == api["experiments"]
    text = CliRunner().invoke(cli_app, ["experiments", "report", "--scene", "transfer",
                                        "--state-dir", str(tmp_path / "state")])
    assert text.exit_code == 0 and "Answered events" in text.stdout


def test_a_config_reload_takes_a_changed_experiment_and_a_bad_one_changes_nothing(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    import yaml


    config = tmp_path / "config.yaml"
    raw = example_config()
    config.write_text(yaml.safe_dump(raw))
    client = make_client(config=config)
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    assert client.get(URL, headers=ADMIN_HEADERS).status_code == 404
    raw["scenes"]["transfer"]["experiment"] = spec()
    config.write_text(yaml.safe_dump(raw))
    assert rt.reload_config() == ["transfer experiment"]
    live = client.get(URL, headers=ADMIN_HEADERS).json()["version"]
    assert evaluate(client, 1, "A-1")["experiment"] == live
    # a bad experiment refuses the whole reload: the new champion rule stays out too
    raw["scenes"]["transfer"]["rules"].append(
        {"id": "everything", "when": "amount >= 0", "action": "review"})
    raw["scenes"]["transfer"]["experiment"] = spec(split={"champion": 10, "strict": 10})
    champion = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
    config.write_text(yaml.safe_dump(raw))
    assert rt.reload_config() == []
    assert client.get("/v1/scenes/transfer/ruleset",
                      headers=ADMIN_HEADERS).json()["version"] == champion["version"]
    del raw["scenes"]["transfer"]["experiment"]
    config.write_text(yaml.safe_dump(raw))
    assert set(rt.reload_config()) == {"transfer", "transfer experiment"}
    assert client.get(URL, headers=ADMIN_HEADERS).status_code == 404
