"""The project config's ``worker:`` section: stream worker settings kept with the scenes.

    worker:
      session_timeout: 6s     # Kafka consumer group session timeout (default 6s)
      processes: 2            # Kafka worker processes on this machine (default 1)
      state_timeout: 1s       # with --state: the budget of each Redis round trip (50ms)

A command-line option of the same meaning wins over the section.

>>> worker_section({"session_timeout": "10s"})
WorkerSection(session_timeout_ms=10000, processes=None, state_timeout_ms=None)
>>> worker_section({"timeout": "10s"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
riskengine.stream.base.StreamError: worker: unknown keys ['timeout']; allowed: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from riskengine.durations import parse_duration
from riskengine.exceptions import ConfigError
from riskengine.state.budget import parse_state_timeout
from riskengine.stream.base import StreamError
from riskengine.stream.kafka.group import check_session_timeout
from riskengine.stream.processes import MAX_PROCESSES

__all__ = ["WorkerSection", "worker_section", "worker_state_timeout"]

_KEYS = ("session_timeout", "processes", "state_timeout")


@dataclass(frozen=True)
class WorkerSection:
    """The section's settings; None: not set there."""

    session_timeout_ms: int | None = None
    processes: int | None = None
    state_timeout_ms: int | None = None


def worker_section(section: Mapping[str, Any] | None) -> WorkerSection:
    """Validate the ``worker:`` section; `StreamError` naming the bad key."""
    section = section or {}
    unknown = sorted(str(key) for key in section if key not in _KEYS)
    if unknown:
        raise StreamError(f"worker: unknown keys {unknown}; allowed: {', '.join(_KEYS)}")
    timeout = None
    if section.get("session_timeout") is not None:
        timeout = check_session_timeout(duration(section["session_timeout"],
                                                 "worker session_timeout"),
                                        "worker session_timeout")
    processes = section.get("processes")
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int)
                                  or not 1 <= processes <= MAX_PROCESSES):
        raise StreamError(f"worker processes: expected a whole number from 1 to "
                          f"{MAX_PROCESSES}, got {str(processes)[:50]!r}")
    state_timeout = None
    if section.get("state_timeout") is not None:
        state_timeout = _state_timeout(section["state_timeout"], "worker state_timeout")
    return WorkerSection(session_timeout_ms=timeout, processes=processes,
                         state_timeout_ms=state_timeout)


def worker_state_timeout(option: str | None, state: str | None,
                         section: WorkerSection) -> int | None:
    """The budget in ms of each round trip to the shared state at `state`:
    ``--state-timeout`` (`option`), else the section's ``state_timeout``, else None (the
    engine's default, 50 ms). A worker holds its stream while the state does not answer
    within it, so a longer budget means fewer holds on a loaded Redis, not fallbacks.

    >>> worker_state_timeout("2s", "redis://h:6379/0", WorkerSection(state_timeout_ms=500))
    2000
    >>> worker_state_timeout(None, "redis://h:6379/0", WorkerSection(state_timeout_ms=500))
    500
    >>> worker_state_timeout("2s", None, WorkerSection())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    riskengine.stream.base.StreamError: --state-timeout is the budget of shared state: ...
    """
    if option is not None:
        if state is None:
            raise StreamError("--state-timeout is the budget of shared state: it needs "
                              "--state")
        return _state_timeout(option, "--state-timeout")
    return section.state_timeout_ms


def _state_timeout(value: object, what: str) -> int:
    try:
        return parse_state_timeout(value, what)
    except ConfigError as exc:
        raise StreamError(str(exc)) from None


def duration(value: object, what: str) -> int:
    """`parse_duration` with the stream runtime's error."""
    try:
        return parse_duration(value, what=what)
    except ConfigError as exc:
        raise StreamError(str(exc)) from None
