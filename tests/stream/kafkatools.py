"""Produce and read test topics with plain confluent-kafka clients; wait for workers."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from tests.servers import create_topics

# Tansu answers a JoinGroup after about half the session timeout: keep it short.
FAST_GROUP = ["-X", "consumer:session.timeout.ms=6000",
              "-X", "consumer:heartbeat.interval.ms=1000"]


def new_topics(bootstrap: str, **partitions: int) -> dict[str, str]:
    """Fresh topics (role → unique name) with the given partition counts."""
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"{role}-{suffix}" for role in partitions}
    create_topics(bootstrap, {names[role]: n for role, n in partitions.items()})
    return names


def produce(bootstrap: str, topic: str, values: Iterable[tuple[bytes | None, bytes | None]],
            partition: int | None = None) -> int:
    """Produce (key, value) pairs in order (to `partition`, or by key); returns how many;
    raises if any failed."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    for key, value in values:
        if partition is None:
            producer.produce(topic, value, key, on_delivery=delivered)
        else:
            producer.produce(topic, value, key, partition=partition, on_delivery=delivered)
        count += 1
        if count % 5000 == 0:
            producer.flush(30)
    left = producer.flush(30)
    if left or failures:
        raise RuntimeError(f"produce to {topic}: {left} left, failures {failures[:3]}")
    return count


def produce_events(bootstrap: str, topic: str, events: Iterable[dict[str, Any]],
                   key_field: str | None = "pay_account") -> int:
    return produce(bootstrap, topic, (
        (str(e[key_field]).encode() if key_field else None, orjson.dumps(e)) for e in events))


def read_all(bootstrap: str, topic: str, partitions: int, expected: int,
             timeout: float = 30.0) -> list[Message]:
    """Read `topic` from the start (no group) until `expected` messages or `timeout`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    out.append(msg)
        # anything beyond `expected` (duplicates) shows up within a short grace period
        grace = time.monotonic() + 0.5
        while time.monotonic() < grace:
            out.extend(m for m in consumer.consume(1000, timeout=0.1) if m.error() is None)
    finally:
        consumer.close()
    return out


def wait_for_messages(bootstrap: str, topic: str, partitions: int, at_least: int,
                      timeout: float = 60.0) -> int:
    """Block until `topic` holds `at_least` messages (counted from the start); returns
    the count seen; AssertionError after `timeout`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-counter",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < at_least:
            assert time.monotonic() < deadline, f"{topic}: {seen} of {at_least} messages"
            seen += sum(m.error() is None for m in consumer.consume(1000, timeout=0.1))
    finally:
        consumer.close()
    return seen


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                   timeout=10)
    finally:
        consumer.close()
    return [tp.offset for tp in found]


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """Wait for a worker process to exit on its own; fail the test unless it exits 0.
    Returns (stdout, stderr)."""
    import pytest

    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"worker did not stop: {err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    return out, err



def metric_in(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text page (None: not there)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def metric(port: int, name: str, **labels: str) -> float | None:
    """The value of one series on a worker's ``--metrics-port`` (None: not there, or the
    worker does not answer yet)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    return metric_in(text, name, **labels)
