"""Settings of traffic mirroring: where the copies go and how the answers are compared.

`riskengine serve --mirror URL` gives the candidate's base URL; the config's
``service: {mirror: {...}}`` section may give the URL and the other options. The flag's URL
wins over the section's; the candidate's evaluate token comes from
``RISKENGINE_MIRROR_TOKEN`` or ``mirror.token`` (never from the command line). Without a URL
from either, mirroring is off.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from riskengine.durations import parse_duration
from riskengine.exceptions import ConfigError

MIRROR_TOKEN_ENV = "RISKENGINE_MIRROR_TOKEN"
_KEYS = frozenset({"url", "queue", "queue_bytes", "score_tolerance", "timeout", "samples",
                   "token", "senders", "batch"})


@dataclass(frozen=True, slots=True)
class MirrorSettings:
    """`url`: the candidate's base URL (the request path is appended). `queue`: requests
    waiting to be sent, at most (more are dropped and counted). `score_tolerance`: the
    largest absolute score difference still counted as the same answer. `timeout_s`: per
    request to the candidate. `samples`: how many of the latest mismatches are kept.
    `senders`: requests in flight to the candidate at once; with 1 (the default) the
    candidate receives the events in the order the live service answered them. `batch`:
    the most events one request to the candidate carries (copies of one scene waiting
    together go as one batch request, mirror.py); 1 sends each copy on its own."""

    url: str
    queue: int = 10_000
    queue_bytes: int = 64 * 1024 * 1024
    score_tolerance: float = 0.001
    timeout_s: float = 2.0
    samples: int = 100
    token: str | None = None
    senders: int = 1
    batch: int = 500

    def to_dict(self) -> dict[str, Any]:
        """The settings without the token, as the admin API shows them."""
        return {"url": self.url, "queue": self.queue, "queue_bytes": self.queue_bytes,
                "score_tolerance": self.score_tolerance, "timeout_s": self.timeout_s,
                "max_samples": self.samples, "senders": self.senders,
                "batch": self.batch}


def parse_mirror_url(url: object, *, what: str = "--mirror") -> str:
    """The candidate's base URL without a trailing slash; a clear `ConfigError` unless it
    is an http(s) URL with a host (a path prefix is kept, a query or fragment refused)."""
    hint = f"{what}: give the candidate's base URL, e.g. http://candidate:8000"
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{hint}; got {url!r}"[:300])
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{hint}; {text[:200]!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{hint}; {text[:200]!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ConfigError(f"{hint}; {text[:200]!r} names no host")
    if port == 0:
        raise ConfigError(f"{hint}; port 0 in {text[:200]!r}")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ConfigError(f"{hint}; {text[:200]!r} has a query or fragment")
    if any(c.isspace() for c in text):
        raise ConfigError(f"{hint}; {text[:200]!r} contains white space")
    return text.rstrip("/")


def mirror_from_section(section: object, flag: MirrorSettings | None
                        ) -> MirrorSettings | None:
    """Combine the `--mirror` flag (`flag`: its URL, and any options it was built with in
    code) with the config's `service.mirror` section, whose keys win, and the
    environment's token. None when no URL is given anywhere."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError("service: 'mirror' must be a mapping, e.g. "
                          "{url: http://candidate:8000, queue: 10000}")
    unknown = set(section) - _KEYS
    if unknown:
        raise ConfigError(f"service.mirror: unknown keys {sorted(map(str, unknown))}; "
                          f"allowed: {', '.join(sorted(_KEYS))}")
    if flag is not None:
        url = flag.url
    elif "url" in section:
        url = parse_mirror_url(section["url"], what="service.mirror.url")
    else:
        return None
    values: dict[str, Any] = {}
    for key, low in (("queue", 1), ("queue_bytes", 1), ("senders", 1), ("batch", 1),
                     ("samples", 0)):
        if key in section:
            number = section[key]
            if isinstance(number, bool) or not isinstance(number, int) or number < low:
                raise ConfigError(f"service.mirror: {key} must be an integer >= {low}")
            values[key] = number
    if "score_tolerance" in section:
        tolerance = section["score_tolerance"]
        if (isinstance(tolerance, bool) or not isinstance(tolerance, int | float)
                or not math.isfinite(tolerance) or tolerance < 0):
            raise ConfigError("service.mirror: score_tolerance must be a number >= 0")
        values["score_tolerance"] = float(tolerance)
    if "timeout" in section:
        timeout_ms = parse_duration(section["timeout"], what="service.mirror timeout")
        if timeout_ms <= 0:
            raise ConfigError("service.mirror: timeout must be above 0, e.g. 2s")
        values["timeout_s"] = timeout_ms / 1000.0
    if "token" in section:
        token = section["token"]
        if not isinstance(token, str) or not token.strip():
            raise ConfigError("service.mirror: token must be a non-empty string")
        values["token"] = token
    token_env = os.environ.get(MIRROR_TOKEN_ENV)
    if token_env:
        values["token"] = token_env
    return replace(flag if flag is not None else MirrorSettings(url=url), **values)
