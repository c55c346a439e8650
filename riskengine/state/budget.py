"""The budget of a round trip to shared state: the default, and the range the service
(``serve --state-timeout``, ``service: state_timeout``) and the stream worker
(``worker --state-timeout``, ``worker: state_timeout``) accept. The batch jobs on Redis
state keep their own, longer budget (`riskengine.batch.state_targets`).

>>> parse_state_timeout("100ms", "--state-timeout")
100
>>> parse_state_timeout("2m", "--state-timeout")
Traceback (most recent call last):
...
riskengine.exceptions.ConfigError: --state-timeout must be from 1ms to 60s; got '2m'
"""

from __future__ import annotations

from typing import Any

from riskengine.durations import parse_duration
from riskengine.exceptions import ConfigError

__all__ = ["DEFAULT_STATE_TIMEOUT_MS", "MAX_STATE_TIMEOUT_MS", "parse_state_timeout"]

DEFAULT_STATE_TIMEOUT_MS = 50
"""What a decision waits for each Redis round trip before it answers the fallback."""
MAX_STATE_TIMEOUT_MS = 60_000


def parse_state_timeout(value: Any, what: str) -> int:
    """A state timeout (``50ms``, ``1s``, or milliseconds as a number) in whole
    milliseconds, from 1 ms to a minute."""
    timeout_ms = parse_duration(value, what=what)
    if not 1 <= timeout_ms <= MAX_STATE_TIMEOUT_MS:
        raise ConfigError(f"{what} must be from 1ms to 60s; got {value!r:.40}")
    return timeout_ms
