"""The console in Chromium against a real `riskengine serve` process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.browser import CHROMIUM, XSS, evaluate, served, sign_in
from tests.service.helpers import ADMIN_HEADERS, transfer
from tests.service.process import ServiceProcess

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (scripts/install_services.sh)",
                allow_module_level=True)



@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("console")
    with served(root / "state", extra=["--backtests-dir", str(root / "reports")]) as running:
        yield running





def test_a_bad_token_is_refused(service: ServiceProcess, page: Page) -> None:
    sign_in(page, service.url, "wrong-token")
    expect(page.get_by_role("alert")).to_have_text("That is not the admin token.")
    page.goto(service.url + "/console/rules")
    assert page.url.endswith("/console/login")


def test_sign_in_and_find_a_decision_by_event_id(service: ServiceProcess, page: Page) -> None:
    evaluate(service, transfer(101, device_id="dev-blocked-0001", pay_account="acct-b1"))
    sign_in(page, service.url)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#rate-chart canvas")).to_have_count(1)  # uPlot drew
    page.click("text=Decisions")
    page.fill("input[name=event_id]", "e101")
    page.click("text=Open")
    expect(page.locator("#event-id")).to_have_text("e101")
    expect(page.locator("#outcome")).to_have_text("reject")
    expect(page.locator("td.reason").first).to_have_text("device or IP on a block list")


def test_open_an_account(service: ServiceProcess, page: Page) -> None:
    evaluate(service, transfer(102, pay_account="acct-b2", amount=75.0))
    sign_in(page, service.url)
    page.click("text=Entity")
    page.select_option("select[name=field]", "pay_account")
    page.fill("input[name=value]", "acct-b2")
    page.click("text=Show")
    table = page.locator("#entity-features")
    expect(table).to_contain_text("count(pay_account.history,1h)")


def test_edit_a_rule_see_the_error_fix_it_and_decide_with_it(service: ServiceProcess,
                                                             page: Page) -> None:
    sign_in(page, service.url)
    page.click("text=Rules")
    old = page.locator("#live-version").inner_text()
    body = json.loads(page.input_value("textarea[name=ruleset]"))
    broken = {"id": "big_amount", "when": "amount > 1000 and\n  (amount >", "score": 5,
              "reason": XSS}
    page.fill("textarea[name=ruleset]", json.dumps({**body, "rules": [*body["rules"], broken]}))
    page.click("text=Save and put live")
    error = page.locator("#rule-error")
    expect(error).to_contain_text("big_amount")
    expect(error.locator(".line")).to_have_text("2")
    expect(error.locator(".column")).to_have_text("3")
    expect(page.locator("#live-version")).to_have_text(old)
    fixed = {**broken, "when": "amount > 1000"}
    page.fill("textarea[name=ruleset]", json.dumps({**body, "rules": [*body["rules"], fixed]}))
    page.click("text=Save and put live")
    expect(page.get_by_role("status")).to_contain_text("is live")
    new = page.locator("#live-version").inner_text()
    assert new != old
    expect(page.locator("td.reason", has_text="window.__xss")).to_have_text(XSS)
    decided = evaluate(service, transfer(103, amount=5000.0, pay_account="acct-b3"))
    assert decided["ruleset_version"] == new
    assert "big_amount" in [hit["rule_id"] for hit in decided["hits"]]  # type: ignore[union-attr]
    page.goto(f"{service.url}/console/decision?id=e103")
    expect(page.locator("#ruleset-version")).to_have_text(new)
    expect(page.locator("td.reason", has_text="window.__xss")).to_have_text(XSS)
    assert page.evaluate("window.__xss") is None
    # roll back from the versions table
    page.goto(service.url + "/console/rules")
    page.locator("form", has=page.locator(f"input[value={old}]")).locator("button").click()
    expect(page.locator("#live-version")).to_have_text(old)
    assert evaluate(service, transfer(104))["ruleset_version"] == old


def test_a_forged_post_without_the_csrf_token_is_403(service: ServiceProcess,
                                                     page: Page) -> None:
    sign_in(page, service.url)
    expect(page.locator("h1")).to_have_text("Overview")
    forged = page.context.request.post(service.url + "/console/lists/add", form={
        "name": "blocked_ips", "value": "192.0.2.77"})
    assert forged.status == 403
    listed = httpx.get(f"{service.url}/v1/lists/blocked_ips", headers=ADMIN_HEADERS)
    assert "192.0.2.77" not in listed.text


def test_add_and_remove_a_list_entry(service: ServiceProcess, page: Page) -> None:
    sign_in(page, service.url)
    page.goto(service.url + "/console/lists?name=blocked_ips")
    page.fill("#add-entry input[name=value]", "192.0.2.88")
    page.fill("#add-entry input[name=reason]", XSS)
    page.click("#add-entry button")
    row = page.locator("#list-entries tr", has_text="192.0.2.88")
    expect(row).to_contain_text(XSS)
    row.locator("button").click()
    expect(page.locator("#list-entries")).not_to_contain_text("192.0.2.88")




def test_the_experiment_page_draws_its_charts(service: ServiceProcess, page: Page) -> None:
    watch = [{"id": "watch_big", "when": "amount >= 100", "score": 5, "reason": XSS}]
    put = httpx.put(f"{service.url}/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS,
                    json={"key": "pay_account", "salt": XSS, "split": {"champion": 100},
                          "challengers": {"watch": {"mode": "shadow", "rules": watch}}},
                    timeout=10)
    assert put.status_code == 200, put.text
    version = put.json()["version"]
    try:
        for i in range(6):
            evaluate(service, transfer(200 + i, pay_account=f"acct-x{i}",
                                        amount=150.0 if i % 2 else 20.0))
        sign_in(page, service.url)
        page.click("text=Experiments")
        expect(page.locator("#live-version")).to_have_text(version)
        section = page.locator(f"#experiment-{version}")
        expect(section.locator(f"#decision-mix-{version} canvas")).to_have_count(1)
        expect(section.locator(f"#rule-hits-{version} canvas")).to_have_count(1)
        expect(page.locator("#live-experiment")).to_contain_text(XSS)  # as text
        assert page.evaluate("window.__xss") is None
        page.locator("tr[data-arm=watch] button").click()
        expect(page.locator("h1")).to_contain_text("Promote watch")
        page.click("text=Cancel")
        expect(page.locator("#live-version")).to_have_text(version)
    finally:
        httpx.delete(f"{service.url}/v1/scenes/transfer/experiment", headers=ADMIN_HEADERS,
                     timeout=10)


def test_backtest_a_version_from_the_rules_page(service: ServiceProcess, page: Page) -> None:
    for i in range(5):
        evaluate(service, transfer(300 + i, pay_account="acct-bt", amount=150.0))
    live = httpx.get(f"{service.url}/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS,
                     timeout=10).json()
    big = {"id": "bt_big", "when": "amount >= 100", "action": "reject", "score": 100}
    stored = httpx.put(f"{service.url}/v1/scenes/transfer/ruleset?activate=false",
                       headers=ADMIN_HEADERS, timeout=10,
                       json={"rules": [*live["rules"], big], "policy": live["policy"]})
    assert stored.status_code == 200, stored.text
    version = stored.json()["version"]
    sign_in(page, service.url)
    page.goto(service.url + "/console/rules")
    page.locator(f"a.backtest[href*='{version}']").click()
    expect(page.locator("select[name=version]")).to_have_value(version)
    page.click("form[action$='/backtests/run'] button")
    expect(page.locator("#backtest-job .job-state")).to_have_text("finished", timeout=60_000)
    link = page.locator("#backtest-job a")
    expect(page.locator("#reports")).to_contain_text(
        link.inner_text().removeprefix("Open the report "))  # the page reloaded its list
    link.click()
    expect(page.locator("#decision-mix canvas")).to_have_count(1)
    expect(page.locator("#rule-hits canvas")).to_have_count(1)
    expect(page.locator("#alert-rate canvas")).to_have_count(1)
    name = page.locator("#report-name").inner_text()
    reports = service.state_dir.parent / "reports"
    assert (reports / name / "report.json").is_file()  # --backtests-dir
