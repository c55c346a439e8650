"""The Kafka sink: decisions keyed by event id, dead letters with the original key and
value and the error in headers; `flush` waits for the broker's acknowledgements.

librdkafka reports only failed deliveries (``delivery.report.only.error``): `flush`
returning with nothing left and no failure reported means the broker took every
message, and a batch of 1,000 decisions costs no 1,000 Python callbacks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import Producer

from riskengine.decision import Decision
from riskengine.stream.base import PoisonMessage, StreamError
from riskengine.stream.codec import dead_letter_headers, decision_message
from riskengine.stream.kafka.base import Record, WorkerSettings

__all__ = ["KafkaSink"]

FLUSH_TIMEOUT_S = 60.0
"""How long a batch may wait for the broker to acknowledge its decisions."""


class KafkaSink:
    """`riskengine.stream.loop.Sink` to a Kafka topic (and a dead-letter topic)."""

    def __init__(self, settings: WorkerSettings) -> None:
        sink = settings.required_sink()
        self.topic = sink.topic
        self._failures: list[str] = []
        self._producer = self._connect(sink.bootstrap, settings)
        self._dead: tuple[Producer, str] | None = None
        """The dead letters' producer (the sink's when on the same cluster) and topic."""
        dead = settings.dead_letter
        if dead is not None:
            self._dead = (self._producer if dead.bootstrap == sink.bootstrap
                          else self._connect(dead.bootstrap, settings), dead.topic)

    def _connect(self, bootstrap: str, settings: WorkerSettings) -> Producer:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": 5,
                                "delivery.report.only.error": True,
                                "on_delivery": self._delivered}
        conf.update(settings.producer_options)
        return Producer(conf)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str() if hasattr(err, 'str') else err}")

    def decision(self, message: Record, decision: Decision, redelivery: bool,
                 trace: Mapping[str, str] | None = None) -> None:
        """Produce `decision` keyed by its event id; `trace` goes in its headers."""
        _, topic, partition, offset = message
        value = decision_message(decision, {"topic": topic, "partition": partition,
                                            "offset": offset}, redelivery)
        if not trace:
            try:  # the usual case, without the retry loop's call
                self._producer.produce(self.topic, value, decision.event_id)
                return
            except BufferError:
                pass
        headers = None if not trace else [(k, v.encode()) for k, v in trace.items()]
        produce(self._producer, self.topic, value, decision.event_id, headers)

    def dead_letter(self, message: Record, error: PoisonMessage) -> bool:
        if self._dead is None:
            return False
        msg, topic, partition, offset = message
        produce(*self._dead, msg.value(), msg.key(),
                dead_letter_headers(error, topic, partition, offset))
        return True

    def flush(self) -> None:
        """Wait for the broker to acknowledge everything produced so far."""
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if self._dead is not None and self._dead[0] is not self._producer:
            left += self._dead[0].flush(FLUSH_TIMEOUT_S)
        if left or self._failures:
            problems = "; ".join(self._failures[:5]) or f"{left} still unacknowledged"
            raise StreamError(f"the broker did not take the decisions ({problems}); "
                              "offsets after the last commit are not committed")

    def close(self) -> None:
        """Nothing to release: a flushed producer holds nothing unsent."""


def produce(producer: Producer, topic: str, value: bytes | None, key: str | bytes | None,
            headers: list[tuple[str, bytes]] | None, on_delivery: Any = None) -> None:
    """`produce`, waiting for room when the local queue is full; `on_delivery`: a
    callback of this message's delivery (None: the producer's own, if any)."""
    extra: dict[str, Any] = {}
    if headers is not None:
        extra["headers"] = headers
    if on_delivery is not None:
        extra["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, value, key, **extra)
            return
        except BufferError:
            producer.poll(0.1)
