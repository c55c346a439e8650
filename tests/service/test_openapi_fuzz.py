"""Schemathesis drives every operation of the OpenAPI document against an in-process service.

Valid and invalid requests (bounded, derandomized) must never get a 5xx, and every answer
must match the document: a declared status code, content type, body schema and headers.
The admin API is driven twice: with the admin token, and without one (every answer 401).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans

from riskengine.service import ServiceSettings, create_app
from tests.service.helpers import ADMIN

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
OPEN_PATHS = ["/healthz", "/readyz", "/metrics", "/v1/{scene}/evaluate",
              "/v1/{scene}/evaluate/batch"]
REQUIRED_FIELDS: dict[str, dict[str, Any]] = {
    "transfer": {"pay_account": "A", "rcv_account": "B", "amount": 10.0},
    "login": {"account": "A", "result": "fail"},
}
# Half of the time a name the project knows, so requests reach past the 404 of an unknown
# scene or list; sometimes values that are valid to the schema but odd to the service.
DICTIONARIES: dict[str, Any] = {
    "dictionaries": {
        "scenes": {"values": ["transfer", "login"]},
        "lists": {"values": ["blocked_devices", "blocked_ips"]},
        "times": {"values": ["1767571200000", "2026-01-05T00:00:00Z", "-1", "--5", "²", "-²",
                             "٣", "9" * 40, "2026-01-05T00:00:00+99:00"]},
        "rule_when": {"values": ["True", "amount > 0", "amount >= 0 and True"]},
        "rule_score": {"values": [1e308, 6e307, -1e308]},
    },
    "parameters": {
        "path.scene": {"dictionary": "scenes", "probability": 0.5},
        "query.scene": {"dictionary": "scenes", "probability": 0.5},
        "path.name": {"dictionary": "lists", "probability": 0.5},
        "query.since": {"dictionary": "times", "probability": 0.3},
        "query.until": {"dictionary": "times", "probability": 0.3},
        "body.rules[*].when": {"dictionary": "rule_when", "probability": 0.5},
        "body.rules[*].score": {"dictionary": "rule_score", "probability": 0.5},
    },
}


def _config(mode: str, headers: dict[str, str] | None = None) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": 20260105,
        "generation": {"mode": mode, "max-examples": 50, "deterministic": True,
                       "database": "none", "with-security-parameters": False},
        "phases": {"stateful": {"enabled": False}},
        "headers": headers or {},
        **DICTIONARIES,
    })


class _Service:
    """The ASGI app schemathesis calls; the `service` fixture plugs a service into it.

    The schema is built when the module is collected (`schemathesis.pytest.from_fixture`,
    the lazy loader, fails on pytest 9's node ids), while each service lives on the tmp
    state directory of the test run."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state:
        app = create_app(ServiceSettings(state_dir=Path(state), admin_token=ADMIN,
                                         watch_config=False))
        try:
            return app.openapi()
        finally:
            app.state.runtime.close()


SERVICE = _Service()
DOCUMENT = _document()
with_token = schemathesis.openapi.from_dict(
    DOCUMENT, config=_config("all", {"Authorization": f"Bearer {ADMIN}"}))
without_token = schemathesis.openapi.from_dict(
    DOCUMENT, config=_config("positive")).exclude(path=OPEN_PATHS)
with_token.app = without_token.app = SERVICE


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "state"


@pytest.fixture
def service(state_dir: Path) -> Iterator[None]:
    """A service on the module's state directory. Schemathesis ends an app's lifespan after
    each test, so each operation gets a new service that recovers what the last one left."""
    SERVICE.app = create_app(ServiceSettings(state_dir=state_dir, admin_token=ADMIN,
                                             watch_config=False))
    yield
    shutdown_lifespans()
    SERVICE.app = None


@pytest.mark.usefixtures("service")
@with_token.parametrize()
def test_every_operation_with_the_admin_token(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


@pytest.mark.usefixtures("service")
@with_token.include(path_regex="/evaluate").parametrize()
def test_evaluate_under_the_rulesets_and_lists_left_by_fuzzing(case: schemathesis.Case) -> None:
    """Generated events rarely carry a scene's required fields: add them, so the events
    reach the engine, the rulesets and lists that the first pass left live, and the log."""
    required = REQUIRED_FIELDS.get(str((case.path_parameters or {}).get("scene")))
    if required is not None and isinstance(case.body, dict):
        case.body = {**required, **case.body}
    elif required is not None and isinstance(case.body, list):
        case.body = [{**required, **event} if isinstance(event, dict) else event
                     for event in case.body]
    case.call_and_validate(checks=CHECKS)


@pytest.mark.usefixtures("service")
@without_token.parametrize()
def test_the_admin_api_without_a_token_is_401(case: schemathesis.Case) -> None:
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code == 401, response.text
