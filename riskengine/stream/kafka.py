"""The Kafka stream worker: events in, decisions out, at least once.

Per batch of up to `batch_size` messages: decode each value (one JSON object), decide it
with `Engine.evaluate`, produce the decision to the sink keyed by `event_id`; then wait
until the broker acknowledged every produced message (`flush`), and only then commit the
batch's offsets. A crash at any point re-reads from the last commit: nothing is lost, and
the engine's idempotency guard answers a re-read event from memory (marked
``"redelivery": true``) without counting it again — once the state holds it (see
`riskengine.stream.checkpoint` for the in-memory state across restarts).

Poison messages — a value that is not a JSON object, an event the scene refuses, an
engine failure on one event — go to the dead-letter topic with the original key and value
bytes and the error in headers (`riskengine.stream.codec.ERROR_HEADERS`), and the worker
goes on; without a dead-letter topic they are logged and skipped. Either way their
offsets are committed with the batch.

Partitioning. With in-memory state, one worker must see every event of an entity, in
order: either the input topic has one partition, or it is keyed by the one entity field
all the scene's features are keyed by (``pay_account`` for features ``…#pay_account``),
and each worker owns its partitions for good. Features keyed by different fields
(``pay_account`` and ``rcv_account``) cannot both be partition-local: run one worker, or
shared state. Kafka's ordering holds per partition only, so the LSN of an event is its
arrival at this worker; ``source`` in each decision gives the partition and offset.
A rebalance that moves a partition to another worker does not move its in-memory state.

Shutdown (`stop`, wired to SIGTERM/SIGINT by the CLI): the batch in flight is finished,
flushed and committed, then the state is checkpointed (with `state_dir`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.exceptions import EventValidationError
from riskengine.stream.base import KafkaTopic, PoisonMessage, StreamError, WorkerStats
from riskengine.stream.checkpoint import Checkpoint
from riskengine.stream.codec import dead_letter_headers, decision_message, decode_event

__all__ = ["KafkaWorker", "WorkerSettings"]

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 60.0
"""How long a batch may wait for the broker to acknowledge its decisions."""


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker reads, writes and how; validated when built."""

    source: KafkaTopic
    sink: KafkaTopic
    dead_letter: KafkaTopic | None = None
    group: str = "riskengine"
    scene: str = "transfer"
    state_dir: Path | None = None
    max_events: int | None = None
    idle_exit_s: float | None = None
    batch_size: int = 1000
    checkpoint_interval_s: float = 300.0
    degraded_retry_s: float = 0.5
    consumer_options: Mapping[str, str] = field(default_factory=dict)
    producer_options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group:
            raise StreamError("the consumer group must not be empty")
        if self.batch_size < 1:
            raise StreamError("batch_size must be at least 1")
        if self.max_events is not None and self.max_events < 0:
            raise StreamError("max_events must not be negative")
        if self.idle_exit_s is not None and self.idle_exit_s <= 0:
            raise StreamError("idle_exit_s must be positive")
        if self.source.topic in (self.sink.topic, getattr(self.dead_letter, "topic", None)) \
                and self.source.bootstrap == self.sink.bootstrap:
            raise StreamError(f"the source topic {self.source.topic!r} cannot also be the "
                              "sink or the dead-letter topic")


