"""Sign-in, the session cookie and CSRF checks of the console (in process)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from riskengine.console.session import COOKIE, SessionSigner
from riskengine.service import ServiceSettings, create_app
from tests.console.conftest import csrf_of
from tests.service.helpers import ADMIN

PAGES = ["/console", "/console/overview/panel", "/console/decisions", "/console/entity",
         "/console/rules", "/console/lists", "/console/decision?id=e1",
         "/console/rules/diff?a=x&b=y"]


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
    expires, nonce, signature = good.split(".")
    for forged in (f"{int(expires) + 1}.{nonce}.{signature}",
                   f"{expires}.{nonce}.{'0' * len(signature)}",
                   SessionSigner("another-token-0123456789").issue(), "garbage", "", "." * 5):
        console.cookies.clear()
        console.cookies.set(COOKIE, forged)
        assert console.get("/console").status_code == 303, forged


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
