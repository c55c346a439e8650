"""The console's backtest pages in process: a report the CLI writes into the service's
reports directory is listed and shown with the CLI's tables and the charts' data; a
stored ruleset version backtested on the decision log's events from the page; the
directory setting; path traversal, corrupt reports and odd forms answered with a 4xx."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from riskengine.batch.report_store import ReportStore
from riskengine.console.backtest_pages import BacktestPages
from riskengine.exceptions import ConfigError
from riskengine.service import ServiceSettings, create_app
from riskengine.service.log_backtests import BacktestJob, LogBacktests
from riskengine.service.settings import BACKTESTS_DIR
from tests.cli.clitools import run
from tests.console.conftest import csrf_of
from tests.console.pages import chart, row, tables
from tests.example_config import example_config
from tests.service.helpers import ADMIN, ADMIN_HEADERS, T0, transfer
from tests.waiting import eventually

XSS = "<script>alert('x')</script>"
BIG = {"id": "big", "when": "amount >= 100", "action": "reject", "score": 100,
       "reason": XSS}
DAY_MS = 86_400_000


def live_body(client: TestClient) -> dict[str, Any]:
    live = client.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
    return {"rules": live["rules"], "policy": live["policy"]}


def reports_dir(client: TestClient) -> Path:
    directory: Path = client.app.state.runtime.settings.backtests  # type: ignore[attr-defined]
    return directory


def cli_report(client: TestClient, tmp_path: Path, name: str = "cli-run") -> dict[str, Any]:
    """`riskengine backtest` of 12 labelled transfers over two days (the even ones 150,
    which the candidate's added rule rejects) into the service's reports directory."""
    lines = []
    for i in range(12):
        event = transfer(i, pay_account=f"P{i % 3}", amount=150.0 if i % 2 == 0 else 50.0,
                         timestamp=T0 + (i // 6) * DAY_MS + i * 1000,
                         label="fraud" if i in (0, 2, 3) else "legit")
        lines.append(json.dumps(event))
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    body = live_body(client)
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({**body, "rules": [*body["rules"], BIG]}), encoding="utf-8")
    reports_dir(client).mkdir(parents=True, exist_ok=True)
    result = run("backtest", source, "--candidate", candidate, "--report",
                 reports_dir(client) / name)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads((reports_dir(client) / name / "report.json").read_text())
    return doc


def test_a_cli_report_in_the_directory_is_listed_and_shown(console: TestClient,
                                                           tmp_path: Path) -> None:
    doc = cli_report(console, tmp_path)
    assert doc["events"] == 12 and doc["decisions"]["candidate"]["reject"] >= 6
    listing = console.get("/console/backtests")
    assert listing.status_code == 200
    assert 'href="/console/backtest?name=cli-run">cli-run</a>' in listing.text
    assert str(reports_dir(console)) in listing.text
    page = console.get("/console/backtest?name=cli-run")
    assert page.status_code == 200
    shown = tables(page.text)
    overview = dict(r for r in shown["Backtest"] if len(r) == 2)
    assert overview["events decided"] == "12" and overview["rows read"] == "12"
    candidate_version = doc["run"]["versions"]["candidate"]
    assert overview["candidate ruleset"].startswith(f"version {candidate_version}")
    mix = shown["Decisions per ruleset"]
    for decision in ("accept", "review", "reject"):
        for arm in ("live", "candidate"):
            assert row(mix, decision)[arm] == f"{doc['decisions'][arm][decision]:,}"
    assert row(shown["Rule hits (active and shadow)"], "big")["hits candidate"] == "6"
    assert "Precision and recall against the label" in shown
    assert row(shown["Precision and recall against the label"], "candidate")["recall"] == \
        "66.7%"  # e0 and e2 of the three fraud events are 150
    days = shown["Alert rate per UTC day"]
    assert [r[0] for r in days[1:]] == ["2026-01-05", "2026-01-06"]
    # CLI backtests' events need not be in the decision log: their ids are not linked
    assert 'href="/console/decision?id=' not in page.text
    decision_mix = chart(page.text, "decision-mix")
    assert {s["label"]: s["values"] for s in decision_mix["series"]} == {
        arm: [doc["decisions"][arm][d] for d in decision_mix["categories"]]
        for arm in ("live", "candidate")}
    alert_rate = chart(page.text, "alert-rate")
    assert alert_rate["x"] == [T0 // 1000, (T0 + DAY_MS) // 1000]
    assert alert_rate["series"][1]["values"] == [
        round(100 * day["alert_rate"]["candidate"], 4) for day in doc["daily"]]
    assert chart(page.text, "rule-hits")["categories"] == [r["rule_id"] for r in doc["rules"]]


def _run_form(client: TestClient, **fields: str) -> Any:
    return client.post("/console/backtests/run", data={
        "csrf": csrf_of(client, "/console/backtests"), "scene": "transfer", **fields})


def _store_candidate(client: TestClient) -> str:
    body = live_body(client)
    stored = client.put("/v1/scenes/transfer/ruleset?activate=false", headers=ADMIN_HEADERS,
                        json={**body, "rules": [*body["rules"], BIG]})
    assert stored.status_code == 200, stored.text
    version: str = stored.json()["version"]
    return version


def _finished(client: TestClient) -> str:
    """The report name of the page's backtest, once it finished."""
    assert eventually(lambda: "job-state\">finished<" in client.get(
        "/console/backtests/job").text, 60.0, 0.05), client.get("/console/backtests/job").text
    fragment = client.get("/console/backtests/job").text
    start = fragment.index("/console/backtest?name=") + len("/console/backtest?name=")
    return fragment[start:fragment.index('"', start)]


def test_backtest_a_stored_version_on_logged_events(console: TestClient) -> None:
    for i in range(30):
        event = transfer(i, pay_account=f"A{i % 3}", amount=150.0 if i % 3 == 0 else 50.0)
        assert console.post("/v1/transfer/evaluate", json=event).status_code == 200
    assert console.post("/v1/labels", headers=ADMIN_HEADERS, json=[
        {"event_id": "e12", "label": "fraud"}, {"event_id": "e13", "label": "fraud"}]
    ).status_code == 200
    version = _store_candidate(console)
    rules = console.get("/console/rules")
    assert (f'href="/console/backtests?scene=transfer&amp;version={version}#run">'
            "Backtest this version</a>") in rules.text
    form = console.get(f"/console/backtests?scene=transfer&version={version}")
    assert f'<option value="{version}" selected>' in form.text
    started = _run_form(console, version=version, since=str(T0 + 10_000),
                        until=str(T0 + 25_000))
    assert started.status_code == 303, started.text
    name = _finished(console)
    page = console.get("/console/backtest", params={"name": name})
    assert page.status_code == 200
    # the live arm decides as the service did: compare with the logged decisions
    logged = {d["event_id"]: d for d in console.get(
        "/v1/decisions", params={"scene": "transfer", "limit": 100},
        headers=ADMIN_HEADERS).json()}
    period = [f"e{i}" for i in range(10, 25)]
    live_mix = Counter(logged[e]["decision"] for e in period)
    candidate_mix = Counter("reject" if int(e[1:]) % 3 == 0 else logged[e]["decision"]
                            for e in period)
    shown = tables(page.text)
    mix = shown["Decisions per ruleset"]
    for decision in ("accept", "review", "reject"):
        assert row(mix, decision)["live"] == str(live_mix[decision]), decision
        assert row(mix, decision)["candidate"] == str(candidate_mix[decision]), decision
    assert row(shown["Rule hits (active and shadow)"], "big")["hits candidate"] == "5"
    assert dict(r for r in shown["Backtest"] if len(r) == 2)["events decided"] == "15"
    # logged events: the sample ids link to their decisions
    assert 'href="/console/decision?id=e12">e12</a>' in page.text
    assert row(shown["Precision and recall against the label"], "candidate")["recall"] == \
        "50.0%"  # e12 is rejected (150), e13 is not
    listing = console.get("/console/backtests")
    assert f'href="/console/backtest?name={name}">{name}</a>' in listing.text
    report = reports_dir(console) / name
    assert {"report.json", "report.md", "errors.jsonl"} <= {p.name for p in report.iterdir()}
    capped = _run_form(console, version=version, limit="4")
    assert capped.status_code == 303
    second = _finished(console)
    assert second != name
    doc = json.loads((reports_dir(console) / second / "report.json").read_text())
    assert doc["events"] == 4


def test_one_backtest_at_a_time(console: TestClient) -> None:
    version = _store_candidate(console)
    pages = console.app.state.console.pages  # type: ignore[attr-defined]
    runner = next(p.runner for p in pages if isinstance(p, BacktestPages))
    assert isinstance(runner, LogBacktests)
    runner.job = BacktestJob("busy", "transfer", version, "r", None, None, 10, T0)
    refused = _run_form(console, version=version)
    assert refused.status_code == 409 and "backtest busy is running" in refused.text
    polled = console.get("/console/backtests/job", headers={"HX-Request": "true"})
    assert 'hx-get="/console/backtests/job"' in polled.text and "running" in polled.text
    assert "HX-Refresh" not in polled.headers
    runner.job.state = "finished"
    done = console.get("/console/backtests/job", headers={"HX-Request": "true"})
    assert done.headers["HX-Refresh"] == "true"  # the polling page reloads its list
    assert 'hx-get="/console/backtests/job"' not in done.text
    assert _run_form(console, version=version).status_code == 303


@pytest.mark.parametrize(("fields", "status", "named"), [
    ({"version": "r000000000000"}, 404, "no ruleset version"),
    ({"version": ""}, 422, "version is required"),
    ({"since": "yesterday"}, 422, "since"),
    ({"since": str(T0 + 5000), "until": str(T0)}, 422, "since must be before until"),
    ({"limit": "0"}, 422, "events must be"),
    ({"limit": "-5"}, 422, "events must be"),
    ({"limit": "lots"}, 422, "events must be"),
    ({"limit": "99999999999"}, 422, "events must be"),
    ({"scene": "nope"}, 404, "unknown scene"),
])
def test_a_refused_backtest_form_says_why(console: TestClient, fields: dict[str, str],
                                          status: int, named: str) -> None:
    version = _store_candidate(console)
    response = _run_form(console, **{"version": version, **fields})
    assert response.status_code == status, response.text[:500]
    assert named in response.text
    assert not reports_dir(console).exists() or not any(reports_dir(console).iterdir())


def test_a_forged_backtest_form_is_refused(console: TestClient) -> None:
    version = _store_candidate(console)
    data = {"scene": "transfer", "version": version}
    assert console.post("/console/backtests/run", data=data).status_code == 403
    assert console.post("/console/backtests/run",
                        data={**data, "csrf": "forged"}).status_code == 403
    huge = console.post("/console/backtests/run", data={
        **data, "csrf": csrf_of(console, "/console/backtests"), "since": "x" * 20_000})
    assert huge.status_code == 413
    assert "No backtest started here" in console.get("/console/backtests/job").text


@pytest.mark.parametrize("name", [
    "../state", "..", "../../etc/passwd", "/etc/passwd", "a/b", ".hidden", "..%2F..",
    "%2e%2e", "x" * 300, "", "nope", "cli-run/../cli-run", "cli-run\x00", "cli run",
])
def test_report_names_stay_in_the_directory(console: TestClient, tmp_path: Path,
                                            name: str) -> None:
    cli_report(console, tmp_path)
    response = console.get("/console/backtest", params={"name": name})
    assert response.status_code in (404, 422), (name, response.status_code)
    assert "<h1>Error" in response.text


def test_a_link_out_of_the_directory_is_not_followed(console: TestClient,
                                                     tmp_path: Path) -> None:
    doc = cli_report(console, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "report.json").write_text(json.dumps(doc), encoding="utf-8")
    os.symlink(outside, reports_dir(console) / "linked")
    inner = reports_dir(console) / "inner"
    inner.mkdir()
    os.symlink(outside / "report.json", inner / "report.json")
    for name in ("linked", "inner"):
        assert console.get("/console/backtest", params={"name": name}).status_code == 404
    assert console.get("/console/backtest?name=cli-run").status_code == 200


@pytest.mark.parametrize(("content", "named"), [
    (b"{not json", "is not JSON"),
    (b"\xff\xfe", "is not UTF-8"),
    (b"[]", "no JSON object"),
    (b"{}", "no &#39;run&#39; section"),
    (b"[" * 100_000 + b"]" * 100_000, "report.json"),
])
def test_a_corrupt_report_is_a_clear_error(console: TestClient, tmp_path: Path,
                                           content: bytes, named: str) -> None:
    broken = reports_dir(console) / "broken"
    broken.mkdir(parents=True)
    (broken / "report.json").write_bytes(content)
    page = console.get("/console/backtest?name=broken")
    assert page.status_code == 422 and named in page.text
    listing = console.get("/console/backtests")
    assert listing.status_code == 200 and "broken" in listing.text


def test_a_report_with_wrong_sections_or_script_text(console: TestClient,
                                                     tmp_path: Path) -> None:
    doc = cli_report(console, tmp_path)
    for name, changed in (("typed", {**doc, "decisions": []}),
                          ("arms", {**doc, "arms": ["someone"]}),
                          ("rules", {**doc, "rules": [{"rule_id": 1}]}),
                          ("hostile", {**doc, "run": {**doc["run"], "input": XSS,
                                                      "scene": XSS}})):
        directory = reports_dir(console) / name
        directory.mkdir()
        (directory / "report.json").write_text(json.dumps(changed), encoding="utf-8")
    for name in ("typed", "arms", "rules"):
        page = console.get("/console/backtest", params={"name": name})
        assert page.status_code == 422, name
        assert "<h1>Error 422</h1>" in page.text
    hostile = console.get("/console/backtest?name=hostile")
    assert hostile.status_code == 200
    assert XSS not in hostile.text and "&lt;script&gt;" in hostile.text
    listing = console.get("/console/backtests")
    assert listing.status_code == 200 and XSS not in listing.text


def test_the_report_page_needs_a_session(anonymous: TestClient) -> None:
    assert anonymous.get("/console/backtests").status_code == 303
    assert anonymous.get("/console/backtest?name=x").status_code == 303
    assert anonymous.post("/console/backtests/run", data={"scene": "transfer"}
                          ).status_code == 403


# -- the directory setting -----------------------------------------------------------------


def test_the_reports_directory_setting(tmp_path: Path) -> None:
    assert ServiceSettings(state_dir=tmp_path).backtests == tmp_path / BACKTESTS_DIR
    config = tmp_path / "conf"
    config.mkdir()
    section = ServiceSettings(state_dir=tmp_path).with_service_section(
        {"backtests": "reports"}, config)
    assert section.backtests == config / "reports"
    flagged = ServiceSettings(backtests_dir=tmp_path / "flag").with_service_section(
        {"backtests": "reports"}, config)
    assert flagged.backtests == tmp_path / "flag"  # the flag wins
    assert ServiceSettings.from_env(section.to_env()).backtests == config / "reports"
    for bad in (5, "", ["x"], {"dir": "x"}):
        with pytest.raises(ConfigError, match="backtests"):
            ServiceSettings().with_service_section({"backtests": bad})


def test_a_config_names_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISKENGINE_ADMIN_TOKEN", raising=False)
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({**example_config(), "service": {
        "backtests": "my-reports"}}), encoding="utf-8")
    app = create_app(ServiceSettings(config=config, state_dir=tmp_path / "state",
                                     admin_token=ADMIN, watch_config=False))
    with TestClient(app, follow_redirects=False) as client:
        assert client.post("/console/login", data={"token": ADMIN}).status_code == 303
        assert str(tmp_path / "my-reports") in client.get("/console/backtests").text


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    app = create_app(ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                                     watch_config=False, backtests_dir=blocker))
    with TestClient(app, follow_redirects=False) as client:
        assert client.post("/console/login", data={"token": ADMIN}).status_code == 303
        listing = client.get("/console/backtests")
        assert listing.status_code == 503 and "cannot list" in listing.text
        version = _store_candidate(client)
        response = client.post("/console/backtests/run", data={
            "csrf": csrf_of(client, "/console/rules"), "scene": "transfer",
            "version": version})
        assert response.status_code == 422, response.text[:300]
        assert "cannot make the backtest reports&#39; directory" in response.text
        assert client.get("/healthz").status_code == 200


def test_report_store_names(tmp_path: Path) -> None:
    store = ReportStore(tmp_path)
    assert store.new_name("transfer-r1", T0) == "transfer-r1-20260105T000000Z"
    (tmp_path / "transfer-r1-20260105T000000Z").mkdir()
    assert store.new_name("transfer-r1", T0) == "transfer-r1-20260105T000000Z-2"
    assert store.new_name("../../x y", T0) == "_.._x_y-20260105T000000Z"
    assert store.names() == []  # a directory without report.json is not a report
