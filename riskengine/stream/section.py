"""The project config's ``worker:`` section: stream worker settings kept with the scenes.

    worker:
      session_timeout: 6s     # Kafka consumer group session timeout (default 6s)
      processes: 2            # Kafka worker processes on this machine (default 1)

A command-line option of the same meaning wins over the section.

>>> worker_section({"session_timeout": "10s"})
WorkerSection(session_timeout_ms=10000, processes=None)
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
from riskengine.stream.base import StreamError
from riskengine.stream.kafka.group import check_session_timeout
from riskengine.stream.processes import MAX_PROCESSES

__all__ = ["WorkerSection", "worker_section"]

_KEYS = ("session_timeout", "processes")


@dataclass(frozen=True)
class WorkerSection:
    """The section's settings; None: not set there."""

    session_timeout_ms: int | None = None
    processes: int | None = None


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
    return WorkerSection(session_timeout_ms=timeout, processes=processes)


def duration(value: object, what: str) -> int:
    """`parse_duration` with the stream runtime's error."""
    try:
        return parse_duration(value, what=what)
    except ConfigError as exc:
        raise StreamError(str(exc)) from None
