"""A Kafka topic as a Spark stream: Spark 4's Python Data Source API over confluent-kafka.

Spark's own Kafka connector is a JVM jar; this source needs nothing but the Python
packages riskengine already uses. Each row is one message: ``partition``, ``offset``,
``key``, ``value`` (bytes; null for a tombstone).

Offsets are Spark's: a micro-batch is planned as a range ``[start, end)`` per partition
and the range is written to the query's offset log before the batch runs, so a batch
re-run after a crash reads exactly the same messages. Nothing is committed to Kafka.

The end of a micro-batch is found by reading, never taken from the broker's high
watermark alone: some Kafka-protocol brokers (Tansu) answer ListOffsets with the base
offset of the last record batch + 1, so the messages after that base offset would wait
for more data. The watermark is only a lower bound (every offset below it exists): the
driver's consumer reads each partition from the watermark less one until the fetch
reports the end of the partition, so it fetches about one record batch per partition
per trigger; the executors read the planned ranges.

Options (``spark.readStream.format("riskengine-kafka").option(...)``):
``bootstrap`` (host:port[,host:port]), ``topic``, ``maxRecordsPerBatch`` (default: all
available), ``kafka.<librdkafka setting>`` for both consumers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)

from riskengine.stream.base import StreamError

__all__ = ["SCHEMA", "SOURCE_NAME", "KafkaEventSource", "KafkaStreamReader", "OffsetRange"]

SOURCE_NAME = "riskengine-kafka"
SCHEMA = "partition INT, offset BIGINT, key BINARY, value BINARY"

END_WAIT_S = 5.0
"""How long the driver waits for a partition's end of data before it plans a batch with
what it has read (a lower bound of the end: every offset in it exists)."""
READ_STALL_S = 60.0
"""How long an executor waits for a planned message that does not come."""
METADATA_TIMEOUT_S = 10.0

Offsets = dict[str, int]
"""Per partition (its number as text, since offsets are JSON): the next offset to read."""


def kafka_options(options: Mapping[str, str]) -> dict[str, str]:
    """The source's ``kafka.*`` options as librdkafka settings.

    >>> kafka_options({"topic": "t", "kafka.client.id": "w1"})
    {'client.id': 'w1'}
    """
    return {k[len("kafka."):]: v for k, v in options.items() if k.startswith("kafka.")}


class KafkaEventSource(DataSource):
    """The data source registered as ``riskengine-kafka`` (streaming reads only)."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: Any) -> KafkaStreamReader:
        return KafkaStreamReader(self.options)


