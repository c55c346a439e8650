"""The console's experiments page in process: the live experiment, the comparison of a
small known stream (the numbers of GET /v1/scenes/{scene}/experiments, and the values
the stream must give), charts' data, promote and stop through the confirmation forms,
the put form, CSRF, escaping and odd input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riskengine.batch.report import percent
from tests.console.conftest import csrf_of
from tests.console.pages import chart, row, section, tables
from tests.service.helpers import ADMIN_HEADERS, T0, transfer

XSS = "<script>alert('x')</script>"
PAGE = "/console/experiments?scene=transfer"
STRICT = [{"id": "big", "when": "amount >= 100", "action": "reject", "score": 100,
           "reason": XSS}]
WATCH = [{"id": "any_amount", "when": "amount >= 0", "score": 5}]
EVENTS = 20
LABELS = {"e0": "fraud", "e1": "legit", "e2": "fraud", "e3": "fraud"}


def spec(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": "pay_account", "salt": "t1", "split": {"champion": 50, "strict": 50},
        "challengers": {"strict": {"mode": "decide", "rules": STRICT},
                        "watch": {"mode": "shadow", "rules": WATCH}}}
    body.update(changes)
    return body


def start(client: TestClient, body: dict[str, Any] | None = None) -> str:
    put = client.put("/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS,
                     json=body or spec())
    assert put.status_code == 200, put.text
    version: str = put.json()["version"]
    return version


def send_stream(client: TestClient) -> None:
    """20 transfers of four accounts; the even ones (150) are what `strict` rejects."""
    for i in range(EVENTS):
        event = transfer(i, pay_account=f"A{i % 4}", amount=150.0 if i % 2 == 0 else 50.0)
        assert client.post("/v1/transfer/evaluate", json=event).status_code == 200
    labels = [{"event_id": e, "label": label, "time": T0} for e, label in LABELS.items()]
    assert client.post("/v1/labels", headers=ADMIN_HEADERS, json=labels).status_code == 200


def api_report(client: TestClient) -> dict[str, Any]:
    response = client.get("/v1/scenes/transfer/experiments", headers=ADMIN_HEADERS)
    assert response.status_code == 200
    report: dict[str, Any] = response.json()
    return report


@pytest.fixture
def running(console: TestClient) -> str:
    version = start(console)
    send_stream(console)
    return version


def test_the_page_shows_the_live_experiment(console: TestClient, running: str) -> None:
    page = console.get(PAGE)
    assert page.status_code == 200
    assert f'id="live-version">{running}<' in page.text
    live = console.get("/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS).json()
    arms = tables(page.text.replace('<table id="arms">', '<h3>arms</h3><table>'))["arms"]
    assert [r[:4] for r in arms[1:]] == [
        ["champion", "decide", "50 %", live["ruleset_versions"]["champion"]],
        ["strict", "decide", "50 %", live["ruleset_versions"]["strict"]],
        ["watch", "shadow", "—", live["ruleset_versions"]["watch"]]]
    assert page.text.count("Promote…") == 2  # the challengers, not the champion
    assert "Stop the experiment…" in page.text


def test_the_comparison_shows_the_numbers_of_the_stream(console: TestClient,
                                                        running: str) -> None:
    report = api_report(console)
    (tally,) = report["experiments"]
    doc = tally["comparison"]
    # What the stream must give, independently of how it is shown:
    assert doc["events"] == EVENTS and report["live_experiment"] == running
    assert doc["decisions"]["champion"]["accept"] == EVENTS
    assert doc["decisions"]["strict"]["reject"] == EVENTS // 2
    assert doc["transitions"]["strict"] == [{"from": "accept", "to": "reject", "count": 10,
                                             "samples": ["e0", "e2", "e4", "e6", "e8"]}]
    assert doc["detection"]["strict"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8}
    assert doc["money"]["caught"]["strict"] == 300.0
    html = section(console.get(PAGE).text, f"experiment-{running}")
    shown = tables(html)
    mix = shown["Decisions per ruleset"]
    for decision in ("accept", "review", "reject"):
        cells = row(mix, decision)
        for arm in ("champion", "strict", "watch"):
            assert cells[arm] == f"{doc['decisions'][arm][decision]:,}", (decision, arm)
    assert row(mix, "reject")["strict − champion"] == "+10"
    steps = shown["Decisions that change against champion"]
    assert row(steps, "strict")["events"] == "10"
    for event_id in ("e0", "e2", "e4", "e6", "e8"):
        assert f'href="/console/decision?id={event_id}">{event_id}</a>' in html
    hits = shown["Rule hits (active and shadow)"]
    assert row(hits, "big")["hits strict"] == "10"
    assert row(hits, "any_amount")["hits watch"] == "20"
    answered = shown["Answered events and their latency (ms)"]
    for arm in ("champion", "strict", "watch"):
        cells = row(answered, arm)
        assert cells["answered"] == f"{doc['answered'][arm]:,}"
        for q in ("p50", "p99"):
            value = doc["latency_ms"][arm][q]
            assert cells[q] == ("–" if value is None else f"{value:.3f}")
    assert sum(doc["answered"].values()) == EVENTS
    detection = shown["Precision and recall against the label"]
    assert row(detection, "strict")["precision"] == percent(1.0) == "100.0%"
    assert row(detection, "strict")["recall"] == percent(2 / 3) == "66.7%"
    assert row(detection, "strict")["F1"] == "0.800"
    assert row(detection, "champion")["recall"] == "0.0%"
    money = shown["Money of the positives: caught (review or reject) and blocked (reject)"]
    assert row(money, "strict")["caught"] == "300.00"
    assert row(money, "champion")["caught"] == "0.00"


def test_the_charts_carry_the_report(console: TestClient, running: str) -> None:
    doc = api_report(console)["experiments"][0]["comparison"]
    html = console.get(PAGE).text
    mix = chart(html, f"decision-mix-{running}")
    assert mix["kind"] == "bars" and mix["categories"] == ["accept", "review", "reject"]
    assert {s["label"]: s["values"] for s in mix["series"]} == {
        arm: [doc["decisions"][arm][d] for d in mix["categories"]] for arm in doc["arms"]}
    hits = chart(html, f"rule-hits-{running}")
    assert hits["categories"] == [rule["rule_id"] for rule in doc["rules"]]
    by_arm = {s["label"]: dict(zip(hits["categories"], s["values"], strict=True))
              for s in hits["series"]}
    assert by_arm["strict"]["big"] == 10 and by_arm["watch"]["any_amount"] == 20
    assert by_arm["champion"]["big"] == 0
    assert '<script src="/console/static/charts.js"></script>' in html
    assert console.get("/console/static/charts.js").status_code == 200


def test_promote_through_the_confirmation_changes_the_champion(console: TestClient,
                                                               running: str) -> None:
    strict_version = console.get("/v1/scenes/transfer/experiment",
                                 headers=ADMIN_HEADERS).json()["ruleset_versions"]["strict"]
    confirm = console.get("/console/experiments/confirm",
                          params={"scene": "transfer", "action": "promote", "arm": "strict"})
    assert confirm.status_code == 200 and "Yes, promote strict" in confirm.text
    assert f'name="version" value="{running}"' in confirm.text
    promoted = console.post("/console/experiments/promote", data={
        "csrf": csrf_of(console, PAGE), "scene": "transfer", "arm": "strict",
        "version": running})
    assert promoted.status_code == 303
    champion = console.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
    assert champion["version"] == strict_version
    assert [r["id"] for r in champion["rules"]] == ["big"]
    left = console.get("/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS).json()
    assert left["arms"] == ["champion", "watch"]
    decided = console.post("/v1/transfer/evaluate", json=transfer(
        50, pay_account="A9", amount=500.0)).json()
    assert decided["decision"] == "reject" and decided["ruleset_version"] == strict_version
    page = console.get(promoted.headers["location"])
    assert f"strict was promoted: ruleset version {strict_version} is the champion" in page.text


def test_stop_through_the_confirmation_ends_the_experiment(console: TestClient,
                                                           running: str) -> None:
    confirm = console.get("/console/experiments/confirm",
                          params={"scene": "transfer", "action": "stop"})
    assert confirm.status_code == 200 and "Yes, stop it" in confirm.text
    stopped = console.post("/console/experiments/stop", data={
        "csrf": csrf_of(console, PAGE), "scene": "transfer", "version": running})
    assert stopped.status_code == 303
    assert console.get("/v1/scenes/transfer/experiment",
                       headers=ADMIN_HEADERS).status_code == 404
    page = console.get(stopped.headers["location"])
    assert "No experiment is running" in page.text
    assert f"experiment {running} was stopped" in page.text
    assert f'id="experiment-{running}"' in page.text  # its comparison stays


def test_a_form_for_another_version_changes_nothing(console: TestClient, running: str) -> None:
    newer = start(console, spec(salt="t2"))
    csrf = csrf_of(console, PAGE)
    for action, extra in (("promote", {"arm": "strict"}), ("stop", {})):
        stale = console.post(f"/console/experiments/{action}", data={
            "csrf": csrf, "scene": "transfer", "version": running, **extra})
        assert stale.status_code == 409, action
        assert f"is {newer} now" in stale.text
    live = console.get("/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS).json()
    assert live["version"] == newer and live["arms"] == ["champion", "strict", "watch"]


def test_forged_forms_are_refused(console: TestClient, running: str) -> None:
    forms = [("/console/experiments/promote", {"scene": "transfer", "arm": "strict",
                                               "version": running}),
             ("/console/experiments/stop", {"scene": "transfer", "version": running}),
             ("/console/experiments/put", {"scene": "transfer",
                                           "experiment": json.dumps(spec(salt="forged"))})]
    for path, data in forms:
        assert console.post(path, data=data).status_code == 403, path
        assert console.post(path, data={**data, "csrf": "forged"}).status_code == 403, path
    console.cookies.clear()
    for path, data in forms:
        assert console.post(path, data=data).status_code == 403, path
    live = console.get("/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS).json()
    assert live["version"] == running and live["arms"] == ["champion", "strict", "watch"]


def test_the_put_form_starts_an_experiment(console: TestClient) -> None:
    page = console.get(PAGE)
    assert "No experiment is running" in page.text and "Start one" in page.text
    started = console.post("/console/experiments/put", data={
        "csrf": csrf_of(console, PAGE), "scene": "transfer", "experiment": json.dumps(spec())})
    assert started.status_code == 303
    live = console.get("/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS).json()
    assert live["arms"] == ["champion", "strict", "watch"]
    assert f"experiment {live['version']} is live" in console.get(
        started.headers["location"]).text


@pytest.mark.parametrize(("text", "named"), [
    ("{not json", "not JSON"),
    (json.dumps(spec(split={"champion": 60, "strict": 30})), "add up to 90"),
    (json.dumps(spec(challengers={"strict": {"mode": "decide", "rules": [
        {"id": "broken", "when": "amount >=", "action": "reject"}]}})), "broken"),
    (json.dumps(spec(key="no_such_field")), "no_such_field"),
    (json.dumps(spec(challengers={"strict": {"mode": "decide",
                                             "ruleset_version": "r000000000000"}})),
     "r000000000000"),
    (json.dumps([spec()]), "mapping"),
    ("[" * 100_000, "not JSON"),
    ("", "not JSON"),
])
def test_a_refused_experiment_shows_the_error_and_keeps_the_live_one(
        console: TestClient, running: str, text: str, named: str) -> None:
    refused = console.post("/console/experiments/put", data={
        "csrf": csrf_of(console, PAGE), "scene": "transfer", "experiment": text})
    assert refused.status_code == 422
    assert 'id="experiment-error"' in refused.text and named in refused.text
    assert console.get("/v1/scenes/transfer/experiment",
                       headers=ADMIN_HEADERS).json()["version"] == running


def test_script_text_is_shown_as_text(console: TestClient) -> None:
    version = start(console, spec(salt=XSS))
    send_stream(console)
    page = console.get(PAGE)
    assert page.status_code == 200
    assert XSS not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text  # salt and reason
    assert f'id="live-version">{version}<' in page.text
    refused = console.post("/console/experiments/put", data={
        "csrf": csrf_of(console, PAGE), "scene": "transfer",
        "experiment": json.dumps(spec(key=XSS))})
    assert refused.status_code == 422 and XSS not in refused.text


def test_odd_requests_get_a_clear_4xx(console: TestClient, running: str) -> None:
    csrf = csrf_of(console, PAGE)
    pages = [
        ("/console/experiments?scene=nope", 404),
        ("/console/experiments?scene=" + "x" * 5000, 422),
        ("/console/experiments?scene=transfer&since=yesterday", 422),
        ("/console/experiments?scene=transfer&until=" + "9" * 30, 422),
        ("/console/experiments/confirm?scene=transfer&action=explode", 422),
        ("/console/experiments/confirm?scene=transfer&action=promote&arm=ghost", 404),
        ("/console/experiments/confirm?scene=transfer&action=promote&arm=champion", 404),
        ("/console/experiments/confirm?scene=transfer&action=promote", 422),
        ("/console/experiments/confirm?scene=nope&action=stop", 404),
    ]
    for url, status in pages:
        response = console.get(url)
        assert response.status_code == status, (url, response.text[:300])
        assert "<h1>Error" in response.text
    posts = [
        ("/console/experiments/promote", {"scene": "transfer", "arm": "ghost",
                                          "version": running}, 404),
        ("/console/experiments/promote", {"scene": "transfer", "arm": "strict"}, 422),
        ("/console/experiments/put", {"scene": "nope", "experiment": "{}"}, 404),
        ("/console/experiments/stop", {"scene": "login", "version": running}, 404),
    ]
    for path, data, status in posts:
        response = console.post(path, data={"csrf": csrf, **data})
        assert response.status_code == status, (path, data, response.text[:300])
    huge = console.post("/console/experiments/put", data={
        "csrf": csrf, "scene": "transfer", "experiment": "x" * (2 * 1024 * 1024)})
    assert huge.status_code == 413
    wrong_type = console.post("/console/experiments/put", json={"csrf": csrf})
    assert wrong_type.status_code == 415
    assert console.get("/healthz").status_code == 200


def test_the_page_without_any_experiment(console: TestClient) -> None:
    assert console.post("/v1/transfer/evaluate", json=transfer(1)).status_code == 200
    page = console.get(PAGE)
    assert page.status_code == 200
    assert 'id="no-comparison"' in page.text and 'id="without-experiment">1<' in page.text
    assert console.get("/console/experiments/confirm?scene=transfer&action=stop"
                       ).status_code == 404
