"""The stream job's Kafka source (riskengine/spark/kafka_source.py) against the test broker,
without Spark: where a micro-batch ends is found by reading (the broker's ListOffsets
watermark stops at the last record batch's base offset), the read limit is shared by the
partitions, and a planned range reads exactly its messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from riskengine.spark import kafka_source
from riskengine.spark.kafka_source import KafkaStreamReader, OffsetRange
from riskengine.stream.base import StreamError
from tests.servers import free_port, kafka_server
from tests.stream.kafkatools import new_topics, produce


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with kafka_server() as address:
        yield address


def _topic_in_three_record_batches(bootstrap: str) -> str:
    """A two-partition topic: 15 messages per partition, written in three produce calls
    (three record batches per partition)."""
    topic = new_topics(bootstrap, events=2)["events"]
    for batch in range(3):
        produce(bootstrap, topic, [(None, f"{batch}-{i}".encode()) for i in range(5)],
                partition=0)
        produce(bootstrap, topic, [(None, f"{batch}-{i}".encode()) for i in range(5)],
                partition=1)
    return topic


def test_the_end_of_a_batch_is_found_by_reading(bootstrap: str) -> None:
    topic = _topic_in_three_record_batches(bootstrap)
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    _, high = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    probe.close()
    assert high < 15  # the broker's watermark would leave the last batch unread

    reader = KafkaStreamReader({"bootstrap": bootstrap, "topic": topic})
    start = reader.initialOffset()
    assert start == {"0": 0, "1": 0}
    assert reader.latestOffset(start, ReadAllAvailable()) == {"0": 15, "1": 15}
    assert reader.latestOffset({"0": 15, "1": 15}, ReadAllAvailable()) == {"0": 15, "1": 15}
    assert reader.latestOffset(start, ReadMaxRows(8)) == {"0": 4, "1": 4}
    assert reader.latestOffset({"0": 12, "1": 4}, ReadMaxRows(8)) == {"0": 15, "1": 8}
    ranges = reader.partitions({"0": 12, "1": 15}, {"0": 15, "1": 15})
    assert [(r.partition, r.start, r.end) for r in ranges] == [(0, 12, 15)]
    reader.stop()


def test_a_range_reads_exactly_its_messages(bootstrap: str) -> None:
    topic = _topic_in_three_record_batches(bootstrap)
    reader = KafkaStreamReader({"bootstrap": bootstrap, "topic": topic})
    rows = list(reader.read(OffsetRange(1, 3, 12)))
    assert [(p, o) for p, o, _, _ in rows] == [(1, o) for o in range(3, 12)]
    assert [v for _, _, _, v in rows] == [f"{o // 5}-{o % 5}".encode() for o in range(3, 12)]
    assert list(reader.read(OffsetRange(1, 3, 12))) == rows  # a re-run reads the same


def test_available_now_stops_at_the_end_found_at_the_start(bootstrap: str) -> None:
    topic = _topic_in_three_record_batches(bootstrap)
    reader = KafkaStreamReader({"bootstrap": bootstrap, "topic": topic})
    reader.prepareForTriggerAvailableNow()
    produce(bootstrap, topic, [(None, b"later")], partition=0)
    assert reader.latestOffset({"0": 0, "1": 0}, ReadAllAvailable()) == {"0": 15, "1": 15}
    reader.stop()


def test_a_missing_topic_or_broker_is_named(bootstrap: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StreamError, match="'nope' does not exist"):
        KafkaStreamReader({"bootstrap": bootstrap, "topic": "nope"}).initialOffset()
    with pytest.raises(StreamError, match="needs the options"):
        KafkaStreamReader({"topic": "t"})
    with pytest.raises(StreamError, match="at least 1"):
        KafkaStreamReader({"bootstrap": bootstrap, "topic": "t", "maxRecordsPerBatch": "0"})
    monkeypatch.setattr(kafka_source, "METADATA_TIMEOUT_S", 1.0)
    away = f"127.0.0.1:{free_port()}"
    reader = KafkaStreamReader({"bootstrap": away, "topic": "t"})
    with pytest.raises(StreamError, match=f"cannot reach the broker at {away}"):
        reader.initialOffset()
