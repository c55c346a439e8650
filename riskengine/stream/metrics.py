"""Prometheus metrics of a stream worker, served on ``--metrics-port``.

- ``riskengine_stream_messages_total{outcome}``: messages consumed, by what became of
  them: ``decided`` (a decision produced), ``redelivered`` (of those, marked as
  redeliveries), ``dead_lettered``, ``rebuilt`` (re-read after an unclean stop, not
  produced again), ``skipped`` (before a replay's start time). Throughput is its rate.
- ``riskengine_stream_decisions_total{decision}``: accept / review / reject.
- ``riskengine_stream_consumer_lag{topic,partition}``: messages between the next offset
  the worker will read and the partition's high watermark (as last fetched; refreshed
  at most once a second); for a Redis stream, the group's lag (XINFO GROUPS), as
  partition "0".
- ``riskengine_stream_batch_seconds``: time to decide, produce, flush and commit a batch.
- ``riskengine_stream_state_waits_total``: times the stream was held because the shared
  state did not answer.
- ``riskengine_stream_assigned_partitions``: partitions the worker reads now (set at
  each assignment and revocation; 1 for a Redis stream).

Each worker has its own registry (several workers may live in one process, in tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from riskengine.stream.base import StreamError

__all__ = ["StreamMetrics"]

OUTCOMES = ("decided", "redelivered", "dead_lettered", "rebuilt", "skipped")


class StreamMetrics:
    """The worker's metrics; `serve(port)` exposes them over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("riskengine_stream_messages_total",
                                "Messages consumed, by outcome.", ["outcome"],
                                registry=self.registry)
        for outcome in OUTCOMES:
            self.messages.labels(outcome)
        self.decisions = Counter("riskengine_stream_decisions_total",
                                 "Decisions produced, by decision.", ["decision"],
                                 registry=self.registry)
        self.lag = Gauge("riskengine_stream_consumer_lag",
                         "Messages behind the partition's high watermark.",
                         ["topic", "partition"], registry=self.registry)
        self.batch_seconds = Histogram("riskengine_stream_batch_seconds",
                                       "Seconds to decide, produce, flush and commit a batch.",
                                       registry=self.registry,
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.state_waits = Counter("riskengine_stream_state_waits_total",
                                   "Times the stream was held for the shared state.",
                                   registry=self.registry)
        self.assigned = Gauge("riskengine_stream_assigned_partitions",
                              "Partitions this worker reads now.", registry=self.registry)
        self._seen: dict[str, int] = {}
        self._server: Any = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on `addr:port` (0: any free port); returns the port. An address
        or port that cannot be listened on raises `StreamError`."""
        try:
            server, _ = start_http_server(port, addr=addr, registry=self.registry)
        except (OSError, UnicodeError) as exc:
            raise StreamError(f"cannot serve metrics on {addr}:{port}: {exc}; give a "
                              f"local address (--metrics-host) and a free port "
                              f"(--metrics-port)") from None
        self._server = server
        return int(server.server_port)

    def record(self, counts: Mapping[str, int], by_decision: Mapping[str, int],
               state_waits: int) -> None:
        """Bring the counters up to the worker's running totals."""
        for outcome in OUTCOMES:
            self._advance(self.messages.labels(outcome), f"m:{outcome}", counts[outcome])
        for decision, total in by_decision.items():
            self._advance(self.decisions.labels(decision), f"d:{decision}", total)
        self._advance(self.state_waits, "waits", state_waits)

    def _advance(self, counter: Any, key: str, total: int) -> None:
        step = total - self._seen.get(key, 0)
        if step > 0:
            counter.inc(step)
            self._seen[key] = total

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
