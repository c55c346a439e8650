"""The shared state's circuit breaker in /metrics (a service on ``--state redis://…``).

- ``riskengine_state_breaker_open``: 1 while the breaker is not closed — open (each
  scene decides with its fallback without asking Redis) or half_open (one probe call is
  out to see whether Redis answers again) — else 0.
- ``riskengine_state_breaker_opens_total``: how many times it has opened (a breaker that
  opens and closes between two scrapes still shows here).

Read from the breaker (riskengine/state/breaker.py) whenever /metrics is scraped, so the
decision path touches no Prometheus object. In-memory state has no breaker: then neither
is listed.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from riskengine.state.breaker import CLOSED, CircuitBreaker

__all__ = ["StateBreakerCollector", "state_breaker"]


class StateBreakerCollector(Collector):
    """Reads one breaker's state and the number of times it opened."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def collect(self) -> Iterator[Metric]:
        breaker = self.breaker
        yield GaugeMetricFamily(
            "riskengine_state_breaker_open",
            "1 while the shared state's circuit breaker is open or half open (decisions are "
            "the scenes' fallbacks), 0 while it is closed",
            value=0 if breaker.state == CLOSED else 1)
        yield CounterMetricFamily(
            "riskengine_state_breaker_opens",
            "Times the shared state's circuit breaker has opened", value=breaker.opened)


def state_breaker(state: object) -> CircuitBreaker | None:
    """The circuit breaker of a state backend, or None when it has none (in memory)."""
    breaker = getattr(state, "breaker", None)
    return breaker if isinstance(breaker, CircuitBreaker) else None
