"""Console sessions: a signed cookie, never the admin token itself.

The signing key is derived from the admin token (HMAC-SHA256 of a fixed label), so every
worker of one service signs and checks alike and a new admin token ends every session.
A cookie is ``<expiry ms>.<nonce>.<analyst>.<signature>`` (the analyst name the review
pages act as, base64url); the CSRF token of a session is an HMAC of its nonce under the same
key, so forms can be checked without server-side storage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "riskengine_console"
LIFETIME_S = 8 * 3600
DEFAULT_ANALYST = "admin"
_KEY_LABEL = b"riskengine console session key v1"
_MAX_COOKIE = 400


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires_ms: int
    analyst: str = DEFAULT_ANALYST


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens for one admin token."""

    def __init__(self, admin_token: str) -> None:
        self._admin_token = admin_token.encode("utf-8")
        self._key = hmac.new(self._admin_token, _KEY_LABEL, hashlib.sha256).digest()

    def token_matches(self, candidate: str) -> bool:
        """Whether `candidate` is the admin token (constant time)."""
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self._admin_token)

    def issue(self, now_ms: int | None = None, analyst: str = DEFAULT_ANALYST) -> str:
        """A new session cookie value for `analyst` (a name the caller has validated)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        name = base64.urlsafe_b64encode(analyst.encode("utf-8")).decode("ascii").rstrip("=")
        payload = f"{now + LIFETIME_S * 1000}.{secrets.token_urlsafe(18)}.{name}"
        return f"{payload}.{self._sign('session', payload)}"

    def check(self, cookie: str | None, now_ms: int | None = None) -> Session | None:
        """The session of a cookie value, or None when it is missing, forged or expired."""
        if not cookie or len(cookie) > _MAX_COOKIE or not cookie.isascii():
            return None
        payload, _, signature = cookie.rpartition(".")
        parts = payload.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1] or not parts[2]:
            return None
        if not hmac.compare_digest(signature, self._sign("session", payload)):
            return None
        expires, nonce, name = parts
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if int(expires) <= now:
            return None
        try:
            analyst = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Session(nonce, int(expires), analyst)

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf", session.nonce)

    def csrf_matches(self, session: Session, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(
            str(candidate).encode("utf-8", "replace"),
            self.csrf_token(session).encode("ascii"))

    def _sign(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()
