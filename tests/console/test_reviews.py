"""The console's review pages in process: the queue, an item's evidence, claiming and
resolving as the signed-in analyst (label stored, payer listed), conflicts as 409 pages,
and hostile forms refused without changing anything."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riskengine.console.session import COOKIE
from riskengine.service import ServiceSettings, create_app
from tests.console.conftest import csrf_of
from tests.console.reviewing import FRAUD_LIST, review_config, reviewed
from tests.service.helpers import ADMIN, ADMIN_HEADERS, transfer

XSS = "<script>alert('x')</script>"
MODEL_REASON = "the fraud model scores the transfer as likely fraud"


def sign_in(client: TestClient, analyst: str | None = None) -> None:
    data = {"token": ADMIN} if analyst is None else {"token": ADMIN, "analyst": analyst}
    response = client.post("/console/login", data=data)
    assert response.status_code == 303, response.text


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[TestClient]:
    """A client signed in to the console as analyst ann, on the review config."""
    app = create_app(ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                                     watch_config=False,
                                     config=review_config(tmp_path / "project")))
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, "ann")
        yield client


def decide(client: TestClient, event: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/transfer/evaluate", json=event)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def queue_review(client: TestClient, i: int, payer: str) -> str:
    """Send a transfer the config answers review; its event id."""
    answer = decide(client, reviewed(i, payer))
    assert answer["decision"] == "review", answer
    return f"e{i}"


def api(client: TestClient, path: str) -> Any:
    response = client.get(path, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def post_form(client: TestClient, action: str, event_id: str, **fields: str) -> Any:
    """A review form as the page sends it, with the page's CSRF token."""
    csrf = csrf_of(client, f"/console/review?id={event_id}")
    return client.post(f"/console/review/{action}", data={"csrf": csrf, "id": event_id,
                                                          **fields})


def shown_json(page: str, element: str) -> Any:
    """The JSON a page shows (escaped) in its ``<pre id=element>``."""
    found = re.search(rf'<pre id="{element}">(.*?)</pre>', page, re.DOTALL)
    assert found is not None, element
    return json.loads(html.unescape(found.group(1)))


def rows_of(page: str, table: str) -> list[str]:
    body = page.split(f'id="{table}"')[1].split("</table>")[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)


def test_the_queue_lists_reviews_oldest_first_with_filters(desk: TestClient) -> None:
    queue_review(desk, 1, "P-1")
    assert decide(desk, transfer(2, pay_account="P-1", rcv_account="M-1",
                                 amount=5.0))["decision"] == "accept"
    queue_review(desk, 3, "P-3")
    page = desk.get("/console/reviews")
    assert page.status_code == 200
    assert 'href="/console/reviews" class="here">Reviews</a>' in page.text
    assert 'id="analyst">ann<' in page.text
    rows = rows_of(page.text, "review-queue")[1:]  # after the header
    assert [re.findall(r">(e\d+)</a>", row) for row in rows] == [["e1"], ["e3"]]
    assert all('class="state">open<' in row for row in rows)
    assert all(re.search(r'class="num">\d+ s<', row) for row in rows)  # the age
    # bob holds e3 (through the API): the queue says who
    assert desk.post("/v1/reviews/e3/claim", headers=ADMIN_HEADERS,
                     json={"analyst": "bob"}).status_code == 200
    claimed = desk.get("/console/reviews", params={"state": "claimed"}).text
    (row,) = rows_of(claimed, "review-queue")[1:]
    assert ">e3</a>" in row and "<td>bob <span" in row
    assert ">e1</a>" not in claimed
    opened = desk.get("/console/reviews", params={"state": "open", "scene": "transfer"}).text
    assert ">e1</a>" in opened and ">e3</a>" not in opened
    login = desk.get("/console/reviews", params={"scene": "login"})
    assert login.status_code == 200 and "The queue is empty." in login.text
    for params, status in (({"state": "lost"}, 422), ({"scene": "nope"}, 404),
                           ({"state": XSS}, 422), ({"scene": "s" * 500}, 422)):
        refused = desk.get("/console/reviews", params=params)
        assert refused.status_code == status, params
        assert "<script>alert" not in refused.text


