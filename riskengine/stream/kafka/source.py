"""The Kafka source: a consumer group with rebalance callbacks, or a replay's direct
assignment; batches with each message's partition as its clock domain; commits; lag.

Which offsets are quiet (decided before: they only rebuild the state) and which are
unsure (maybe produced before: marked as redeliveries) is worked out per partition when
it is assigned (see `KafkaSource._on_assign` and the package docstring).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from riskengine.engine import Engine
from riskengine.stream.base import StreamError
from riskengine.stream.checkpoint import PreviousRun
from riskengine.stream.kafka.base import Record, WorkerSettings
from riskengine.stream.kafka.group import group_options
from riskengine.stream.loop import Batch, Offsets
from riskengine.stream.metrics import StreamMetrics
from riskengine.tracing import TRACE_FIELDS

__all__ = ["KafkaSource"]

log = logging.getLogger(__name__)

Place = tuple[str, int]


class KafkaSource:
    """`riskengine.stream.loop.Source` over a Kafka topic."""

    no_value = "the message has no value (a tombstone)"

    def __init__(self, engine: Engine, settings: WorkerSettings,
                 metrics: StreamMetrics) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.ready_at: float | None = None
        """When the first partitions were assigned."""
        self._consumer: Consumer | None = None
        self._save: Callable[[], None] | None = None
        self._previous: PreviousRun | None = None
        """How the last run on the checkpoint folder ended (None: no checkpoint)."""
        self._resume: Offsets = {}
        self._acked: Offsets = {}
        """Per partition: the next offset after what was committed (what the state holds
        of it, for the checkpoint)."""
        self._quiet: dict[Place, int] = {}
        """Per partition: offsets below this were decided and acknowledged before a crash;
        they are decided again to rebuild the state, and not produced again."""
        self._unsure: dict[Place, int] = {}
        """Per partition: offsets below this may have been produced by the run that
        crashed; their decisions are marked as redeliveries."""
        self._position: dict[Place, int] = {}
        """Per partition: the next offset to read (for the lag)."""
        self._lagged: set[Place] = set()
        self._reads: set[Place] = set()
        """The partitions assigned to this worker now."""
        self._reading: set[Place] | None = None
        """A replay's partitions not yet read to their end (None: not a replay)."""
        self._replay_partitions = 0
        self._skip_before: dict[Place, int] = {}
        self._skipped: dict[Place, int] = {}
        """Per partition: the offset after the messages the last poll passed over."""
        self._places: dict[int, Place] = {}

    # set-up ---------------------------------------------------------------------------

    def start(self, resume: Offsets, previous: PreviousRun | None,
              save: Callable[[], None] | None) -> None:
        settings = self.settings
        self._resume, self._acked = dict(resume), dict(resume)
        self._previous, self._save = previous, save
        if resume:
            log.info("resuming at %s", resume)
        conf: dict[str, Any] = {
            "bootstrap.servers": settings.source.bootstrap,
            "group.id": settings.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": settings.stop_at_end,
            **group_options(settings.session_timeout_ms),
        }
        conf.update(settings.consumer_options)
        self._consumer = consumer = Consumer(conf)
        if settings.replay:
            self._assign_replay(consumer)
        else:
            consumer.subscribe([settings.source.topic], on_assign=self._on_assign,
                               on_revoke=self._on_revoke)

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
        if self.ready_at is None:
            self.ready_at = time.monotonic()
        self._reads.update((tp.topic, tp.partition) for tp in partitions)
        self.metrics.assigned.set(len(self._reads))
        if self.engine.shared_state:
            log.info("assigned %s", ", ".join(f"{t.topic}[{t.partition}]" for t in partitions))
            consumer.assign(partitions)
            return
        assigned = {(tp.topic, tp.partition) for tp in partitions}
        for place in [p for p in self._acked if p not in assigned]:
            # gone to another worker: its state here (keys, ids, clock) goes whole; if it
            # comes back it is rebuilt from the log, like one never held
            self.engine.drop_clock(place)
            del self._acked[place]
        found = consumer.committed([TopicPartition(tp.topic, tp.partition)
                                    for tp in partitions], timeout=30)
        committed = {(c.topic, c.partition): c.offset for c in found}
        batch_size = self.settings.batch_size
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
                self._unsure[place] = max(self._unsure.get(place, 0), done + batch_size)
                log.warning("%s[%s]: rebuilding the state from offset %d up to the committed "
                            "offset %d without producing", tp.topic, tp.partition, held, done)
            tp.offset = held if held > 0 else OFFSET_BEGINNING
        if new_here and self._save is not None:
            self._save()
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))
        consumer.assign(partitions)

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
        self.ready_at = time.monotonic()

    # batches --------------------------------------------------------------------------

    def poll(self, limit: int) -> Batch[Record] | None:
        assert self._consumer is not None
        messages = self._consumer.consume(limit, timeout=0.1)
        if not messages:
            return None
        records: list[Record] = []
        clocks: list[Hashable] = []
        places = self._places
        topic = self.settings.source.topic  # the one topic read (subscribed or assigned)
        skipped = 0
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
            partition, offset = msg.partition() or 0, msg.offset()
            offset = offset if offset is not None else -1
            place = places.get(partition)
            if place is None:  # one tuple per partition: clocks compare by identity
                place = places[partition] = (topic, partition)
            if self._skip_before:
                place = (topic, partition)
                start = self._skip_before.get(place)
                if start is not None:
                    if msg.timestamp()[1] < start:
                        self._skipped[place] = offset + 1
                        skipped += 1
                        continue
                    del self._skip_before[place]
            records.append((msg, topic, partition, offset))
            clocks.append(place)
        quiet_until, unsure_until = self._quiet, self._unsure
        return Batch(
            records, [r[0].value() for r in records], clocks,
            quiet=[o < quiet_until.get((t, p), -1) for _, t, p, o in records]
            if quiet_until else None,
            unsure=[o < unsure_until.get((t, p), -1) for _, t, p, o in records]
            if unsure_until else None,
            skipped=skipped)

    def where(self, message: Record) -> str:
        _, topic, partition, offset = message
        return f"{topic}[{partition}]@{offset}"

    def trace_carrier(self, message: Record) -> dict[str, str]:
        """The message's ``traceparent`` / ``tracestate`` headers."""
        headers = message[0].headers()  # a consumed message's are a list of pairs
        if not headers or isinstance(headers, dict):
            return {}
        return {name: value.decode("latin-1") for name, value in headers
                if name in TRACE_FIELDS and isinstance(value, bytes)}

    def commit(self, batch: Batch[Record], done: int) -> bool:
        """Commit the next offset per partition after the first `done` messages (and
        those passed over); a replay only moves its position."""
        pending, self._skipped = self._skipped, {}
        for _, topic, partition, offset in batch.messages[:done]:
            pending[(topic, partition)] = offset + 1
        committed = False
        if pending and not self.settings.replay:
            assert self._consumer is not None
            offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:  # e.g. a rebalance: those events will be re-read
                log.warning("offset commit failed (events will be re-read): %s", exc)
            else:
                committed = True
            self._acked.update(pending)
        self._position.update(pending)
        return committed

    # reports --------------------------------------------------------------------------

    def report(self) -> str:
        """Set the lag of each partition read (against its high watermark as last
        fetched); say how far behind the worker is."""
        behind = 0
        if self._consumer is not None:
            for (topic, partition), position in self._position.items():
                try:
                    _, high = self._consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), cached=True)
                except KafkaException:
                    continue
                if high < 0:
                    continue
                lag = max(high - position, 0)
                behind += lag
                self.metrics.lag.labels(topic, str(partition)).set(lag)
                self._lagged.add((topic, partition))
        done = "" if self._reading is None else (
            f", {self._replay_partitions - len(self._reading)} of "
            f"{self._replay_partitions} partitions read to their end")
        return f"{behind:,} behind{done}"

    def at_end(self) -> bool:
        return self.settings.stop_at_end and self._reading is not None and not self._reading

    def offsets(self) -> Offsets:
        return self._acked

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
