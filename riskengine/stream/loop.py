"""The one stream loop: consume → decide → produce → flush → commit → checkpoint, whatever
the transport.

A transport is two adapters. The `Source` starts reading (a Kafka subscription with its
rebalance callbacks, a replay's assignment; a Redis consumer group, its own pending
entries, XAUTOCLAIM), polls a `Batch`, commits or acknowledges what the loop says is
done, reports its lag and says when a replay has read to its end. The `Sink` produces
decisions and dead letters and flushes them. The loop owns everything else, once:

- per batch: decide (`StreamWorker.decide_batch`, each message on its clock domain); a
  decision to the sink, marked as a redelivery when the engine remembered it or the
  source is unsure whether it was produced before; a poison message to the dead-letter
  sink (logged and skipped without one); a quiet message (decided and produced before
  an unclean stop or a rebalance) only rebuilds the state; then flush, and only once
  the sink took everything, commit — at least once, never a commit past what was lost;
- stop, `max_events` and idle exit; the batch limit; metrics and progress at most once a
  second; the checkpoint (restore at start, every `checkpoint_interval_s`, and at the
  end with the clean-end mark);
- the garbage collector kept off the state while it runs (`riskengine.longlived`: what
  outlives a batch is frozen; on the example config the collector otherwise took a third
  of the engine's time as the state grew).

`dry_run` opens no sink: decisions are counted, poison messages logged.

With tracing on (`settings.tracing`), each message is decided under its own span, the
child of the trace context the source read from it (Kafka headers, Redis Streams entry
fields ``traceparent`` / ``tracestate``), and its decision goes to the sink with that
span's context (riskengine/stream/tracing.py); off, nothing of it is imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.longlived import BATCH_YOUNG_THRESHOLD, settled_memory
from riskengine.stream.base import CommonSettings, PoisonMessage, WorkerStats
from riskengine.stream.checkpoint import Checkpoint, PreviousRun
from riskengine.stream.metrics import StreamMetrics
from riskengine.stream.worker import Decided, StreamWorker
from riskengine.tracing import open_tracing

if TYPE_CHECKING:
    from riskengine.stream.tracing import StreamTracing

__all__ = ["Batch", "Offsets", "Sink", "Source", "StreamLoop"]

log = logging.getLogger(__name__)

M = TypeVar("M")
"""A transport's message (Kafka: the message with its place; Redis: an entry)."""
M_in = TypeVar("M_in", contravariant=True)

Offsets = dict[tuple[str, int], int]
"""Per (topic, partition): the next offset to read, as a checkpoint records it."""


@dataclass(slots=True)
class Batch(Generic[M]):
    """Messages polled at once, in order, with what the loop needs of each (by index)."""

    messages: list[M]
    values: list[bytes | None]
    """What is decided: one JSON event each (None: no value)."""
    clocks: list[Hashable] | None = None
    """The clock domain of each message (its partition); None: one clock."""
    quiet: list[bool] | None = None
    """Decide only, to rebuild the state: its decision was produced before (None: none)."""
    unsure: list[bool] | None = None
    """Its decision may have been produced before: marked as a redelivery (None: none)."""
    skipped: int = 0
    """Messages passed over before a replay's start time (not in `messages`)."""


