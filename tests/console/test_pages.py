"""The console's pages in process: what they show, escaping, and 4xx on odd input."""

from __future__ import annotations

import html
import json
import re

from fastapi.testclient import TestClient

from tests.console.conftest import csrf_of
from tests.service.helpers import transfer

XSS = "<script>alert('x')</script>"


def _evaluate(client: TestClient, event: dict[str, object]) -> dict[str, object]:
    response = client.post("/v1/transfer/evaluate", json=event)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _live_body(client: TestClient) -> dict[str, object]:
    live = client.get("/v1/scenes/transfer/ruleset",
                      headers={"Authorization": "Bearer admin-token-for-tests-0123456789"})
    assert live.status_code == 200
    ruleset = live.json()
    return {"rules": ruleset["rules"], "policy": ruleset["policy"]}


def _save(client: TestClient, body: object | str) -> object:
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post("/console/rules/save", data={
        "csrf": csrf_of(client, "/console/rules"), "scene": "transfer", "ruleset": text})


def test_overview_shows_rates_latency_and_top_rules(console: TestClient) -> None:
    _evaluate(console, transfer(1, device_id="dev-blocked-0001"))
    page = console.get("/console")
    assert page.status_code == 200
    assert 'hx-get="/console/overview/panel"' in page.text
    panel = console.get("/console/overview/panel")
    assert panel.status_code == 200
    assert "blocked_device" in panel.text  # the top rules
    assert "latency p50" in panel.text and "≤ " in panel.text
    assert '<script type="application/json" id="rate-data">' in panel.text


def test_static_files_are_served(console: TestClient) -> None:
    for name in ("htmx.min.js", "uPlot.iife.min.js", "console.js", "console.css"):
        assert console.get(f"/console/static/{name}").status_code == 200, name


def test_find_a_decision_by_event_id(console: TestClient) -> None:
    decided = _evaluate(console, transfer(7, device_id="dev-blocked-0002"))
    found = console.get("/console/decisions", params={"event_id": "e7"})
    assert found.status_code == 303
    page = console.get(found.headers["location"])
    assert page.status_code == 200
    assert 'id="event-id">e7<' in page.text
    assert str(decided["ruleset_version"]) in page.text
    assert "device or IP on a block list" in page.text  # the hit's reason
    assert 'id="label">none<' in page.text


def test_the_decision_page_shows_the_raw_event_escaped(console: TestClient) -> None:
    event = transfer(8, pay_account=XSS, note="\u00e9\u4e2d & <b>", amount=12.5)
    _evaluate(console, event)
    page = console.get("/console/decision", params={"id": "e8"})
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<b>" not in page.text
    found = re.search(r'<pre id="raw-event">(.*?)</pre>', page.text, re.DOTALL)
    assert found is not None
    assert json.loads(html.unescape(found.group(1))) == event
    assert '\n  &#34;amount&#34;: 12.5,\n' in found.group(1)  # pretty: indented, sorted


def test_decision_search_lists_matches(console: TestClient) -> None:
    for i in range(3):
        _evaluate(console, transfer(i))
    page = console.get("/console/decisions", params={"scene": "transfer",
                                                     "since": "2026-01-05T00:00:00Z"})
    assert page.status_code == 200
    for i in range(3):
        assert f">e{i}</a>" in page.text
    none = console.get("/console/decisions", params={"decision": "reject"})
    assert none.status_code == 200 and "No decision matches." in none.text


def test_a_label_shows_on_the_decision_page(console: TestClient) -> None:
    _evaluate(console, transfer(3))
    response = console.post("/v1/labels", json=[{"event_id": "e3", "label": "fraud"}],
                            headers={"Authorization": "Bearer admin-token-for-tests-0123456789"})
    assert response.status_code == 200, response.text
    page = console.get("/console/decision", params={"id": "e3"})
    assert 'id="label">fraud' in page.text


def test_odd_decision_input_answers_4xx_pages(console: TestClient) -> None:
    cases = [("/console/decision", {"id": "no-such-event"}, 404),
             ("/console/decision", {}, 422),
             ("/console/decision", {"id": "x" * 30_000}, 422),
             ("/console/decisions", {"scene": "no-such-scene"}, 404),
             ("/console/decisions", {"decision": "maybe"}, 422),
             ("/console/decisions", {"since": "yesterday"}, 422),
             ("/console/decisions", {"until": "9" * 40}, 422),
             ("/console/decision", {"id": XSS}, 404)]
    for path, params, status in cases:
        page = console.get(path, params=params)
        assert page.status_code == status, (path, params, page.text[:300])
        assert page.headers["content-type"].startswith("text/html")
        assert "<script>alert" not in page.text


def test_entity_shows_current_features(console: TestClient) -> None:
    _evaluate(console, transfer(1, pay_account="acct-42", amount=120.0))
    page = console.get("/console/entity", params={"scene": "transfer", "field": "pay_account",
                                                  "value": "acct-42"})
    assert page.status_code == 200
    assert 'id="entity-features"' in page.text
    assert "count(pay_account.history,1h)" in page.text


def test_odd_entity_input_answers_4xx_pages(console: TestClient) -> None:
    for params, status in [({"scene": "nope", "value": "a"}, 404),
                           ({"scene": "transfer", "field": "nope", "value": "a"}, 404),
                           ({"scene": "transfer", "field": "pay_account",
                             "value": "v" * 5000}, 422)]:
        assert console.get("/console/entity", params=params).status_code == status, params


