"""Reading console requests: url-encoded form bodies with a size cap, and bounded text
parameters. Everything refused becomes a `PageError` (an HTML page with a 4xx status)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request

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