class OffsetRange(InputPartition):
    """One partition's messages ``[start, end)`` of one micro-batch."""

    def __init__(self, partition: int, start: int, end: int) -> None:
        super().__init__((partition, start, end))
        self.partition = partition
        self.start = start
        self.end = end


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Plans micro-batches (driver) and reads their ranges (executors); see the module
    docstring. The driver's consumer is made on first use: the reader is pickled to the
    executors without it."""

    def __init__(self, options: Mapping[str, str]) -> None:
        bootstrap, topic = options.get("bootstrap"), options.get("topic")
        if not bootstrap or not topic:
            raise StreamError("the riskengine-kafka source needs the options 'bootstrap' "
                              "and 'topic'")
        self.bootstrap = bootstrap
        self.topic = topic
        raw = options.get("maxRecordsPerBatch")
        self.max_records = int(raw) if raw else None
        if self.max_records is not None and self.max_records < 1:
            raise StreamError("maxRecordsPerBatch must be at least 1")
        self.settings = kafka_options(options)
        self._probe: Any = None
        self._target: Offsets | None = None
        """Trigger.AvailableNow: where the data ended when the query started."""

    # driver -----------------------------------------------------------------------------

    def _consumer(self, **extra: Any) -> Any:
        from confluent_kafka import Consumer

        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap,
                                "group.id": "riskengine-spark-stream",
                                "enable.auto.commit": False, **extra}
        conf.update(self.settings)
        return Consumer(conf)

    def _probe_consumer(self) -> Any:
        if self._probe is None:
            self._probe = self._consumer(**{"enable.partition.eof": True,
                                            "fetch.wait.max.ms": 50,
                                            "auto.offset.reset": "earliest"})
        return self._probe

    def _partitions(self) -> Offsets:
        """Every partition of the topic at the start of its log (the low watermark)."""
        from confluent_kafka import KafkaException, TopicPartition

        consumer = self._probe_consumer()
        try:
            found = consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise StreamError(f"cannot reach the broker at {self.bootstrap} to read the "
                              f"partitions of {self.topic!r}: {exc}") from None
        topic = found.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise StreamError(f"the source topic {self.topic!r} does not exist on "
                              f"{self.bootstrap}")
        starts: Offsets = {}
        for number in sorted(topic.partitions):
            low, _ = consumer.get_watermark_offsets(TopicPartition(self.topic, number),
                                                    timeout=METADATA_TIMEOUT_S)
            starts[str(number)] = max(low, 0)
        return starts

    def initialOffset(self) -> Offsets:
        return self._partitions()

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        """Where the next micro-batch ends: each partition read from `start` to the end
        of its data, at most `limit` messages in all (partitions added since are read
        from the start of their log); under Trigger.AvailableNow, never past the end the
        query started with."""
        starts = {**self._partitions(), **start}
        budget = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        ends = self._read_ends(starts, budget)
        target = self._target
        if target is not None:
            ends = {p: min(e, max(target.get(p, starts[p]), starts[p]))
                    for p, e in ends.items()}
        return ends

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.max_records is None:
            return ReadAllAvailable()
        return ReadMaxRows(self.max_records)

    def prepareForTriggerAvailableNow(self) -> None:
        starts = self._partitions()
        self._target = self._read_ends(starts, None)

    def _read_ends(self, starts: Offsets, budget: int | None) -> Offsets:
        """Where each partition's data ends now, at most `budget` messages past `starts`
        in all (an even share per partition). Offsets below the high watermark the broker
        reports exist; the messages after it are found by reading from the watermark less
        one (where the broker's last record batch starts, or later) until the fetch says
        the partition ends. The end is the offset after the last message read."""
        from confluent_kafka import KafkaError, TopicPartition

        consumer = self._probe_consumer()
        share = None if budget is None else max(1, budget // max(1, len(starts)))
        ends = dict(starts)
        caps: dict[str, int | None] = {}
        places = []
        for p, start in starts.items():
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, int(p)),
                                                     timeout=METADATA_TIMEOUT_S)
            known = max(start, high - 1)
            cap = None if share is None else start + share
            if cap is not None and cap <= known:
                ends[p] = cap
                continue
            ends[p] = known
            caps[p] = cap
            places.append(TopicPartition(self.topic, int(p), known))
        if not places:
            return ends
        consumer.assign(places)
        deadline = time.monotonic() + END_WAIT_S
        while caps and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.1):
                p = str(msg.partition())
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        caps.pop(p, None)
                    elif err.fatal():
                        raise StreamError(f"reading {self.topic!r}: {err.str()}")
                    continue
                if p not in caps:
                    continue
                cap = caps[p]
                ends[p] = max(ends[p], msg.offset() + 1)
                if cap is not None and ends[p] >= cap:
                    ends[p] = cap
                    del caps[p]
        consumer.unassign()
        return ends

    def partitions(self, start: Offsets, end: Offsets) -> Sequence[OffsetRange]:
        return [OffsetRange(int(p), start.get(p, 0), e) for p, e in sorted(
            end.items(), key=lambda item: int(item[0])) if e > start.get(p, 0)]

    def commit(self, end: Offsets) -> None:
        """Nothing to do: the offsets live in the query's checkpoint."""

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # executors --------------------------------------------------------------------------

    def read(self, partition: InputPartition) -> Iterator[tuple[Any, ...]]:
        """The messages of one planned range, in offset order."""
        from confluent_kafka import KafkaError, TopicPartition

        if not isinstance(partition, OffsetRange):
            raise TypeError(f"not an offset range: {partition!r}")
        number, end = partition.partition, partition.end
        consumer = self._consumer(**{"enable.partition.eof": True,
                                     "auto.offset.reset": "error"})
        try:
            consumer.assign([TopicPartition(self.topic, number, partition.start)])
            following = partition.start
            deadline = time.monotonic() + READ_STALL_S
            while following < end:
                if time.monotonic() > deadline:
                    raise StreamError(
                        f"{self.topic}[{number}]: offsets {following}..{end - 1} of the "
                        f"planned batch cannot be read (deleted by retention?)")
                for msg in consumer.consume(min(end - following, 10_000), timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise StreamError(f"reading {self.topic}[{number}]: {err.str()}")
                        continue
                    offset = msg.offset()
                    if offset >= end:
                        following = end
                        break
                    if offset < following:
                        continue
                    yield number, offset, msg.key(), msg.value()
                    following = offset + 1
                    deadline = time.monotonic() + READ_STALL_S
        finally:
            consumer.close()
