"""The evaluate lane with tracing on: one span per request, imported only then.

``riskengine.evaluate`` (a server span, the child of the request's W3C ``traceparent``
when it has a valid one, else a new trace) covers the request; its children are written
by `TracedCalls` around the runtime's calls the lane makes:

- one event: ``riskengine.features`` and ``riskengine.rules`` (see riskengine/tracing/
  otel.py), then ``riskengine.decision_log``, the wait for the commit (failed, with the
  error, when the log refused it: the request answers 503);
- a batch: ``riskengine.decide``, the engine's loop over the batch (the time spent in the
  rules of all its events as an attribute), then ``riskengine.decision_log``: three spans
  whatever the batch's size.

The request span holds the decision's attributes (a batch: its counts), the response
status and, for a refused request, the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskengine.decisionlog import LogRecord
from riskengine.exceptions import RiskEngineError
from riskengine.service.errors import ApiError
from riskengine.service.evaluation import EvaluateEndpoints
from riskengine.service.lane import EvaluateLane
from riskengine.service.runtime import Decided, ServiceRuntime
from riskengine.tracing import TRACE_FIELDS
from riskengine.tracing.otel import (
    DecideClock,
    Tracer,
    batch_attributes,
    decision_attributes,
    failed,
)

__all__ = ["TracedCalls", "TracedLane"]

_TRACE_HEADERS = frozenset(name.encode() for name in TRACE_FIELDS)


class TracedLane(EvaluateLane):
    """`EvaluateLane` with a span per evaluate request (see the module docstring)."""

    answers_in_protocol = False

    def __init__(self, app: ASGIApp, runtime: ServiceRuntime, tracer: Tracer) -> None:
        super().__init__(app, runtime)
        self.tracer = tracer
        self.endpoints = EvaluateEndpoints(runtime, TracedCalls(runtime, tracer))

    async def answer(self, scene: str, batch: bool, scope: Scope, receive: Receive,
                     send: Send) -> None:
        carrier = {name.decode(): value.decode("latin-1")
                   for name, value in scope["headers"] if name in _TRACE_HEADERS}
        span = self.tracer.start("riskengine.evaluate", self.tracer.extract(carrier),
                                 SpanKind.SERVER,
                                 {"riskengine.scene": scene, "riskengine.batch": batch})

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status: int = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            await send(message)

        try:
            with trace.use_span(span):
                await super().answer(scene, batch, scope, receive, noted)
        finally:
            span.end()

    async def evaluate(self, scene: str, batch: bool, scope: Scope, receive: Receive) -> bytes:
        try:
            return await super().evaluate(scene, batch, scope, receive)
        except (ApiError, RiskEngineError) as exc:
            trace.get_current_span().set_attribute("riskengine.error", str(exc)[:500])
            raise


class TracedCalls:
    """The runtime as the traced lane calls it: `decide`, `decide_many` and `committed`
    write their spans under the request's; everything else is the runtime's."""

    def __init__(self, runtime: ServiceRuntime, tracer: Tracer) -> None:
        self.runtime = runtime
        self.tracer = tracer
        self.clock = DecideClock(runtime.engine)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runtime, name)

    def decide(self, scene: str, raw: object) -> Decided:
        span = trace.get_current_span()
        clock = self.clock
        clock.reset()
        started = time_ns()
        decided = self.runtime.decide(scene, raw)
        if span.is_recording():  # not when the sampler left this request out
            self.tracer.steps(span, started, clock)
            span.set_attributes(decision_attributes(decided.decision))
        return decided

    def decide_many(self, scene: str, raws: Sequence[object]) -> list[Decided]:
        span = trace.get_current_span()
        clock = self.clock
        clock.reset()
        started = time_ns()
        decided = self.runtime.decide_many(scene, raws)
        if not span.is_recording():
            return decided
        self.tracer.interval("riskengine.decide", span, started, time_ns(),
                             {"riskengine.events": len(decided),
                              "riskengine.rules_ms": clock.busy / 1e6})
        span.set_attributes(batch_attributes([d.decision for d in decided]))
        return decided

    async def committed(self, records: Sequence[LogRecord]) -> None:
        if not records or not trace.get_current_span().is_recording():
            await self.runtime.committed(records)
            return
        span = self.tracer.start("riskengine.decision_log", None, SpanKind.INTERNAL,
                                 {"riskengine.records": len(records)})
        try:
            await self.runtime.committed(records)
        except ApiError as exc:
            failed(span, exc)
            raise
        finally:
            span.end()