class KafkaWorker:
    """Consume, decide, produce, commit; `run` until `stop`, `max_events` or idle."""

    def __init__(self, engine: Engine, settings: WorkerSettings) -> None:
        engine.scene(settings.scene)  # UnknownSceneError now, not per event
        self.engine = engine
        self.settings = settings
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._checkpoint = Checkpoint(settings.state_dir) if settings.state_dir else None
        self._resume: dict[tuple[str, int], int] = {}
        self._acked: dict[tuple[str, int], int] = {}
        self._failures: list[str] = []
        self._assigned_at: float | None = None
        self._by_decision: Counter[str] = Counter()
        self._quiet: dict[tuple[str, int], int] = {}
        """Per partition: offsets below this were decided and acknowledged before a crash;
        they are decided again to rebuild the state, and not produced again."""
        self._unsure: dict[tuple[str, int], int] = {}
        """Per partition: offsets below this may have been produced by the run that
        crashed; their decisions are marked as redeliveries."""

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight and return (any thread, signals)."""
        self._stop.set()

    # set-up ---------------------------------------------------------------------------

    def _consumer(self) -> Consumer:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.settings.source.bootstrap,
            "group.id": self.settings.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
        conf.update(self.settings.consumer_options)
        return Consumer(conf)

    def _producer(self, bootstrap: str) -> Producer:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": 5}
        conf.update(self.settings.producer_options)
        return Producer(conf)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Start each partition at the checkpoint's offset the first time it is seen. A
        partition the checkpoint does not cover yet is checkpointed at once, at the offset
        it starts from, so that a crash before the next checkpoint can be rebuilt from it."""
        fresh = []
        for tp in partitions:
            saved = self._resume.pop((tp.topic, tp.partition), None)
            if saved is not None:
                tp.offset = saved
            elif self._checkpoint is not None and (tp.topic, tp.partition) not in self._acked:
                fresh.append(tp)
        if fresh:
            found = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in fresh],
                                       timeout=30)
            for tp in found:
                self._acked[(tp.topic, tp.partition)] = max(tp.offset, 0)
            assert self._checkpoint is not None
            self._checkpoint.save(self.engine, self._acked)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))
        if self._assigned_at is None:
            self._assigned_at = time.monotonic()
        consumer.assign(partitions)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str() if hasattr(err, 'str') else err}")

    # the loop -------------------------------------------------------------------------

    def run(self) -> WorkerStats:
        """Process until stopped; return what was done. `StreamError` when the broker
        refuses to take the decisions (nothing after the last commit is committed)."""
        settings = self.settings
        consumer = self._consumer()
        if self._checkpoint is not None:
            self._resume = self._checkpoint.restore(self.engine)
            self._acked = dict(self._resume)
            if self._resume:
                log.info("restored %s; resuming at %s", self._checkpoint.snapshot_path,
                         self._resume)
            self._plan_recovery(consumer, self._checkpoint.begin(settings.batch_size))
        sink = self._producer(settings.sink.bootstrap)
        dead = None
        if settings.dead_letter is not None:
            dead = (sink if settings.dead_letter.bootstrap == settings.sink.bootstrap
                    else self._producer(settings.dead_letter.bootstrap))
        consumer.subscribe([settings.source.topic], on_assign=self._on_assign)
        last_message = time.monotonic()
        last_checkpoint = time.monotonic()
        try:
            while not self._stop.is_set():
                limit = settings.batch_size
                if settings.max_events is not None:
                    limit = min(limit, settings.max_events - self.stats.consumed)
                    if limit <= 0:
                        break
                messages = consumer.consume(limit, timeout=0.1)
                if not messages:
                    if self._idle_for(last_message) and settings.idle_exit_s is not None:
                        log.info("no message for %.1f s: stopping", settings.idle_exit_s)
                        break
                    continue
                last_message = time.monotonic()
                pending = self._process(messages, sink, dead)
                self._flush(sink, dead)
                self._commit(consumer, pending)
                if (self._checkpoint is not None and time.monotonic() - last_checkpoint
                        >= settings.checkpoint_interval_s):
                    self._checkpoint.save(self.engine, self._acked)
                    last_checkpoint = time.monotonic()
        finally:
            try:
                if self._checkpoint is not None:
                    self.stats.snapshot = str(self._checkpoint.save(self.engine, self._acked))
                    self._checkpoint.end_cleanly()
            finally:
                consumer.close()
        self.stats.by_decision = dict(self._by_decision)
        return self.stats

    def _plan_recovery(self, consumer: Consumer, previous: Any) -> None:
        """After a run that did not end cleanly (kill -9, OOM, power): events between the
        checkpoint and the group's committed offsets were decided and acknowledged, so
        they only rebuild the state; the batch that was in flight may have been produced,
        so its decisions are marked as redeliveries."""
        if previous is None or previous.clean or not self._resume:
            return
        wanted = [TopicPartition(t, p) for t, p in self._resume]
        try:
            found = consumer.committed(wanted, timeout=30)
        except KafkaException as exc:
            raise StreamError(f"cannot read the committed offsets of group "
                              f"{self.settings.group!r}: {exc}") from None
        for tp in found:
            key = (tp.topic, tp.partition)
            done = tp.offset if tp.offset >= 0 else self._resume[key]
            self._quiet[key] = done
            self._unsure[key] = done + previous.batch_size
        log.warning("the last run did not end cleanly: rebuilding the state from %s up to "
                    "the committed offsets %s without producing", self._resume, self._quiet)

    def _idle_for(self, last_message: float) -> bool:
        limit = self.settings.idle_exit_s
        if limit is None or self._assigned_at is None:
            return False
        return time.monotonic() - max(last_message, self._assigned_at) >= limit

    def _process(self, messages: list[Message], sink: Producer, dead: Producer | None
                 ) -> dict[tuple[str, int], int]:
        """Decide and produce one batch; returns the next offset per partition."""
        engine, scene = self.engine, self.settings.scene
        sink_topic = self.settings.sink.topic
        delivered = self._delivered
        pending: dict[tuple[str, int], int] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise StreamError(f"consumer failed: {err.str()}")
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err.str())
                continue
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset()
            offset = offset if offset is not None else -1
            place = (topic, partition)
            quiet = offset < self._quiet.get(place, -1)
            try:
                event = decode_event(msg.value())
                before = engine.lsn
                decision = engine.evaluate(scene, event)
                if decision.degraded:
                    answered = self._wait_for_state(scene, event)
                    if answered is None:  # stopping: this event stays uncommitted
                        break
                    decision = answered
            except PoisonMessage as exc:
                pending[place] = offset + 1
                self._dead_letter(dead, msg, exc, topic, partition, offset, quiet)
                continue
            except EventValidationError as exc:
                pending[place] = offset + 1
                poison = PoisonMessage("invalid-event", str(exc), field=exc.field)
                self._dead_letter(dead, msg, poison, topic, partition, offset, quiet)
                continue
            except Exception as exc:  # one event must not stop the stream
                pending[place] = offset + 1
                log.exception("engine failed on %s[%s]@%s", topic, partition, offset)
                poison = PoisonMessage("engine-error", f"{type(exc).__name__}: {exc}")
                self._dead_letter(dead, msg, poison, topic, partition, offset, quiet)
                continue
            pending[place] = offset + 1
            if quiet:
                self.stats.rebuilt += 1
                continue
            redelivery = engine.lsn == before or offset < self._unsure.get(place, -1)
            value = decision_message(decision, topic, partition, offset, redelivery)
            _produce(sink, sink_topic, value, decision.event_id, None, delivered)
            self.stats.decided += 1
            self.stats.redelivered += redelivery
            self._by_decision[decision.decision] += 1
        return pending

    def _wait_for_state(self, scene: str, event: dict[str, Any]) -> Decision | None:
        """The shared state did not answer (the engine gave its degraded fallback): a
        stream can wait, so the event is decided again until the state answers, or None
        when the worker is asked to stop meanwhile."""
        self.stats.state_waits += 1
        log.warning("the state is unavailable: holding the stream until it answers")
        while not self._stop.wait(self.settings.degraded_retry_s):
            decision = self.engine.evaluate(scene, event)
            if not decision.degraded:
                log.warning("the state answers again: the stream goes on")
                return decision
        return None

    def _dead_letter(self, dead: Producer | None, msg: Message, error: PoisonMessage,
                     topic: str, partition: int, offset: int, quiet: bool = False) -> None:
        if quiet:  # dead-lettered before the unclean stop
            self.stats.rebuilt += 1
            return
        self.stats.dead_lettered += 1
        if dead is None or self.settings.dead_letter is None:
            log.warning("skipped %s[%s]@%s (%s): %s", topic, partition, offset, error.kind,
                        error)
            return
        _produce(dead, self.settings.dead_letter.topic, msg.value(), msg.key(),
                 dead_letter_headers(error, topic, partition, offset), self._delivered)

    def _flush(self, sink: Producer, dead: Producer | None) -> None:
        """Wait for the broker to acknowledge everything produced so far."""
        left = sink.flush(FLUSH_TIMEOUT_S)
        if dead is not None and dead is not sink:
            left += dead.flush(FLUSH_TIMEOUT_S)
        if left or self._failures:
            problems = "; ".join(self._failures[:5]) or f"{left} still unacknowledged"
            raise StreamError(f"the broker did not take the decisions ({problems}); "
                              "offsets after the last commit are not committed")

    def _commit(self, consumer: Consumer, pending: dict[tuple[str, int], int]) -> None:
        if not pending:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance: those events will be re-read
            log.warning("offset commit failed (events will be re-read): %s", exc)
        else:
            self.stats.commits += 1
        self._acked.update(pending)


def _produce(producer: Producer, topic: str, value: bytes | None, key: str | bytes | None,
             headers: list[tuple[str, bytes]] | None, on_delivery: Any) -> None:
    """`produce`, waiting for room when the local queue is full."""
    while True:
        try:
            if headers is None:
                producer.produce(topic, value, key, on_delivery=on_delivery)
            else:
                producer.produce(topic, value, key, on_delivery=on_delivery,
                                 headers=headers)  # type: ignore[arg-type]
            return
        except BufferError:
            producer.poll(0.1)
