"""A circuit breaker in front of a state store: fail fast while it is down, probe it back.

States:

``closed``
    calls go through; each call's outcome is recorded. The breaker opens after
    `failure_threshold` consecutive failures, or when at least `min_calls` of the last
    `window` calls were made and the share of failures among them reaches `failure_rate`.
``open``
    `allow()` says no (the caller answers without the store: fail fast) until
    `cooldown_ms` have passed since it opened.
``half_open``
    the first `allow()` after the cooldown lets one call through, the *probe*; others are
    refused while it is out. A successful probe closes the breaker (its history
    cleared); a failed one opens it for another cooldown. A probe that never reports
    (its caller died) is given up after a cooldown, and a new one goes.

So the breaker closes by itself when the store is back: no operator action, no timer
thread; the next call after the cooldown is the probe.

    >>> now = [0.0]
    >>> breaker = CircuitBreaker(failure_threshold=2, cooldown_ms=100, clock=lambda: now[0])
    >>> breaker.failure(); breaker.failure(); breaker.state
    'open'
    >>> breaker.allow()
    False
    >>> now[0] = 0.1; breaker.allow(), breaker.allow(), breaker.state
    (True, False, 'half_open')
    >>> breaker.success(); breaker.state
    'closed'

Thread-safe (one lock, held for a few attribute updates).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from riskengine.exceptions import ConfigError

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


class CircuitBreaker:
    """closed → open → half_open → closed (see the module docstring).

    `clock` returns seconds (monotonic); tests pass a fake one.
    """

    def __init__(self, *, failure_threshold: int = 5, failure_rate: float = 0.5,
                 window: int = 50, min_calls: int = 20, cooldown_ms: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1 or window < 1 or min_calls < 1 or cooldown_ms < 0:
            raise ConfigError("circuit breaker: failure_threshold, window and min_calls must "
                              "be 1 or more, cooldown_ms 0 or more")
        if not 0.0 < failure_rate <= 1.0:
            raise ConfigError("circuit breaker: failure_rate must be in (0, 1]")
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate
        self.window = window
        self.min_calls = min(min_calls, window)
        self.cooldown_s = cooldown_ms / 1000.0
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._recent: deque[bool] = deque(maxlen=window)  # True: a failure
        self._recent_failures = 0
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_at: float | None = None
        self.opened = 0
        """How many times the breaker has opened."""
        self.rejected = 0
        """Calls refused (failed fast) while open or while a probe was out."""
        self.failures = 0
        self.successes = 0

    @property
    def state(self) -> str:
        """closed, open or half_open (open turns half_open on the next `allow()` after the
        cooldown)."""
        return self._state

    def allow(self) -> bool:
        """May a call go to the store now? Every allowed call must report `success()` or
        `failure()`."""
        if self._state == CLOSED:  # the common case, without the lock
            return True
        with self._lock:
            now = self._clock()
            if self._state == OPEN:
                if now - self._opened_at < self.cooldown_s:
                    self.rejected += 1
                    return False
                self._state = HALF_OPEN
                self._probe_at = now
                return True
            if self._state == HALF_OPEN:
                if self._probe_at is not None and now - self._probe_at < self.cooldown_s:
                    self.rejected += 1
                    return False
                self._probe_at = now  # no probe out, or it never reported: a new one
                return True
            return True

    def success(self) -> None:
        with self._lock:
            self.successes += 1
            self._consecutive = 0
            if self._state == HALF_OPEN:
                self._close()
            elif self._state == CLOSED:
                self._record(False)
            # open: a call let through before the breaker opened; only a probe closes it

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            self._consecutive += 1
            if self._state == HALF_OPEN:
                self._open()
                return
            if self._state == OPEN:  # a call allowed before the breaker opened
                return
            self._record(True)
            calls = len(self._recent)
            if self._consecutive >= self.failure_threshold or (
                    calls >= self.min_calls
                    and self._recent_failures >= self.failure_rate * calls):
                self._open()

    def _record(self, failed: bool) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._recent_failures -= 1
        recent.append(failed)
        if failed:
            self._recent_failures += 1

    def _open(self) -> None:
        self._state = OPEN
        self._opened_at = self._clock()
        self._probe_at = None
        self.opened += 1

    def _close(self) -> None:
        self._state = CLOSED
        self._probe_at = None
        self._consecutive = 0
        self._recent.clear()
        self._recent_failures = 0

    def stats(self) -> dict[str, Any]:
        """The state and the counters, for metrics."""
        return {"state": self._state, "opened": self.opened, "rejected": self.rejected,
                "failures": self.failures, "successes": self.successes}
