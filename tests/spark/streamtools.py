"""Helpers of the Spark stream job's tests: topics the stream worker and the job both read,
the worker's output to compare with, and the sink topics read back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import Message

from riskengine.engine import Engine
from riskengine.stream.base import KafkaTopic
from riskengine.stream.kafka import KafkaWorker, WorkerSettings
from riskengine.synth import generate_transfers
from tests.stream.kafkatools import read_all

FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}


def demo_events(n: int, seed: int) -> list[dict[str, Any]]:
    """The example config's demo traffic, without labels."""
    return [{k: v for k, v in e.items() if k != "label"} for e in generate_transfers(n, seed)]


def run_worker(bootstrap: str, config: Mapping[str, Any] | None, scene: str, source: str,
               sink: str, messages: int, dead_letter: str | None = None) -> None:
    """The stream worker over all of `source` (one partition) into `sink`."""
    settings = WorkerSettings(
        source=KafkaTopic(bootstrap, source), sink=KafkaTopic(bootstrap, sink),
        dead_letter=KafkaTopic(bootstrap, dead_letter) if dead_letter else None,
        group=f"worker-{source}", scene=scene, max_events=messages, idle_exit_s=30,
        consumer_options=FAST_GROUP)
    stats = KafkaWorker(Engine.from_config(config), settings).run()
    assert stats.consumed == messages, stats


def decisions(bootstrap: str, topic: str, expected: int) -> list[dict[str, Any]]:
    """The decisions in a one-partition sink topic, in order, each with its message key."""
    out = []
    for message in read_all(bootstrap, topic, 1, expected):
        body = orjson.loads(message.value() or b"")
        assert message.key() == body["event_id"].encode()
        out.append(body)
    return out


def essence(body: dict[str, Any]) -> dict[str, Any]:
    """A decision as produced, but for `latency_ms` (the time it took)."""
    return {k: v for k, v in body.items() if k != "latency_ms"}


def dead_letters(bootstrap: str, topic: str, expected: int) -> list[tuple[Any, ...]]:
    """Key, value and headers of each dead letter, in order."""
    found: list[Message] = read_all(bootstrap, topic, 1, expected)
    return [(m.key(), m.value(), sorted(m.headers() or [])) for m in found]
