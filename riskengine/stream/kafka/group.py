"""How a Kafka worker takes part in its consumer group: the session timeout.

The session timeout is how long the group waits to hear from a member before it moves
that member's partitions to the others; it also sets how soon a new group is assigned.
A Kafka broker holds the first JoinGroup of a new group for
``group.initial.rebalance.delay.ms`` (3 s by default) to gather its members; Tansu, the
broker of the tests, holds every JoinGroup for half the session timeout (its join
window), so librdkafka's default of 45 s kept a worker waiting 23 s for its first
assignment there. The worker's default is 6 s: the smallest session timeout a Kafka
broker accepts unless told otherwise (``group.min.session.timeout.ms``), a first
assignment within seconds on either broker, and a crashed worker's partitions moved
after 6 s. A long batch does not make the worker miss the session: librdkafka
heartbeats from its own thread, every third of the timeout.

>>> group_options(6000)
{'session.timeout.ms': '6000', 'heartbeat.interval.ms': '2000'}
"""

from __future__ import annotations

from riskengine.stream.base import StreamError

__all__ = ["DEFAULT_SESSION_TIMEOUT_MS", "check_session_timeout", "group_options"]

DEFAULT_SESSION_TIMEOUT_MS = 6_000
MIN_SESSION_TIMEOUT_MS = 1_000
MAX_SESSION_TIMEOUT_MS = 3_600_000
"""librdkafka's upper bound of ``session.timeout.ms``."""


def check_session_timeout(ms: int, what: str) -> int:
    """`ms` when it is a session timeout librdkafka takes; `StreamError` naming `what`."""
    if not MIN_SESSION_TIMEOUT_MS <= ms <= MAX_SESSION_TIMEOUT_MS:
        raise StreamError(f"{what}: the session timeout must be between 1s and 1h, got "
                          f"{ms} ms")
    return ms


def group_options(session_timeout_ms: int) -> dict[str, str]:
    """The librdkafka consumer settings of a session timeout (heartbeats every third)."""
    return {"session.timeout.ms": str(session_timeout_ms),
            "heartbeat.interval.ms": str(session_timeout_ms // 3)}
