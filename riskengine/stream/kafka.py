"""The Kafka stream worker: events in, decisions out, at least once; and replay.

Per batch of up to `batch_size` messages: decode each value (one JSON object), decide it
with `Engine.evaluate`, produce the decision to the sink keyed by `event_id`; then wait
until the broker acknowledged every produced message (`flush`), and only then commit the
batch's offsets. A crash at any point re-reads from the last commit: nothing is lost, and
the engine's idempotency guard answers a re-read event (marked ``"redelivery": true``)
without counting it again — once the state holds it.

In-memory state across crashes (`riskengine.stream.checkpoint`): a checkpoint is the
state and the offsets it covers. After an unclean stop the worker restores it, re-reads
from its offsets up to the group's committed offsets deciding without producing (those
decisions were produced and acknowledged: this only rebuilds the state), and marks the
decisions of the batch that may have been in flight when it died as redeliveries. A
partition first seen by a run is checkpointed at once at its starting offset.

Shared state (`SharedEngine`): the state and the remembered decisions are in Redis, so a
crash or a rebalance needs nothing more; while Redis does not answer (the engine gives a
degraded fallback decision) the worker holds the event and asks again every
`degraded_retry_s`, producing and committing nothing meanwhile.

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

Rebalances, in-memory state: a worker that gets a partition whose state it does not hold
(another worker had it, or this process starts without a checkpoint for it) reads it
from where its own state of it ends — the start of the log if it never held it — up to
the group's committed offset, deciding without producing, before it produces again: the
state is rebuilt from the log (which must retain at least the scene's largest window plus
its lateness), nothing is counted twice (the idempotency guard), and the first batch past
the committed offset is marked as redeliveries (the previous owner may have produced it).

Replay (`from_offset` / `from_timestamp_ms`): every partition of the source is assigned
directly (no group: nothing committed, the group's offsets untouched) at the start
offset, or at the broker's offset for the time with messages stamped earlier skipped
(some brokers answer an earlier offset), and read to the end as it is when reached.
`dry_run` produces nothing.

Shutdown (`stop`, wired to SIGTERM/SIGINT by the CLI): the batch in flight is finished,
flushed and committed, then the state is checkpointed (with `state_dir`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from riskengine.engine import Engine
from riskengine.stream.base import (
    CommonSettings,
    KafkaTopic,
    PoisonMessage,
    StreamError,
    WorkerStats,
)
from riskengine.stream.checkpoint import Checkpoint, PreviousRun
from riskengine.stream.codec import dead_letter_headers, decision_message
from riskengine.stream.worker import StreamWorker

__all__ = ["KafkaWorker", "WorkerSettings"]

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 60.0
"""How long a batch may wait for the broker to acknowledge its decisions."""


@dataclass(frozen=True, kw_only=True)
class WorkerSettings(CommonSettings):
    """What a Kafka worker reads, writes and how; validated when built."""

    source: KafkaTopic
    sink: KafkaTopic | None
    """Where decisions go; None only for a dry run."""
    dead_letter: KafkaTopic | None = None
    from_offset: int | None = None
    """Replay: read every partition from this offset (no group offsets used or moved)."""
    stop_at_end: bool = False
    """Stop once every partition has been read to its end (the default of a replay)."""
    progress_interval_s: float | None = None
    """Log progress and lag this often (the CLI's default for a replay: 1 s)."""
    consumer_options: Mapping[str, str] = field(default_factory=dict)
    producer_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def replay(self) -> bool:
        return self.from_offset is not None or self.from_timestamp_ms is not None

    def __post_init__(self) -> None:
        if self.from_offset is not None and self.from_timestamp_ms is not None:
            raise StreamError("give --from-offset or --from-timestamp, not both")
        if self.from_offset is not None and self.from_offset < 0:
            raise StreamError("--from-offset must not be negative")
        if self.replay and self.state_dir is not None:
            raise StreamError("a replay starts from fresh state and commits nothing: it "
                              "takes no --state-dir")
        self.check_common()
        if self.sink is None and not self.dry_run:
            raise StreamError("--sink is needed unless it is a --dry-run")
        for out in (self.sink, self.dead_letter):
            if out is not None and (out.bootstrap, out.topic) == (self.source.bootstrap,
                                                                  self.source.topic):
                raise StreamError(f"the source topic {self.source.topic!r} cannot also be "
                                  "the sink or the dead-letter topic")


class KafkaWorker(StreamWorker):
    """Consume, decide, produce, commit; `run` until `stop`, `max_events` or idle."""

    def __init__(self, engine: Engine, settings: WorkerSettings) -> None:
        super().__init__(engine, settings.scene, settings.degraded_retry_s)
        self.settings = settings
        self._checkpoint = Checkpoint(settings.state_dir) if settings.state_dir else None
        self._resume: dict[tuple[str, int], int] = {}
        self._acked: dict[tuple[str, int], int] = {}
        self._failures: list[str] = []
        self._assigned_at: float | None = None
        self._previous: PreviousRun | None = None
        """How the last run on the checkpoint folder ended (None: no checkpoint)."""
        self._quiet: dict[tuple[str, int], int] = {}
        """Per partition: offsets below this were decided and acknowledged before a crash;
        they are decided again to rebuild the state, and not produced again."""
        self._unsure: dict[tuple[str, int], int] = {}
        """Per partition: offsets below this may have been produced by the run that
        crashed; their decisions are marked as redeliveries."""
        self._position: dict[tuple[str, int], int] = {}
        """Per partition: the next offset to read (for the lag)."""
        self._lagged: set[tuple[str, int]] = set()
        self._reads: set[tuple[str, int]] = set()
        """The partitions assigned to this worker now."""
        self._reading: set[tuple[str, int]] | None = None
        """A replay's partitions not yet read to their end (None: not a replay)."""
        self._skip_before: dict[tuple[str, int], int] = {}
        self._replay_partitions = 0
        self._reported_at = 0.0
        self._progress_at = 0.0

    # set-up ---------------------------------------------------------------------------

    def _consumer(self) -> Consumer:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.settings.source.bootstrap,
            "group.id": self.settings.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": self.settings.stop_at_end,
        }
        conf.update(self.settings.consumer_options)
        return Consumer(conf)

    def _producer(self, bootstrap: str) -> Producer:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": 5}
        conf.update(self.settings.producer_options)
        return Producer(conf)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Where each assigned partition starts. Shared state: at the committed offset.
        In-memory state: where this process's state ends for it — the checkpoint's
        offset, the offset it had reached before a rebalance took the partition away, or
        the start of the log when it never held it — and from there up to the committed
        offset the events only rebuild the state (they were produced before). A partition
        another worker had (or that had no checkpoint) gets its first batch past the
        committed offset marked as redeliveries, since that worker may have produced
        it before it stopped; so does a partition of the checkpoint after a run that did
        not end cleanly. A partition new to the checkpoint is checkpointed at once."""
        if self._assigned_at is None:
            self._assigned_at = time.monotonic()
        self._reads.update((tp.topic, tp.partition) for tp in partitions)
        self.metrics.assigned.set(len(self._reads))
        if self.engine.shared_state:
            log.info("assigned %s", ", ".join(f"{t.topic}[{t.partition}]" for t in partitions))
            consumer.assign(partitions)
            return
        assigned = {(tp.topic, tp.partition) for tp in partitions}
        for place in [p for p in self._acked if p not in assigned]:
            # gone to another worker: its clock goes, and with it what this process held
            # of it (if it comes back it is rebuilt from the log, like one never held)
            self.engine.drop_clock(place)
            del self._acked[place]
        found = consumer.committed([TopicPartition(tp.topic, tp.partition)
                                    for tp in partitions], timeout=30)
        committed = {(c.topic, c.partition): c.offset for c in found}
        new_here = False
        for tp in partitions:
            place = (tp.topic, tp.partition)
            held = self._resume.pop(place, None)
            done = committed.get(place, -1)
            previous = self._previous
            if held is not None and previous is not None and not previous.clean:
                # the batch the last run had in flight past its commit may have been
                # produced: its decisions are marked as redeliveries
                self._unsure[place] = max(self._unsure.get(place, 0), max(done, held)
                                          + previous.batch_size)
            if held is None:
                held = self._acked.get(place)
            if held is None:  # nothing of this partition is in this process's state
                held = 0
                self._acked[place] = 0
                new_here = True
            if done > held:
                self._quiet[place] = done
                self._unsure[place] = max(self._unsure.get(place, 0),
                                          done + self.settings.batch_size)
                log.warning("%s[%s]: rebuilding the state from offset %d up to the committed "
                            "offset %d without producing", tp.topic, tp.partition, held, done)
            tp.offset = held if held > 0 else OFFSET_BEGINNING
        if new_here and self._checkpoint is not None:
            self._checkpoint.save(self.engine, self._acked)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))
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
            self._previous = self._checkpoint.begin(settings.batch_size)
        sink = None
        if settings.sink is not None and not settings.dry_run:
            sink = self._producer(settings.sink.bootstrap)
        dead = None
        if settings.dead_letter is not None and not settings.dry_run:
            dead = (sink if settings.sink is not None
                    and settings.dead_letter.bootstrap == settings.sink.bootstrap
                    else self._producer(settings.dead_letter.bootstrap))
        if settings.metrics_port is not None:
            port = self.metrics.serve(settings.metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", port)
        if settings.replay:
            self._assign_replay(consumer)
        else:
            consumer.subscribe([settings.source.topic], on_assign=self._on_assign,
                               on_revoke=self._on_revoke)
        last_message = time.monotonic()
        last_checkpoint = time.monotonic()
        try:
            while not self._stop.is_set():
                if settings.stop_at_end and self._reading is not None and not self._reading:
                    log.info("every partition read to its end: stopping")
                    break
                limit = settings.batch_size
                if settings.max_events is not None:
                    limit = min(limit, settings.max_events - self.stats.consumed)
                    if limit <= 0:
                        break
                messages = consumer.consume(limit, timeout=0.1)
                self._report(consumer)
                if not messages:
                    if self._idle_for(last_message) and settings.idle_exit_s is not None:
                        log.info("no message for %.1f s: stopping", settings.idle_exit_s)
                        break
                    continue
                last_message = time.monotonic()
                started = time.perf_counter()
                pending = self._process(messages, sink, dead)
                self._flush(sink, dead)
                if not settings.replay:
                    self._commit(consumer, pending)
                self._position.update(pending)
                self.metrics.batch_seconds.observe(time.perf_counter() - started)
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
                self._report(consumer, force=True)
                consumer.close()
        return self.finish()

    def _assign_replay(self, consumer: Consumer) -> None:
        """Assign every partition of the source at the replay's start (no group)."""
        settings = self.settings
        topic = settings.source.topic
        try:
            found = consumer.list_topics(topic, timeout=30).topics.get(topic)
        except KafkaException as exc:
            raise StreamError(f"cannot read the partitions of {topic!r}: {exc}") from None
        if found is None or found.error is not None or not found.partitions:
            raise StreamError(f"the source topic {topic!r} does not exist")
        partitions = sorted(found.partitions)
        if settings.from_offset is not None:
            start = [TopicPartition(topic, p, settings.from_offset) for p in partitions]
        else:
            assert settings.from_timestamp_ms is not None
            wanted = [TopicPartition(topic, p, settings.from_timestamp_ms) for p in partitions]
            try:
                start = consumer.offsets_for_times(wanted, timeout=30)
            except KafkaException as exc:
                raise StreamError(f"cannot look up offsets by time: {exc}") from None
            for tp in start:
                if tp.offset < 0:  # nothing stamped that late: start at the end
                    tp.offset = OFFSET_END
                # brokers may answer an earlier offset: messages stamped before the start
                # are skipped until the first one at or after it
                self._skip_before[(topic, tp.partition)] = settings.from_timestamp_ms
        self._reads.update((topic, p) for p in partitions)
        self.metrics.assigned.set(len(self._reads))
        self._reading = {(topic, p) for p in partitions}
        self._replay_partitions = len(partitions)
        log.info("replaying %s from %s", topic, ", ".join(
            f"[{tp.partition}]@{tp.offset}" for tp in start))
        consumer.assign(start)
        self._assigned_at = time.monotonic()

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            place = (tp.topic, tp.partition)
            self._position.pop(place, None)
            self._reads.discard(place)
            if place in self._lagged:  # another worker reports it now
                self._lagged.discard(place)
                self.metrics.lag.remove(tp.topic, str(tp.partition))
        self.metrics.assigned.set(len(self._reads))
        log.info("revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _report(self, consumer: Consumer, force: bool = False) -> None:
        """Refresh the metrics (and log progress) at most once a second."""
        now = time.monotonic()
        if not force and now - self._reported_at < 1.0:
            return
        self._reported_at = now
        stats = self.stats
        self.record_metrics()
        behind = 0
        for (topic, partition), position in self._position.items():
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                         cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            lag = max(high - position, 0)
            behind += lag
            self.metrics.lag.labels(topic, str(partition)).set(lag)
            self._lagged.add((topic, partition))
        interval = self.settings.progress_interval_s
        if interval is not None and (force or now - self._progress_at >= interval):
            self._progress_at = now
            done = "" if self._reading is None else (
                f", {self._replay_partitions - len(self._reading)} of "
                f"{self._replay_partitions} partitions read to their end")
            log.info("progress: %s decided, %s dead-lettered, %s behind%s",
                     f"{stats.decided:,}", f"{stats.dead_lettered:,}", f"{behind:,}", done)

    def _idle_for(self, last_message: float) -> bool:
        limit = self.settings.idle_exit_s
        if limit is None or self._assigned_at is None:
            return False
        return time.monotonic() - max(last_message, self._assigned_at) >= limit

    def _process(self, messages: list[Message], sink: Producer | None, dead: Producer | None
                 ) -> dict[tuple[str, int], int]:
        """Decide and produce one batch; returns the next offset per partition."""
        sink_topic = self.settings.sink.topic if self.settings.sink is not None else ""
        delivered = self._delivered
        pending: dict[tuple[str, int], int] = {}
        batch: list[tuple[Message, str, int, int]] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise StreamError(f"consumer failed: {err.str()}")
                if err.code() == KafkaError._PARTITION_EOF:
                    if self._reading is not None:
                        self._reading.discard((msg.topic() or "", msg.partition() or 0))
                else:
                    log.warning("consumer error: %s", err.str())
                continue
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset()
            offset = offset if offset is not None else -1
            if self._skip_before:
                place = (topic, partition)
                start = self._skip_before.get(place)
                if start is not None:
                    if msg.timestamp()[1] < start:
                        pending[place] = offset + 1
                        self.stats.skipped += 1
                        continue
                    del self._skip_before[place]
            batch.append((msg, topic, partition, offset))

        def where(i: int) -> str:
            _, topic, partition, offset = batch[i]
            return f"{topic}[{partition}]@{offset}"

        outcomes = self.decide_batch([item[0].value() for item in batch], where,
                                     [(item[1], item[2]) for item in batch])
        quiet_until, unsure_until = self._quiet, self._unsure
        for (msg, topic, partition, offset), outcome in zip(batch, outcomes, strict=True):
            if outcome is None:  # stopping: this event and the rest stay uncommitted
                break
            place = (topic, partition)
            pending[place] = offset + 1
            quiet = quiet_until and offset < quiet_until.get(place, -1)
            if isinstance(outcome, PoisonMessage):
                self._dead_letter(dead, msg, outcome, topic, partition, offset, bool(quiet))
                continue
            if quiet:
                self.stats.rebuilt += 1
                continue
            decision = outcome.decision
            redelivery = not outcome.fresh or (
                bool(unsure_until) and offset < unsure_until.get(place, -1))
            if sink is not None:
                value = decision_message(decision, {"topic": topic, "partition": partition,
                                                    "offset": offset}, redelivery)
                _produce(sink, sink_topic, value, decision.event_id, None, delivered)
            self.counted(decision, redelivery)
        return pending

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

    def _flush(self, sink: Producer | None, dead: Producer | None) -> None:
        """Wait for the broker to acknowledge everything produced so far."""
        left = 0 if sink is None else sink.flush(FLUSH_TIMEOUT_S)
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
