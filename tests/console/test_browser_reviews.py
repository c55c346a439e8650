"""The review loop in Chromium against a real `riskengine serve`: a transfer answered
review is queued, an analyst claims it, resolves it as fraud putting the payer on a list,
and sees the label on the decision page and the entry on the lists page."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.browser import CHROMIUM, XSS, evaluate, served, sign_in
from tests.console.reviewing import FRAUD_LIST, review_config, reviewed
from tests.service.helpers import ADMIN_HEADERS, transfer
from tests.service.process import ServiceProcess

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (scripts/install_services.sh)",
                allow_module_level=True)



@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    folder = tmp_path_factory.mktemp("console-reviews")
    with served(folder / "state", review_config(folder / "project")) as running:
        yield running





def test_review_claim_resolve_as_fraud_and_see_the_label_and_the_entry(
        service: ServiceProcess, page: Page) -> None:
    assert evaluate(service, reviewed(201, "P-201"))["decision"] == "review"
    sign_in(page, service.url, analyst="ann")
    expect(page.locator("h1")).to_have_text("Overview")
    page.click("nav >> text=Reviews")
    expect(page.locator("#analyst")).to_have_text("ann")
    queue = page.locator("#review-queue")
    expect(queue.locator("tr", has_text="e201")).to_contain_text("open")
    queue.locator("a", has_text="e201").click()
    expect(page.locator("#event-id")).to_have_text("e201")
    expect(page.locator("#review-state")).to_have_text("open")
    expect(page.locator("#review-event")).to_contain_text('"pay_account": "P-201"')
    expect(page.locator("#review-hits")).to_contain_text("the fraud model scores")
    expect(page.locator("#resolve")).to_have_count(0)
    page.click("#claim button")
    expect(page.locator("#review-state")).to_have_text("claimed")
    expect(page.locator("#claimed-by")).to_contain_text("ann")
    form = page.locator("#resolve")
    form.locator("input[value=fraud]").check()
    form.locator("textarea[name=note]").fill(XSS)
    form.locator("select[name=list]").select_option(FRAUD_LIST)
    form.locator("select[name=field]").select_option("pay_account")
    form.locator("input[name=reason]").fill("confirmed by the card issuer")
    form.locator("button[type=submit]").click()
    expect(page.locator("#review-state")).to_have_text("resolved")
    expect(page.locator("#note")).to_have_text(XSS)
    expect(page.locator("#label")).to_contain_text("fraud (review:ann")
    expect(page.locator("#audit .action")).to_have_text(["claim", "resolve", "list"])
    page.click("#decision-link")
    expect(page.locator("#event-id")).to_have_text("e201")
    expect(page.locator("#label")).to_contain_text("fraud (review:ann")
    expect(page.locator("#raw-event")).to_contain_text('"pay_account": "P-201"')
    page.click("nav >> text=Lists")
    page.select_option("select[name=name]", FRAUD_LIST)
    page.click("text=Show")
    row = page.locator("#list-entries tr", has_text="P-201")
    expect(row).to_contain_text("confirmed by the card issuer")
    assert page.evaluate("window.__xss") is None
    # the loop closes: the payer's next transfer is rejected
    again = evaluate(service, transfer(202, pay_account="P-201", rcv_account="M-201",
                                        amount=5.0))
    assert again["decision"] == "reject"
    listed = httpx.get(f"{service.url}/v1/lists/{FRAUD_LIST}", headers=ADMIN_HEADERS)
    assert [e["value"] for e in listed.json()["entries"]] == ["P-201"]


def test_a_claim_held_by_someone_else_is_a_409_page(service: ServiceProcess,
                                                    page: Page) -> None:
    assert evaluate(service, reviewed(211, "P-211"))["decision"] == "review"
    sign_in(page, service.url, analyst="ann")
    expect(page.locator("h1")).to_have_text("Overview")
    page.goto(f"{service.url}/console/review?id=e211")
    expect(page.locator("#review-state")).to_have_text("open")
    held = httpx.post(f"{service.url}/v1/reviews/e211/claim", headers=ADMIN_HEADERS,
                      json={"analyst": "bob"}, timeout=10)
    assert held.status_code == 200
    page.click("#claim button")  # the page was loaded before bob's claim
    expect(page.locator("h1")).to_have_text("Error 409")
    expect(page.get_by_role("alert")).to_contain_text("is claimed by bob")
