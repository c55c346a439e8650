"""What the Kafka source and sink share: the worker's settings and the message record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import Message

from riskengine.stream.base import CommonSettings, KafkaTopic, StreamError
from riskengine.stream.kafka.group import DEFAULT_SESSION_TIMEOUT_MS, check_session_timeout

__all__ = ["Record", "WorkerSettings"]

Record = tuple[Message, str, int, int]
"""A consumed message with its topic, partition and offset (read once, at the poll)."""


@dataclass(frozen=True, kw_only=True)
class WorkerSettings(CommonSettings[KafkaTopic]):
    """What a Kafka worker reads, writes and how; validated when built."""

    from_offset: int | None = None
    """Replay: read every partition from this offset (no group offsets used or moved)."""
    stop_at_end: bool = False
    """Stop once every partition has been read to its end (the default of a replay)."""
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    """The consumer group's session timeout (`riskengine.stream.kafka.group`)."""
    consumer_options: Mapping[str, str] = field(default_factory=dict)
    """librdkafka settings of the consumer (over the worker's own)."""
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
        check_session_timeout(self.session_timeout_ms, "session_timeout_ms")
        self.check_common("topic", self.source.topic)
