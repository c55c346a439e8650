"""The tracer behind `riskengine.tracing.open_tracing`: an OpenTelemetry SDK tracer
provider of its own (the process-wide one is left alone), W3C trace context in and out,
and the spans of a decision.

Spans of one decision (the service's evaluate request, the stream worker's message):

- ``riskengine.evaluate``: the whole of it, with the decision's attributes
  (`decision_attributes`);
- ``riskengine.features``: the state backend computing the features, up to deciding;
- ``riskengine.rules``: `SceneRuntime.decide` (model scores, list checks, the arms'
  rules, the policy);
- ``riskengine.decision_log`` (service): the wait for the decision log's commit.

The engine imports nothing of this: `DecideClock` wraps each scene's `decide` from
outside and notes when it ran, and the features and rules spans are written afterwards
with those times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.tracing import TRACE_FIELDS, TracingSettings

__all__ = ["TRACE_FIELDS", "DecideClock", "Span", "SpanKind", "Tracer",
           "decision_attributes"]

_UNKNOWN_SERVICE = "unknown_service"


class Tracer:
    """Starts spans and carries their context (W3C ``traceparent`` / ``tracestate``)."""

    def __init__(self, settings: TracingSettings) -> None:
        resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        named = str(resource.attributes.get("service.name", ""))
        if not named or named.startswith(_UNKNOWN_SERVICE):
            resource = resource.merge(Resource({"service.name": settings.service}))
        self.provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
        exporter: SpanExporter = settings.exporter
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            url = None if settings.endpoint is None else f"{settings.endpoint}/v1/traces"
            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(url)))
        self.tracer = self.provider.get_tracer("riskengine")
        self.propagator = TraceContextTextMapPropagator()

    def extract(self, carrier: Mapping[str, str]) -> Context:
        """The context `carrier` continues; an empty one (a new trace) when it holds no
        valid ``traceparent``."""
        return self.propagator.extract(carrier)

    def carrier(self, span: Span) -> dict[str, str]:
        """The fields that continue `span`'s trace elsewhere."""
        out: dict[str, str] = {}
        self.propagator.inject(out, trace.set_span_in_context(span))
        return out

    def start(self, name: str, parent: Context | None, kind: SpanKind,
              attributes: Mapping[str, Any] | None = None) -> Span:
        """A span started now, child of `parent` (None: of the current span)."""
        return self.tracer.start_span(name, parent, kind, attributes)

    def interval(self, name: str, parent: Span, start_ns: int, end_ns: int,
                 attributes: Mapping[str, Any] | None = None) -> None:
        """A child of `parent` that ran from `start_ns` to `end_ns` (epoch ns)."""
        self.tracer.start_span(name, trace.set_span_in_context(parent),
                               attributes=attributes, start_time=start_ns
                               ).end(end_time=end_ns)

    def steps(self, parent: Span, started_ns: int, clock: DecideClock) -> None:
        """The features and rules children of a one-event `parent` that began at
        `started_ns`, from the times `clock` noted (none when the event was not
        decided: a duplicate, a fallback)."""
        if clock.calls != 1:
            return
        self.interval("riskengine.features", parent, started_ns, clock.began)
        self.interval("riskengine.rules", parent, clock.began, clock.ended)

    def close(self) -> None:
        """Export what is pending and stop."""
        self.provider.shutdown()


def failed(span: Span, error: BaseException) -> None:
    """Mark `span` as failed by `error`."""
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))


def decision_attributes(decision: Decision) -> dict[str, Any]:
    """What a span says of one decision."""
    return {"riskengine.scene": decision.scene, "riskengine.event_id": decision.event_id,
            "riskengine.decision": decision.decision, "riskengine.score": decision.score,
            "riskengine.arm": decision.arm,
            "riskengine.ruleset_version": decision.ruleset_version,
            "riskengine.duplicate": decision.duplicate,
            "riskengine.degraded": decision.degraded, "riskengine.late": decision.late}


def batch_attributes(decisions: Sequence[Decision]) -> dict[str, Any]:
    """What a span says of a batch's decisions: how many, and of each action."""
    out: dict[str, Any] = {"riskengine.events": len(decisions),
                           "riskengine.duplicates": sum(d.duplicate for d in decisions),
                           "riskengine.degraded": sum(d.degraded for d in decisions)}
    for decision in decisions:
        key = f"riskengine.decisions.{decision.decision}"
        out[key] = out.get(key, 0) + 1
    return out


class DecideClock:
    """Wraps `SceneRuntime.decide` of each scene of `engine` (on the instance; the class
    and other engines are untouched) to note when it ran: `reset` before an evaluation,
    then `calls`, the last call's `began` / `ended` and the `busy` total (epoch ns)."""

    def __init__(self, engine: Engine) -> None:
        self.calls = 0
        self.began = self.ended = self.busy = 0
        for name in engine.scenes:
            runtime = engine.scene(name)
            runtime.decide = self._timed(runtime.decide)  # type: ignore[method-assign]

    def reset(self) -> None:
        self.calls = self.busy = 0

    def _timed(self, decide: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            began = time_ns()
            result = decide(*args)
            self.began, self.ended = began, time_ns()
            self.calls += 1
            self.busy += self.ended - began
            return result

        return timed