def test_claim_then_resolve_as_fraud_listing_the_payer(desk: TestClient) -> None:
    queue_review(desk, 1, "P-1")
    assert decide(desk, transfer(2, pay_account="P-1", rcv_account="M-1",
                                 amount=5.0))["decision"] == "accept"
    sent = reviewed(1, "P-1")
    page = desk.get("/console/review", params={"id": "e1"})
    assert page.status_code == 200
    text = page.text
    assert 'id="review-state">open<' in text
    assert 'id="claim"' in text and ">Claim</button>" in text and 'id="resolve"' not in text
    assert shown_json(text, "review-event") == sent  # the event, as logged
    assert MODEL_REASON in text and "model:fraud_gbm" in text  # reasons and features
    live = api(desk, "/v1/scenes/transfer/ruleset")["version"]
    assert f'id="ruleset-version">{live}<' in text
    recent = rows_of(text, "entity-decisions")[1:]
    assert ['href="/console/decision?id=e2"' in recent[0],
            'href="/console/decision?id=e1"' in recent[1]] == [True, True]
    assert "Nothing done yet." in text

    claimed = post_form(desk, "claim", "e1")
    assert claimed.status_code == 303
    assert claimed.headers["location"] == "/console/review?id=e1"
    text = desk.get("/console/review", params={"id": "e1"}).text
    assert 'id="review-state">claimed<' in text and "Extend my claim" in text
    assert 'id="resolve"' in text
    assert f'<option>{FRAUD_LIST}</option>' in text
    assert '<option selected>pay_account</option>' in text  # the entity field first

    resolved = post_form(desk, "resolve", "e1", outcome="fraud", note="drained by a mule",
                         list=FRAUD_LIST, field="pay_account",
                         expires="2040-01-01T00:00:00Z", reason="confirmed by the bank")
    assert resolved.status_code == 303, resolved.text
    text = desk.get("/console/review", params={"id": "e1"}).text
    assert 'id="review-state">resolved<' in text and 'id="resolve"' not in text
    assert 'id="note">drained by a mule<' in text
    assert re.search(r'id="label">fraud \(review:ann, ', text)
    actions = [re.findall(r'class="action">(\w+)<', row) for row in rows_of(text, "audit")]
    assert actions == [[], ["claim"], ["resolve"], ["list"]]  # after the header
    # the label is stored, the payer is on the list, and the loop closes
    evidence = api(desk, "/v1/reviews/e1")
    assert (evidence["label"]["label"], evidence["label"]["source"]) == ("fraud", "review:ann")
    assert re.search(r'id="label">fraud \(review:ann, ',
                     desk.get("/console/decision", params={"id": "e1"}).text)
    entries = api(desk, f"/v1/lists/{FRAUD_LIST}")["entries"]
    assert [(e["value"], e["reason"]) for e in entries] == [("P-1", "confirmed by the bank")]
    assert "<td>P-1</td>" in desk.get("/console/lists", params={"name": FRAUD_LIST}).text
    again = decide(desk, transfer(4, pay_account="P-1", rcv_account="M-1", amount=5.0))
    assert again["decision"] == "reject"
    assert "fraud_account" in [hit["rule_id"] for hit in again["hits"]]


