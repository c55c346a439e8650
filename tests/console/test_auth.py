"""Sign-in, the session cookie and CSRF checks of the console (in process)."""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi.testclient import TestClient

from riskengine.console.session import COOKIE, SessionSigner
from riskengine.service import ServiceSettings, create_app
from tests.console.conftest import csrf_of
from tests.service.helpers import ADMIN

PAGES = ["/console", "/console/overview/panel", "/console/decisions", "/console/entity",
         "/console/rules", "/console/lists", "/console/decision?id=e1",
         "/console/rules/diff?a=x&b=y", "/console/reviews", "/console/review?id=e1"]


def test_every_page_needs_a_session(anonymous: TestClient) -> None:
    for page in PAGES:
        response = anonymous.get(page)
        assert response.status_code == 303, page
        assert response.headers["location"] == "/console/login"


def test_a_wrong_token_is_refused_with_a_message(anonymous: TestClient) -> None:
    response = anonymous.post("/console/login", data={"token": "not-the-token"})
    assert response.status_code == 403
    assert "That is not the admin token." in response.text
    assert COOKIE not in response.cookies
    assert anonymous.get("/console").status_code == 303


def test_sign_in_sets_a_signed_http_only_strict_cookie(anonymous: TestClient) -> None:
    response = anonymous.post("/console/login", data={"token": ADMIN})
    assert response.status_code == 303
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "SameSite=strict" in header or "SameSite=Strict" in header
    assert "Path=/console" in header
    assert "Secure" not in header  # plain http here; see the https test
    assert ADMIN not in header
    assert anonymous.get("/console").status_code == 200


def test_the_cookie_is_secure_over_https(tmp_path: Path) -> None:
    app = create_app(ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                                     watch_config=False))
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        response = client.post("/console/login", data={"token": ADMIN})
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]


def test_a_forged_or_tampered_cookie_is_no_session(console: TestClient) -> None:
    good = console.cookies[COOKIE]
    console.cookies.clear()
    console.cookies.set(COOKIE, good)
    assert console.get("/console").status_code == 200  # the same cookie, set again
    expires, nonce, analyst, signature = good.split(".")
    bob = base64.urlsafe_b64encode(b"bob").decode().rstrip("=")
    for forged in (f"{int(expires) + 1}.{nonce}.{analyst}.{signature}",
                   f"{expires}.{nonce}.{analyst}.{'0' * len(signature)}",
                   f"{expires}.{nonce}.{bob}.{signature}",  # another analyst's name
                   f"{expires}.{nonce}.{signature}",  # the name left out
                   SessionSigner("another-token-0123456789").issue(), "garbage", "", "." * 5,
                   good + "." * 500):
        console.cookies.clear()
        console.cookies.set(COOKIE, forged)
        assert console.get("/console").status_code == 303, forged
    # a header the client cannot send (not ASCII) is no session either, not an error
    assert SessionSigner(ADMIN).check(f"{expires}.{nonce}.{analyst}.{signature}\u00e9") is None


def test_sign_in_names_the_analyst_kept_in_the_signed_session(anonymous: TestClient) -> None:
    for name in ("ann@bank.example", "x.y_z+1-2", "a" * 100):
        response = anonymous.post("/console/login", data={"token": ADMIN, "analyst": name})
        assert response.status_code == 303
        header = response.headers["set-cookie"]
        assert "HttpOnly" in header and "SameSite=strict" in header.replace("Strict", "strict")
        assert f'id="analyst">{name}<' in anonymous.get("/console/reviews").text
    signer = SessionSigner(ADMIN)
    session = signer.check(signer.issue(analyst="ann@bank.example"))
    assert session is not None and session.analyst == "ann@bank.example"
    assert anonymous.post("/console/login", data={"token": ADMIN, "analyst": ""}
                          ).status_code == 303
    assert 'id="analyst">admin<' in anonymous.get("/console/reviews").text
    anonymous.cookies.clear()
    for bad in ("bad name", "<script>alert(1)</script>", "a" * 101, "\u00e9l\u00e8ve", "a/b"):
        response = anonymous.post("/console/login", data={"token": ADMIN, "analyst": bad})
        assert response.status_code == 422, bad
        assert "Analyst name: analyst must be" in response.text
        assert "<script>alert" not in response.text
        assert COOKIE not in response.cookies
    wrong = anonymous.post("/console/login", data={"token": "nope", "analyst": "ann"})
    assert wrong.status_code == 403 and COOKIE not in wrong.cookies
    assert anonymous.get("/console/reviews").status_code == 303


def test_an_expired_session_is_refused() -> None:
    signer = SessionSigner(ADMIN)
    cookie = signer.issue(now_ms=1_000)
    assert signer.check(cookie, now_ms=2_000) is not None
    assert signer.check(cookie, now_ms=10**13) is None


def test_a_post_without_the_csrf_token_is_403(console: TestClient) -> None:
    before = console.get("/console/rules").text
    body = '{"rules": [], "policy": {"review_at": null, "reject_at": null, "default": "accept"}}'
    for data in ({"scene": "transfer", "ruleset": body},
                 {"scene": "transfer", "ruleset": body, "csrf": "0" * 64},
                 {"scene": "transfer", "ruleset": body, "csrf": ""}):
        response = console.post("/console/rules/save", data=data)
        assert response.status_code == 403
        assert "CSRF" in response.text
    assert console.get("/console/rules").text == before  # nothing changed
    response = console.post("/console/lists/add", data={"name": "blocked_ips",
                                                         "value": "192.0.2.1"})
    assert response.status_code == 403
    assert "192.0.2.1" not in console.get("/console/lists?name=blocked_ips").text


def test_a_post_without_a_session_is_403(anonymous: TestClient) -> None:
    response = anonymous.post("/console/lists/add", data={"name": "blocked_ips",
                                                          "value": "192.0.2.1",
                                                          "csrf": "x"})
    assert response.status_code == 403


def test_sign_out_ends_the_session(console: TestClient) -> None:
    csrf = csrf_of(console)
    response = console.post("/console/logout", data={"csrf": csrf})
    assert response.status_code == 303
    assert console.get("/console").status_code == 303


def test_pages_carry_security_headers(console: TestClient) -> None:
    response = console.get("/console")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
