"""Stream runtime: the engine between a stream of events and one of decisions
(`riskengine worker`).

One loop (`loop.StreamLoop`: consume → decide → produce → flush → commit → checkpoint)
over a source and a sink adapter per transport: `kafka` (see it for the delivery
guarantees and how the input topic must be partitioned) and `redis_streams`; `worker`
decides each message whatever the transport.
"""

from riskengine.stream.base import (
    KafkaTopic,
    PoisonMessage,
    StreamError,
    WorkerStats,
    parse_kafka_url,
)
from riskengine.stream.kafka import KafkaWorker, WorkerSettings
from riskengine.stream.loop import StreamLoop

__all__ = ["KafkaTopic", "KafkaWorker", "PoisonMessage", "StreamError", "StreamLoop",
           "WorkerSettings", "WorkerStats", "parse_kafka_url"]