class Source(Protocol[M]):
    """Where the events come from."""

    no_value: str
    """The error of a message without a value, for its dead letter."""
    ready_at: float | None
    """`time.monotonic()` when reading began (idle time counts from it); None: not yet."""

    def start(self, resume: Offsets, previous: PreviousRun | None,
              save: Callable[[], None] | None) -> None:
        """Begin reading: `resume` is what the restored checkpoint covers, `previous` how
        the last run on it ended, `save` checkpoints now (None: no checkpoint folder)."""

    def poll(self, limit: int) -> Batch[M] | None:
        """Up to `limit` messages, waiting a little for them; None when none came."""

    def where(self, message: M) -> str:
        """The message's place, for logs."""

    def trace_carrier(self, message: M) -> Mapping[str, str]:
        """The W3C trace context the message carries (``traceparent``, ``tracestate``;
        empty when none), read only with tracing on."""

    def commit(self, batch: Batch[M], done: int) -> bool:
        """Commit (acknowledge) the first `done` messages of `batch`, whose outcomes the
        sink took; True when something was committed."""

    def report(self) -> str:
        """Refresh the lag metrics; say where the source is, for the progress line."""

    def at_end(self) -> bool:
        """A replay has read everything it was to read."""

    def offsets(self) -> Offsets:
        """What the state covers, for a checkpoint."""

    def close(self) -> None: ...


class Sink(Protocol[M_in]):
    """Where decisions and dead letters go."""

    def decision(self, message: M_in, decision: Decision, redelivery: bool,
                 trace: Mapping[str, str] | None = None) -> None:
        """Send `decision`; `trace`: the trace context it carries (tracing on)."""

    def dead_letter(self, message: M_in, error: PoisonMessage) -> bool:
        """Send `message` with `error` to the dead letters; False when there is no
        dead-letter destination."""

    def flush(self) -> None:
        """Return once everything sent is taken; `StreamError` when something was not."""

    def close(self) -> None: ...