def test_resolve_as_legit_without_a_list(desk: TestClient) -> None:
    queue_review(desk, 1, "P-1")
    assert post_form(desk, "claim", "e1").status_code == 303
    resolved = post_form(desk, "resolve", "e1", outcome="legit", note="known customer",
                         list="", field="pay_account", expires="", reason="")
    assert resolved.status_code == 303, resolved.text
    assert api(desk, "/v1/reviews/e1")["label"]["label"] == "legit"
    assert api(desk, f"/v1/lists/{FRAUD_LIST}")["entries"] == []
    trail = api(desk, "/v1/reviews/e1/audit")
    assert [(a["action"], a["analyst"]) for a in trail] == [("claim", "ann"),
                                                             ("resolve", "ann")]
    assert trail[1]["detail"] == {"outcome": "legit", "note": "known customer"}
    assert decide(desk, transfer(2, pay_account="P-1", rcv_account="M-1",
                                 amount=5.0))["decision"] == "accept"


def test_someone_elses_claim_or_a_resolved_item_is_a_409_page(desk: TestClient) -> None:
    queue_review(desk, 1, "P-1")
    assert desk.post("/v1/reviews/e1/claim", headers=ADMIN_HEADERS,
                     json={"analyst": "bob"}).status_code == 200
    page = desk.get("/console/review", params={"id": "e1"}).text
    assert "Claimed by bob until" in page and 'id="claim"' not in page
    assert 'id="resolve"' not in page
    csrf = csrf_of(desk, "/console/reviews")
    for action, fields in (("claim", {}), ("resolve", {"outcome": "fraud"})):
        refused = desk.post(f"/console/review/{action}", data={"csrf": csrf, "id": "e1",
                                                               **fields})
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("text/html")
        assert "is claimed by bob" in refused.text
    assert api(desk, "/v1/reviews/e1")["item"]["claimed_by"] == "bob"
    assert api(desk, "/v1/reviews/e1")["label"] is None
    assert desk.post("/v1/reviews/e1/resolve", headers=ADMIN_HEADERS,
                     json={"analyst": "bob", "outcome": "legit"}).status_code == 200
    for action, fields in (("claim", {}), ("resolve", {"outcome": "fraud"})):
        refused = desk.post(f"/console/review/{action}", data={"csrf": csrf, "id": "e1",
                                                               **fields})
        assert refused.status_code == 409
        assert "was resolved by bob (legit)" in refused.text
    assert api(desk, "/v1/reviews/e1")["label"]["label"] == "legit"


def test_forged_forms_without_the_csrf_token_are_refused(desk: TestClient) -> None:
    queue_review(desk, 1, "P-1")
    for data in ({"id": "e1"}, {"id": "e1", "csrf": ""}, {"id": "e1", "csrf": "0" * 64}):
        assert desk.post("/console/review/claim", data=data).status_code == 403
        assert desk.post("/console/review/resolve", data={
            **data, "outcome": "fraud", "list": FRAUD_LIST,
            "field": "pay_account"}).status_code == 403
    cookie = desk.cookies[COOKIE]
    csrf = csrf_of(desk, "/console/reviews")
    desk.cookies.clear()  # a token without its session
    refused = desk.post("/console/review/claim", data={"csrf": csrf, "id": "e1"})
    assert refused.status_code == 403
    desk.cookies.set(COOKIE, cookie)
    evidence = api(desk, "/v1/reviews/e1")
    assert evidence["item"]["state"] == "open" and evidence["label"] is None
    assert api(desk, "/v1/reviews/e1/audit") == []
    assert api(desk, f"/v1/lists/{FRAUD_LIST}")["entries"] == []


def test_script_in_the_event_note_and_reason_is_escaped(desk: TestClient) -> None:
    queue_review(desk, 1, XSS)
    assert post_form(desk, "claim", "e1").status_code == 303
    assert post_form(desk, "resolve", "e1", outcome="fraud", note=XSS, list=FRAUD_LIST,
                     field="pay_account", reason=XSS).status_code == 303
    pages = [desk.get("/console/review", params={"id": "e1"}).text,
             desk.get("/console/reviews").text,
             desk.get("/console/decision", params={"id": "e1"}).text,
             desk.get("/console/lists", params={"name": FRAUD_LIST}).text]
    for page in pages:
        assert "<script>alert" not in page
    assert "&lt;script&gt;alert(" in pages[0]  # the event, the note and the audit detail
    assert 'id="note">&lt;script&gt;alert(' in pages[0]
    assert [e["value"] for e in api(desk, f"/v1/lists/{FRAUD_LIST}")["entries"]] == [XSS]


