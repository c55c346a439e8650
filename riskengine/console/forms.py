"""Reading console requests: url-encoded form bodies with a size cap, bounded text
parameters and event times, and calls into the decision log off the event loop.
Everything refused becomes a `PageError` (an HTML page with a 4xx status; 503 for a log
that cannot be read)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from riskengine.decisionlog import DecisionLogError
from riskengine.events import parse_timestamp_text
from riskengine.exceptions import EventValidationError

MAX_FORM_BYTES = 1024 * 1024
MAX_FIELD_CHARS = 1000


class PageError(Exception):
    """Answered as the console's error page with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body (413 above `limit`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "forms are sent as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PageError(413, f"the form is larger than {limit} bytes")
    try:
        text = body.decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                              max_num_fields=100))
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "the form could not be read") from None


def field(values: Mapping[str, str], name: str, *, required: bool = False,
          max_chars: int = MAX_FIELD_CHARS) -> str | None:
    """A text field, stripped; None when empty and not required."""
    value = values.get(name, "").strip()
    if len(value) > max_chars:
        raise PageError(422, f"{name} is longer than {max_chars} characters")
    if not value:
        if required:
            raise PageError(422, f"{name} is required")
        return None
    return value


def event_time(value: str | None, name: str) -> int | None:
    """An event-time parameter (epoch ms or ISO-8601); None when not given."""
    if value is None:
        return None
    try:
        return parse_timestamp_text(value)
    except EventValidationError as exc:
        raise PageError(422, f"{name}: {exc}") from None


async def read_log(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)` in a thread: a read of the decision log (503 when the log
    cannot be read, 422 for a value it refuses)."""
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except DecisionLogError as exc:
        raise PageError(503, f"the decision log cannot be read: {exc}") from None
    except ValueError as exc:
        raise PageError(422, str(exc)) from None