class StreamLoop(Generic[M]):
    """Runs the `Source` that `source(metrics)` makes into the `Sink` that `sink()` opens
    (none in a dry run), deciding with a `StreamWorker` on `engine`; `run` until `stop`,
    `max_events`, idle, or the end of a replay. An unknown scene is refused at once
    (`UnknownSceneError`), before any connection."""

    def __init__(self, engine: Engine, settings: CommonSettings,
                 source: Callable[[StreamMetrics], Source[M]],
                 sink: Callable[[], Sink[M]]) -> None:
        self.worker = StreamWorker(engine, settings.scene, settings.degraded_retry_s)
        self.source = source(self.worker.metrics)
        self._open_sink = sink
        self.sink: Sink[M] | None = None
        self.settings = settings
        self.tracing: StreamTracing | None = None
        tracer = open_tracing(settings.tracing)
        if tracer is not None:
            from riskengine.stream.tracing import StreamTracing

            self.tracing = StreamTracing(tracer, self.worker)
        self.checkpoint = Checkpoint(settings.state_dir) if settings.state_dir else None
        self._reported_at = 0.0
        self._progress_at = 0.0

    @property
    def stats(self) -> WorkerStats:
        return self.worker.stats

    def stop(self) -> None:
        """Finish the batch in flight and return (any thread, signals)."""
        self.worker.stop()

    def run(self) -> WorkerStats:
        """Process until stopped; return what was done. `StreamError` when the sink
        refuses the decisions (nothing after the last commit is committed)."""
        worker, settings, checkpoint = self.worker, self.settings, self.checkpoint
        resume: Offsets = {}
        previous = None
        save = None
        if checkpoint is not None:
            resume = checkpoint.restore(worker.engine)
            if resume:
                log.info("restored %s", checkpoint.snapshot_path)
            previous = checkpoint.begin(settings.batch_size)
            save = self._save
        if not settings.dry_run:
            self.sink = self._open_sink()
        if settings.metrics_port is not None:
            port = worker.metrics.serve(settings.metrics_port, settings.metrics_host)
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
        try:
            self.source.start(resume, previous, save)
            try:
                with settled_memory(BATCH_YOUNG_THRESHOLD):  # the collector off the state
                    self._loop()
            finally:
                try:
                    if checkpoint is not None:
                        self._save()
                        self.stats.snapshot = str(checkpoint.snapshot_path)
                        checkpoint.end_cleanly()
                finally:
                    self._report(force=True)
        finally:
            try:
                self.source.close()
            finally:
                if self.sink is not None:
                    self.sink.close()
                if self.tracing is not None:
                    self.tracing.close()
        return worker.finish()

    def _save(self) -> None:
        assert self.checkpoint is not None
        self.checkpoint.save(self.worker.engine, self.source.offsets())

    def _loop(self) -> None:
        worker, source, settings = self.worker, self.source, self.settings
        last_message = last_checkpoint = time.monotonic()
        while not worker.stopping:
            if source.at_end():
                log.info("the replay has read its source to the end: stopping")
                break
            limit = settings.batch_size
            if settings.max_events is not None:
                limit = min(limit, settings.max_events - self.stats.consumed)
                if limit <= 0:
                    break
            batch = source.poll(limit)
            self._report()
            if batch is None:
                if self._idle(last_message):
                    log.info("no message for %.1f s: stopping", settings.idle_exit_s)
                    break
                continue
            last_message = time.monotonic()
            started = time.perf_counter()
            done = self._route(batch)
            if self.sink is not None:
                self.sink.flush()
            self.stats.commits += source.commit(batch, done)
            worker.metrics.batch_seconds.observe(time.perf_counter() - started)
            if (self.checkpoint is not None and time.monotonic() - last_checkpoint
                    >= settings.checkpoint_interval_s):
                self._save()
                last_checkpoint = time.monotonic()

    def _idle(self, last_message: float) -> bool:
        limit, ready = self.settings.idle_exit_s, self.source.ready_at
        if limit is None or ready is None:
            return False
        return time.monotonic() - max(last_message, ready) >= limit

    def _route(self, batch: Batch[M]) -> int:
        """Decide `batch` and hand each outcome to the sink; returns how many messages
        (from the first) are done — the rest stay uncommitted: the worker is stopping."""
        worker, source, sink, stats = self.worker, self.source, self.sink, self.stats
        messages, quiet, unsure = batch.messages, batch.quiet, batch.unsure
        stats.skipped += batch.skipped

        def where(i: int) -> str:
            return source.where(messages[i])

        traces: list[dict[str, str]] | None = None
        if self.tracing is None:
            outcomes = worker.decide_batch(batch.values, where, batch.clocks)
        else:
            outcomes, traces = self.tracing.decide_batch(batch, source.trace_carrier, where)
        done = redelivered = 0
        decided: list[str] = []
        produce = None if sink is None else sink.decision
        for i, outcome in enumerate(outcomes):
            if outcome is None:  # stopping: this message and the rest stay uncommitted
                break
            done += 1
            if quiet is not None and quiet[i]:  # decided before: the state is rebuilt
                stats.rebuilt += 1
                continue
            if outcome.__class__ is not Decided:
                assert isinstance(outcome, PoisonMessage)
                if outcome.kind == "undecodable" and batch.values[i] is None:
                    outcome = PoisonMessage("undecodable", source.no_value)
                stats.dead_lettered += 1
                if sink is None or not sink.dead_letter(messages[i], outcome):
                    log.warning("skipped %s (%s): %s", where(i), outcome.kind, outcome)
                continue
            decision, fresh = outcome
            redelivery = not fresh or (unsure is not None and unsure[i])
            if produce is not None:
                produce(messages[i], decision, redelivery,
                        None if traces is None else traces[i])
            decided.append(decision.decision)
            redelivered += redelivery
        worker.counted_many(decided, redelivered)
        return done

    def _report(self, force: bool = False) -> None:
        """Refresh the metrics and the lag (and log progress) at most once a second."""
        now = time.monotonic()
        if not force and now - self._reported_at < 1.0:
            return
        self._reported_at = now
        self.worker.record_metrics()
        where = self.source.report()
        interval = self.settings.progress_interval_s
        if interval is not None and (force or now - self._progress_at >= interval):
            self._progress_at = now
            stats = self.stats
            log.info("progress: %s decided, %s dead-lettered, %s", f"{stats.decided:,}",
                     f"{stats.dead_lettered:,}", where)
