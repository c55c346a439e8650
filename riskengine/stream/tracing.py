"""The stream loop's decisions with tracing on (imported only then).

Each message is decided on its own (`StreamWorker.decide`, not the batched engine loop)
under a ``riskengine.evaluate`` consumer span, the child of the trace context the source
read from it (none or a malformed one: a new trace), with the ``riskengine.features`` and
``riskengine.rules`` children of riskengine/tracing/otel.py. The decision goes to the
sink with that span's context, so the trace goes on downstream. A poison message's span
is failed with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from time import time_ns
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from riskengine.stream.base import PoisonMessage
from riskengine.stream.loop import Batch
from riskengine.stream.worker import Decided, StreamWorker
from riskengine.tracing.otel import DecideClock, Tracer, decision_attributes

__all__ = ["StreamTracing"]


class StreamTracing:
    """Decides a batch message by message, each under its span."""

    def __init__(self, tracer: Tracer, worker: StreamWorker) -> None:
        self.tracer = tracer
        self.worker = worker
        self.clock = DecideClock(worker.engine)

    def decide_batch(self, batch: Batch[Any], carrier: Callable[[Any], Mapping[str, str]],
                     where: Callable[[int], str]
                     ) -> tuple[list[Decided | PoisonMessage | None], list[dict[str, str]]]:
        """The outcomes of `batch` (as `StreamWorker.decide_batch`) and the trace context
        each decision carries on; `carrier(message)` reads a message's context."""
        tracer, worker, clock = self.tracer, self.worker, self.clock
        clocks = batch.clocks
        outcomes: list[Decided | PoisonMessage | None] = []
        contexts: list[dict[str, str]] = []
        for i, message in enumerate(batch.messages):
            place = where(i)
            span = tracer.start("riskengine.evaluate", tracer.extract(carrier(message)),
                                SpanKind.CONSUMER, {"riskengine.scene": worker.scene,
                                                    "riskengine.source": place})
            clock.reset()
            started = time_ns()
            try:
                outcome = worker.decide(batch.values[i], place,
                                        None if clocks is None else clocks[i])
                if not span.is_recording():  # the sampler left this message out
                    pass
                elif isinstance(outcome, Decided):
                    tracer.steps(span, started, clock)
                    span.set_attributes(decision_attributes(outcome.decision))
                elif isinstance(outcome, PoisonMessage):
                    span.set_attribute("riskengine.poison", outcome.kind)
                    span.set_status(Status(StatusCode.ERROR, str(outcome)[:500]))
                else:
                    span.set_attribute("riskengine.stopped", True)
            finally:
                span.end()
            outcomes.append(outcome)
            contexts.append(tracer.carrier(span))
            if outcome is None:  # stopping: the rest stay unread
                rest = len(batch.messages) - i - 1
                outcomes.extend([None] * rest)
                contexts.extend({} for _ in range(rest))
                break
        return outcomes, contexts

    def close(self) -> None:
        self.tracer.close()
