"""Every console route, signed in, given hostile query strings and forms: each answers a
page or a 4xx, never a 5xx, and a script in the input never comes back unescaped.

The routes are read from the app, so a page added later is swept too."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from tests.console.conftest import csrf_of
from tests.service.helpers import transfer

SCRIPT = "<script>alert(1)</script>"
VALUES = [SCRIPT, "", " ", "\x00", "A" * 2_000, "../../etc/passwd", "%00", "-1",
          "99999999999999999999999", "2026-13-45T99:99", "transfer\n", "☃" * 100,
          "{\"rules\": [", "null"]
FIELDS = ["id", "scene", "decision", "since", "until", "field", "value", "name", "a", "b",
          "state", "live", "event_id", "version", "list", "outcome", "note", "expires",
          "reason", "ruleset", "experiment", "arm", "report", "candidate", "token",
          "analyst", "amount_field", "limit", "period"]
SKIP = {"/console/logout"}  # ends the session the sweep needs


def _all_routes(routes: Iterable[object]) -> Iterator[Route]:
    """The routes of an app, including those of routers it included (FastAPI may keep an
    included router as one entry holding the original)."""
    for route in routes:
        if isinstance(route, Route):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _all_routes(included.routes)


def _routes(client: TestClient, method: str) -> list[str]:
    found = []
    for route in _all_routes(client.app.routes):  # type: ignore[attr-defined]
        if (route.path.startswith("/console") and method in (route.methods or ())
                and route.path not in SKIP):
            found.append(route.path)
    assert found, f"no console {method} routes"
    return sorted(found)


def _no_server_error_or_script(response: object, what: str) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status < 500, f"{what}: {status}"
    assert SCRIPT not in response.text, f"{what}: the script came back unescaped"  # type: ignore[attr-defined]


@pytest.fixture
def swept(console: TestClient) -> TestClient:
    for i in range(3):  # something in the log and the state for the pages to read
        assert console.post("/v1/transfer/evaluate", json=transfer(i)).status_code == 200
    return console


def test_every_page_takes_hostile_query_strings(swept: TestClient) -> None:
    paths = _routes(swept, "GET")
    assert {"/console", "/console/decision", "/console/reviews", "/console/rules"} <= set(paths)
    for path, value in itertools.product(paths, VALUES):
        query = {name: value for name in FIELDS}
        response = swept.get(path, params=query)
        _no_server_error_or_script(response, f"GET {path} all={value[:20]!r}")
        for name in FIELDS[:12]:  # one field at a time, the others absent
            response = swept.get(path, params={name: value})
            _no_server_error_or_script(response, f"GET {path} {name}={value[:20]!r}")


def test_every_form_takes_hostile_fields(swept: TestClient) -> None:
    paths = _routes(swept, "POST")
    assert {"/console/rules/save", "/console/review/resolve", "/console/lists/add"} <= set(
        paths)
    csrf = csrf_of(swept)
    for path, value in itertools.product(paths, VALUES):
        if path == "/console/login":
            continue  # would replace the session; test_auth covers its refusals
        form = {name: value for name in FIELDS} | {"csrf": csrf}
        response = swept.post(path, data=form)
        _no_server_error_or_script(response, f"POST {path} all={value[:20]!r}")
        response = swept.post(path, data={"csrf": csrf})
        _no_server_error_or_script(response, f"POST {path} empty form")
        forged = swept.post(path, data={name: value for name in FIELDS})
        # refused: 403 without the token, or 413 first when the form is too large to read
        assert forged.status_code in (403, 413), f"POST {path} without the CSRF token"
    # the service still serves and the session still works after the sweep
    assert swept.post("/v1/transfer/evaluate", json=transfer(99)).status_code == 200
    assert swept.get("/console").status_code == 200


def test_a_body_that_is_not_a_form_is_refused(swept: TestClient) -> None:
    for path in _routes(swept, "POST"):
        for body, kind in ((b"\xff\xfe" * 100, "application/x-www-form-urlencoded"),
                           (b'{"a": 1}', "application/json"),
                           (b"x" * (2 * 1024 * 1024), "application/x-www-form-urlencoded")):
            response = swept.post(path, content=body, headers={"content-type": kind})
            _no_server_error_or_script(response, f"POST {path} {kind} {len(body)} B")
