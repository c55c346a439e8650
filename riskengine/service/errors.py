"""Every refusal is one JSON shape: ``{"error": {"code", "message", "field"}}``.

Handlers turn riskengine's own errors, FastAPI's request validation and Starlette's HTTP
errors into that shape, so a client (and the OpenAPI document) sees one error model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from riskengine.exceptions import (
    ConfigError,
    EventValidationError,
    ListError,
    RuleCompileError,
    UnknownSceneError,
)


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None
    rule_id: str | None = None
    line: int | None = None
    column: int | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large",
          415: "unsupported_media_type", 422: "invalid",
          503: "unavailable"}


class ApiError(Exception):
    """Raised by routes; becomes an error response with `status`."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 code: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or _CODES.get(status, "error")
        self.extra = extra or {}


def error_body(err: ApiError) -> bytes:
    body: dict[str, Any] = {"code": err.code, "message": err.message, "field": err.field}
    body.update(err.extra)
    return orjson.dumps({"error": body})


def error_response(status: int, message: str, *, field: str | None = None,
                   code: str | None = None, extra: dict[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"code": code or _CODES.get(status, "error"), "message": message,
                            "field": field}
    if extra:
        body.update(extra)
    return Response(orjson.dumps({"error": body}), status_code=status,
                    media_type="application/json", headers=headers)


def from_exception(exc: Exception) -> ApiError:
    """Map riskengine's errors onto HTTP statuses."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnknownSceneError):
        return ApiError(404, str(exc), code="unknown_scene")
    if isinstance(exc, EventValidationError):
        return ApiError(422, str(exc), field=exc.field, code="invalid_event")
    if isinstance(exc, RuleCompileError):
        return ApiError(422, str(exc), code="invalid_rule",
                        extra={"rule_id": exc.rule_id, "line": exc.line, "column": exc.column})
    if isinstance(exc, ConfigError):
        return ApiError(422, str(exc), code="invalid_ruleset")
    if isinstance(exc, ListError):
        return ApiError(422, str(exc), code="invalid_list_entry")
    raise exc


def install_handlers(app: FastAPI, on_error: Callable[[int], None] | None = None) -> None:
    """Route every refusal through one shape; `on_error(status)` counts them."""
    count = on_error or (lambda status: None)

    async def api_error(request: Request, exc: Exception) -> Response:
        err = from_exception(exc)
        count(err.status)
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return error_response(err.status, err.message, field=err.field, code=err.code,
                              extra=err.extra, headers=headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query",
                                                                           "path")]
        field = ".".join(loc) or None
        count(422)
        message = str(first.get("msg", "invalid request"))
        return error_response(422, f"{field}: {message}" if field else message, field=field)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        count(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    for kind in (ApiError, UnknownSceneError, EventValidationError, RuleCompileError,
                 ConfigError, ListError):
        app.add_exception_handler(kind, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the error statuses a route can answer."""
    return {status: {"model": ErrorResponse, "description": _CODES.get(status, "error")}
            for status in statuses}