def test_rule_syntax_error_shows_line_and_column(console: TestClient) -> None:
    body = _live_body(console)
    before = console.get("/console/rules").text
    rules = list(body["rules"])  # type: ignore[call-overload]
    rules.append({"id": "broken", "when": "amount > 10 and\n  (amount >", "score": 1,
                  "reason": "x"})
    response = _save(console, {**body, "rules": rules})
    assert response.status_code == 422  # type: ignore[attr-defined]
    text = response.text  # type: ignore[attr-defined]
    assert "rule <code>broken</code>" in text
    assert 'line <b class="line">2</b>, column <b class="column">3</b>' in text
    assert "(amount &gt;" in text  # the text stays in the editor, escaped
    live_before = before.split('id="live-version">')[1][:13]
    assert f'id="live-version">{live_before}' in console.get("/console/rules").text


def test_json_error_shows_line_and_column(console: TestClient) -> None:
    response = _save(console, '{"rules": [\n  {"id": }\n]}')
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert 'line <b class="line">2</b>' in response.text  # type: ignore[attr-defined]
    for odd in ("[]", '{"rules": 5}', '{"nope": []}', "[" * 5000 + "]" * 5000):
        assert _save(console, odd).status_code == 422, odd  # type: ignore[attr-defined]


def test_save_puts_a_version_live_and_activate_rolls_back(console: TestClient) -> None:
    body = _live_body(console)
    old = console.get("/console/rules").text.split('id="live-version">')[1][:13]
    rules = list(body["rules"])  # type: ignore[call-overload]
    rules.append({"id": "xss_reason", "when": "amount > 0", "score": 1, "reason": XSS})
    response = _save(console, {**body, "rules": rules})
    assert response.status_code == 303, response.text  # type: ignore[attr-defined]
    page = console.get(response.headers["location"])  # type: ignore[attr-defined]
    new = page.text.split('id="live-version">')[1][:13]
    assert new != old and f"version {new} is live" in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert XSS not in page.text
    decided = _evaluate(console, transfer(11))
    assert decided["ruleset_version"] == new
    decision_page = console.get("/console/decision", params={"id": "e11"})
    assert "&lt;script&gt;" in decision_page.text and XSS not in decision_page.text
    diff = console.get("/console/rules/diff", params={"scene": "transfer", "a": old, "b": new})
    assert diff.status_code == 200 and "+" in diff.text and "xss_reason" in diff.text
    csrf = csrf_of(console, "/console/rules")
    back = console.post("/console/rules/activate", data={"csrf": csrf, "scene": "transfer",
                                                         "version": old})
    assert back.status_code == 303
    assert f'id="live-version">{old}' in console.get("/console/rules").text
    assert _evaluate(console, transfer(12))["ruleset_version"] == old


def test_odd_rules_input_answers_4xx_pages(console: TestClient) -> None:
    csrf = csrf_of(console, "/console/rules")
    assert console.get("/console/rules", params={"scene": "nope"}).status_code == 404
    assert console.get("/console/rules/diff", params={"a": "r0", "b": "r1"}).status_code == 404
    assert console.post("/console/rules/activate", data={
        "csrf": csrf, "scene": "transfer", "version": "r000000000000"}).status_code == 404
    assert console.post("/console/rules/activate", data={
        "csrf": csrf, "scene": "nope", "version": "r0"}).status_code == 404
    huge = console.post("/console/rules/save", data={"csrf": csrf, "scene": "transfer",
                                                     "ruleset": "x" * (2 * 1024 * 1024)})
    assert huge.status_code == 413
    raw = console.post("/console/rules/save", content=b'{"rules": []}',
                       headers={"content-type": "application/json"})
    assert raw.status_code == 415
    bad_utf8 = console.post("/console/rules/save", content=b"csrf=\xff\xfe",
                            headers={"content-type": "application/x-www-form-urlencoded"})
    assert bad_utf8.status_code == 400


def test_lists_add_and_remove(console: TestClient) -> None:
    csrf = csrf_of(console, "/console/lists")
    added = console.post("/console/lists/add", data={
        "csrf": csrf, "name": "blocked_ips", "value": "192.0.2.9",
        "expires": "2031-01-01T00:00:00Z", "reason": XSS})
    assert added.status_code == 303
    page = console.get("/console/lists", params={"name": "blocked_ips"})
    assert "192.0.2.9" in page.text and "2031-01-01 00:00:00" in page.text
    assert XSS not in page.text and "&lt;script&gt;" in page.text
    decided = _evaluate(console, transfer(20, ip="192.0.2.9"))
    assert decided["decision"] == "reject"
    removed = console.post("/console/lists/remove", data={
        "csrf": csrf, "name": "blocked_ips", "value": "192.0.2.9"})
    assert removed.status_code == 303
    assert "192.0.2.9" not in console.get("/console/lists?name=blocked_ips").text


def test_odd_list_input_answers_4xx_pages(console: TestClient) -> None:
    csrf = csrf_of(console, "/console/lists")
    assert console.get("/console/lists", params={"name": "nope"}).status_code == 404
    cases = [({"name": "nope", "value": "a"}, 404),
             ({"name": "blocked_ips", "value": ""}, 422),
             ({"name": "blocked_ips", "value": "a", "expires": "soon"}, 422),
             ({"name": "blocked_ips", "value": "a", "reason": "r" * 5000}, 422),
             ({"name": "blocked_ips", "value": "v" * 70_000}, 413)]
    for data, status in cases:
        response = console.post("/console/lists/add", data={"csrf": csrf, **data})
        assert response.status_code == status, data
    gone = console.post("/console/lists/remove", data={"csrf": csrf, "name": "blocked_ips",
                                                       "value": "not-there"})
    assert gone.status_code == 404
    assert console.get("/healthz").status_code == 200  # still serving
