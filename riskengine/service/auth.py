"""Bearer tokens: one for the admin endpoints (required), one for evaluate (optional).

Tokens are compared in constant time and never logged or echoed. No header: 401; a token
that is not the right one: 403.
"""

from __future__ import annotations

import hmac

from riskengine.service.errors import ApiError


def check_bearer(header: str | None, expected: str | None, *, what: str) -> None:
    """Raise 401/403 unless `header` carries `expected`; no expected token lets all in."""
    if expected is None:
        return
    if not header:
        raise ApiError(401, f"{what} needs 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, f"{what} needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode("utf-8", "replace"),
                               expected.encode("utf-8")):
        raise ApiError(403, "the token is not valid for " + what)
