"""Request parameters and bodies, read the way every route does."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Path, Request

from riskengine.events import parse_timestamp_text
from riskengine.exceptions import EventValidationError
from riskengine.service.errors import ApiError
from riskengine.service.evaluation import (
    check_content_type,
    check_declared_length,
    parse_json,
    too_large,
)

__all__ = ["JSON", "Auth", "SceneName", "read_json", "time_param"]

JSON = "application/json"
Auth = Annotated[str | None, Header(alias="Authorization", include_in_schema=False)]
SceneName = Annotated[str, Path(max_length=200)]


async def read_json(request: Request, limit: int, *, optional: bool = False) -> Any:
    """The request body as JSON: 415 unless JSON, 413 over `limit` bytes, 400 if malformed."""
    length = request.headers.get("content-length")
    if optional and (length in (None, "0")) and "transfer-encoding" not in request.headers:
        return None
    check_content_type(request.headers.get("content-type", "").encode("latin-1"))
    check_declared_length(length, limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return parse_json(b"".join(chunks))


def time_param(value: str | None, name: str) -> int | None:
    """An event-time query parameter: epoch ms or ISO-8601 (422 naming it otherwise)."""
    if value is None:
        return None
    try:
        return parse_timestamp_text(value)
    except EventValidationError as exc:
        raise ApiError(422, f"{name}: {exc}", field=name) from None
