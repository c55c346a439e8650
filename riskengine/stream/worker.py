"""What every stream worker does per message, whatever the transport: decode, decide,
classify poison, hold the stream while the shared state is away, count. The stream loop
(`riskengine.stream.loop`) calls it per batch.

`StreamWorker.decide(value)` gives one of:

- `Decided(decision, fresh)`: `fresh` is False when the decision is the remembered one of
  an event id decided before (a redelivery: nothing was counted again);
- a `PoisonMessage` (not JSON, not an object, refused by the scene, an engine error on
  this one event): for the dead-letter sink;
- None: the worker was asked to stop while it waited for the state; the message stays
  unacknowledged.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.exceptions import EventValidationError
from riskengine.stream.base import PoisonMessage, WorkerStats
from riskengine.stream.codec import decode_event
from riskengine.stream.metrics import StreamMetrics

__all__ = ["Decided", "StreamWorker"]

log = logging.getLogger("riskengine.stream")


class Decided(NamedTuple):
    decision: Decision
    fresh: bool


class StreamWorker:
    """The transport-independent part of a worker (see the module docstring)."""

    def __init__(self, engine: Engine, scene: str, degraded_retry_s: float = 0.5) -> None:
        engine.scene(scene)  # UnknownSceneError now, not per event
        self.engine = engine
        self.scene = scene
        self.degraded_retry_s = degraded_retry_s
        self.stats = WorkerStats()
        self.metrics = StreamMetrics()
        self._stop = threading.Event()
        self._by_decision: Counter[str] = Counter()

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight and return (any thread, signals)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def decide(self, value: bytes | None, where: str, clock: Hashable = None
               ) -> Decided | PoisonMessage | None:
        """Decide one message; `clock` is its clock domain (its partition, see
        `Engine.evaluate`)."""
        engine, scene = self.engine, self.scene
        try:
            event = decode_event(value)
            decision = engine.evaluate(scene, event, clock=clock)
            if decision.fallback:
                answered = self._wait_for_state(event, clock)
                if answered is None:
                    return None
                decision = answered
        except PoisonMessage as exc:
            return exc.with_traceback(None)  # kept past the batch: no frames with it
        except EventValidationError as exc:
            return PoisonMessage("invalid-event", str(exc), field=exc.field)
        except Exception as exc:  # one event must not stop the stream
            log.exception("engine failed on %s", where)
            return PoisonMessage("engine-error", f"{type(exc).__name__}: {exc}")
        return Decided(decision, not decision.duplicate)

    def decide_batch(self, values: list[bytes | None], where: Callable[[int], str],
                     clocks: Sequence[Hashable] | None = None
                     ) -> list[Decided | PoisonMessage | None]:
        """`decide` for a batch, in order. With in-memory state the valid events are
        decided in one loop of the engine per run of messages on one clock
        (`Engine.decide_parsed`); `where(i)` names the i-th message in logs, `clocks[i]`
        its clock domain (None: one clock). After a None (stopping) the rest is None."""
        engine = self.engine
        if clocks is None:
            clocks = [None] * len(values)
        if engine.shared_state:
            out: list[Decided | PoisonMessage | None] = []
            for i, value in enumerate(values):
                outcome = self.decide(value, where(i), clocks[i])
                out.append(outcome)
                if outcome is None:
                    out.extend([None] * (len(values) - i - 1))
                    break
            return out
        parse = engine.scene(self.scene).parse
        out = [None] * len(values)
        parsed: list[dict[str, Any]] = []
        slots: list[int] = []
        for i, value in enumerate(values):
            try:
                parsed.append(parse(decode_event(value)))
                slots.append(i)
            except PoisonMessage as exc:
                out[i] = exc.with_traceback(None)
            except EventValidationError as exc:
                out[i] = PoisonMessage("invalid-event", str(exc), field=exc.field)
            except Exception as exc:  # one message must not stop the stream
                log.exception("the scene's parser failed on %s", where(i))
                out[i] = PoisonMessage("engine-error", f"{type(exc).__name__}: {exc}")
        try:
            decisions: list[Decision] = []
            start = 0
            while start < len(slots):  # one loop of the engine per run on one clock
                clock = clocks[slots[start]]
                end = start + 1
                while end < len(slots) and clocks[slots[end]] == clock:
                    end += 1
                decisions += engine.decide_parsed(self.scene, parsed[start:end], clock=clock)
                start = end
        except Exception:  # one event broke the loop: decide one by one to find it (those
            # the loop had decided are answered from the guard, marked as redeliveries)
            log.exception("the batch failed in the engine: deciding it event by event")
            for i in slots:
                out[i] = self.decide(values[i], where(i), clocks[i])
            return out
        for i, decision in zip(slots, decisions, strict=True):
            out[i] = Decided(decision, not decision.duplicate)
        return out

    def _wait_for_state(self, event: dict[str, Any], clock: Hashable) -> Decision | None:
        """The shared state did not answer (the engine gave its degraded fallback): a
        stream can wait, so the event is decided again until the state answers, or None
        when the worker is asked to stop meanwhile."""
        self.stats.state_waits += 1
        self.record_metrics()  # seen on /metrics while the stream is held, not after
        log.warning("the state is unavailable: holding the stream until it answers")
        while not self._stop.wait(self.degraded_retry_s):
            decision = self.engine.evaluate(self.scene, event, clock=clock)
            if not decision.fallback:
                log.warning("the state answers again: the stream goes on")
                return decision
        return None

    def counted_many(self, decisions: Sequence[str], redelivered: int) -> None:
        """Count produced decisions (their `decision`s), `redelivered` of them marked as
        redeliveries."""
        self.stats.decided += len(decisions)
        self.stats.redelivered += redelivered
        self._by_decision.update(decisions)

    def record_metrics(self) -> None:
        stats = self.stats
        counts = {"decided": stats.decided, "redelivered": stats.redelivered,
                  "dead_lettered": stats.dead_lettered, "rebuilt": stats.rebuilt,
                  "skipped": stats.skipped}
        self.metrics.record(counts, self._by_decision, stats.state_waits)

    def finish(self) -> WorkerStats:
        self.record_metrics()
        self.metrics.close()
        self.stats.by_decision = dict(self._by_decision)
        return self.stats
