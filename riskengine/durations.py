"""Durations as written in configs (`90s`, `5m`, `1h`, `7d`) to integer milliseconds."""

from __future__ import annotations

import re

from riskengine.exceptions import ConfigError

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"\s*([0-9]+)\s*(ms|s|m|h|d)\s*\Z")


def parse_duration(text: object, *, what: str = "duration") -> int:
    """Return milliseconds for a duration such as ``"1h"``; integers are milliseconds.

    >>> parse_duration("90s")
    90000
    >>> parse_duration("1h")
    3600000
    """
    if isinstance(text, bool):
        raise ConfigError(f"{what}: expected a duration like '5m', got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ConfigError(f"{what}: a duration cannot be negative, got {text}")
        return text
    if not isinstance(text, str):
        raise ConfigError(f"{what}: expected a duration like '5m', got {text!r}")
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(
            f"{what}: {text!r} is not a duration; write a whole number and one of "
            "ms, s, m, h, d (for example '90s', '1h', '7d')"
        )
    return int(match.group(1)) * _UNITS_MS[match.group(2)]
