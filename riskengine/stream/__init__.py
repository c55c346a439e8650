"""Stream runtime: the engine as a Kafka consumer/producer (`riskengine worker`).

See `riskengine.stream.kafka` for the delivery guarantees and how the input topic must be
partitioned.
"""

from riskengine.stream.base import (
    KafkaTopic,
    PoisonMessage,
    StreamError,
    WorkerStats,
    parse_kafka_url,
)
from riskengine.stream.kafka import KafkaWorker, WorkerSettings

__all__ = ["KafkaTopic", "KafkaWorker", "PoisonMessage", "StreamError", "WorkerSettings",
           "WorkerStats", "parse_kafka_url"]