def test_hostile_resolve_forms_are_refused_and_change_nothing(desk: TestClient) -> None:
    queue_review(desk, 1, "P-1")
    assert post_form(desk, "claim", "e1").status_code == 303
    csrf = csrf_of(desk, "/console/reviews")
    good = {"csrf": csrf, "id": "e1", "outcome": "fraud"}
    cases: list[tuple[dict[str, str], int, str]] = [
        ({**good, "note": "n" * 70_000}, 413, "larger than"),
        ({**good, "note": "n" * 2001}, 422, "note must be"),
        ({**good, "outcome": "maybe"}, 422, "outcome must be"),
        ({**good, "outcome": ""}, 422, "outcome must be"),
        ({"csrf": csrf, "id": "e1"}, 422, "outcome must be"),
        ({**good, "list": "nope", "field": "pay_account"}, 422, "unknown list"),
        ({**good, "list": FRAUD_LIST, "field": "nope"}, 422, "no text or integer value"),
        ({**good, "list": FRAUD_LIST, "field": "amount"}, 422, "no text or integer value"),
        ({**good, "list": FRAUD_LIST, "field": "pay_account", "expires": "tomorrow"}, 422,
         "not an ISO-8601 time"),
        ({**good, "list": FRAUD_LIST, "field": "pay_account", "reason": "r" * 1001}, 422,
         "reason must be"),
        ({**good, "id": ""}, 422, "id is required"),
        ({**good, "id": "x" * 300}, 422, "longer than"),
        ({**good, "id": "no-such-event"}, 404, "is not in the review queue"),
    ]
    for data, status, message in cases:
        response = desk.post("/console/review/resolve", data=data)
        assert response.status_code == status, (status, response.text[:500])
        assert message in response.text, message
    as_json = desk.post("/console/review/resolve", json=good)
    assert as_json.status_code == 415
    odd = desk.post("/console/review/resolve", content=b"\xff\xfe=\xff",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert odd.status_code == 400
    evidence = api(desk, "/v1/reviews/e1")
    assert evidence["item"]["state"] == "claimed" and evidence["label"] is None
    assert api(desk, f"/v1/lists/{FRAUD_LIST}")["entries"] == []
    assert [a["action"] for a in api(desk, "/v1/reviews/e1/audit")] == ["claim"]
    assert desk.get("/healthz").status_code == 200


def test_unknown_event_ids_are_404_pages(desk: TestClient) -> None:
    queue_review(desk, 1, "P-1")
    assert decide(desk, transfer(2, pay_account="P-1", rcv_account="M-1",
                                 amount=5.0))["decision"] == "accept"
    csrf = csrf_of(desk, "/console/reviews")
    for event_id in ("no-such-event", "e2", XSS):  # e2 was decided but not queued
        page = desk.get("/console/review", params={"id": event_id})
        assert page.status_code == 404, event_id
        assert "is not in the review queue" in page.text
        assert "<script>alert" not in page.text
        claim = desk.post("/console/review/claim", data={"csrf": csrf, "id": event_id})
        assert claim.status_code == 404
    assert desk.get("/console/review").status_code == 422
    assert desk.get("/console/review", params={"id": "x" * 5000}).status_code == 422


def test_the_pages_need_a_session(desk: TestClient) -> None:
    queue_review(desk, 1, "P-1")
    desk.cookies.clear()
    for page in ("/console/reviews", "/console/review?id=e1"):
        response = desk.get(page)
        assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert desk.post("/console/review/claim", data={"id": "e1"}).status_code == 403
