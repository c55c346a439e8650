"""Run a worker in the foreground: options in, signals wired, a summary line out."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from riskengine.engine import Engine
from riskengine.stream.base import StreamError, WorkerStats, parse_kafka_url
from riskengine.stream.kafka import KafkaWorker, WorkerSettings

__all__ = ["build_settings", "run_foreground", "split_options"]


def split_options(options: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``KEY=VALUE`` librdkafka settings → (consumer, producer) settings. A key prefixed
    ``consumer:`` or ``producer:`` goes to that client only; others go to both.

    >>> split_options(["consumer:session.timeout.ms=6000", "client.id=w1"])
    ({'session.timeout.ms': '6000', 'client.id': 'w1'}, {'client.id': 'w1'})
    """
    consumer: dict[str, str] = {}
    producer: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise StreamError(f"--kafka-option {option[:200]!r}: expected KEY=VALUE")
        which, colon, name = key.partition(":")
        if colon and which not in ("consumer", "producer"):
            raise StreamError(f"--kafka-option {option[:200]!r}: the prefix must be "
                              "consumer: or producer:")
        if not colon or which == "consumer":
            consumer[name if colon else key] = value
        if not colon or which == "producer":
            producer[name if colon else key] = value
    return consumer, producer


def build_settings(*, source: str, sink: str, dead_letter: str | None, group: str,
                   scene: str, state_dir: Path | None, max_events: int | None,
                   idle_exit_s: float | None, batch_size: int,
                   kafka_options: Sequence[str], checkpoint_interval_s: float = 300.0
                   ) -> WorkerSettings:
    """The CLI's options as `WorkerSettings`; `StreamError` names the bad option."""
    consumer, producer = split_options(kafka_options)
    return WorkerSettings(
        source=parse_kafka_url(source, "--source"), sink=parse_kafka_url(sink, "--sink"),
        dead_letter=(parse_kafka_url(dead_letter, "--dead-letter")
                     if dead_letter is not None else None),
        group=group, scene=scene, state_dir=state_dir, max_events=max_events,
        idle_exit_s=idle_exit_s, batch_size=batch_size, consumer_options=consumer,
        producer_options=producer, checkpoint_interval_s=checkpoint_interval_s)


@contextmanager
def _stop_on_signals(worker: KafkaWorker) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %s: finishing the batch in flight", signum)
        worker.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_foreground(engine: Engine, settings: WorkerSettings) -> WorkerStats:
    """Run a `KafkaWorker` until SIGTERM/SIGINT, `max_events` or idle."""
    worker = KafkaWorker(engine, settings)
    with _stop_on_signals(worker):
        return worker.run()
