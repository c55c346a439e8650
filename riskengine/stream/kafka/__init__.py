"""The Kafka stream worker: events in, decisions out, at least once; and replay.

`KafkaWorker` is the stream loop (`riskengine.stream.loop`) with a Kafka source
(`source.py`: the consumer, rebalances, replay, commits, lag) and sink (`sink.py`: the
producers and their acknowledgements); `base.py` holds the settings.

Per batch of up to `batch_size` messages: decode each value (one JSON object), decide it
with the engine, produce the decision to the sink keyed by `event_id`; then wait
until the broker acknowledged every produced message (`flush`), and only then commit the
batch's offsets. A crash at any point re-reads from the last commit: nothing is lost, and
the engine's idempotency guard answers a re-read event (marked ``"redelivery": true``)
without counting it again — once the state holds it.

In-memory state across crashes (`riskengine.stream.checkpoint`): a checkpoint is the
state and the offsets it covers. After an unclean stop the worker restores it, re-reads
from its offsets up to the group's committed offsets deciding without producing (those
decisions were produced and acknowledged: this only rebuilds the state), and marks the
decisions of the batch that may have been in flight when it died as redeliveries. A
partition first seen by a run is checkpointed at once at its starting offset.

Shared state (`RedisState`): the state and the remembered decisions are in Redis, so a
crash or a rebalance needs nothing more; while Redis does not answer (the engine gives a
degraded fallback decision) the worker holds the event and asks again every
`degraded_retry_s`, producing and committing nothing meanwhile.

Poison messages — a value that is not a JSON object, an event the scene refuses, an
engine failure on one event — go to the dead-letter topic with the original key and value
bytes and the error in headers (`riskengine.stream.codec.ERROR_HEADERS`), and the worker
goes on; without a dead-letter topic they are logged and skipped. Either way their
offsets are committed with the batch.

Partitioning. With in-memory state, one worker must see every event of an entity, in
order: either the input topic has one partition, or it is keyed by the one entity field
all the scene's features are keyed by (``pay_account`` for features ``…#pay_account``),
and each worker owns its partitions for good. Features keyed by different fields
(``pay_account`` and ``rcv_account``) cannot both be partition-local: run one worker, or
shared state. Kafka's ordering holds per partition only, so the LSN of an event is its
arrival at this worker; ``source`` in each decision gives the partition and offset. Each
partition is its own clock domain: it keeps its own scene clock.

Rebalances, in-memory state: a worker that gets a partition whose state it does not hold
(another worker had it, or this process starts without a checkpoint for it) reads it
from where its own state of it ends — the start of the log if it never held it — up to
the group's committed offset, deciding without producing, before it produces again: the
state is rebuilt from the log (which must retain at least the scene's largest window plus
its lateness), nothing is counted twice (the idempotency guard), and the first batch past
the committed offset is marked as redeliveries (the previous owner may have produced it).
A partition that went to another worker drops its clock and what this process held of
it at the next assignment.

Replay (`from_offset` / `from_timestamp_ms`): every partition of the source is assigned
directly (no group: nothing committed, the group's offsets untouched) at the start
offset, or at the broker's offset for the time with messages stamped earlier skipped
(some brokers answer an earlier offset), and read to the end as it is when reached.
`dry_run` produces nothing.

Shutdown (`stop`, wired to SIGTERM/SIGINT by the CLI): the batch in flight is finished,
flushed and committed, then the state is checkpointed (with `state_dir`).
"""

from __future__ import annotations

from riskengine.engine import Engine
from riskengine.stream.kafka.base import Record, WorkerSettings
from riskengine.stream.kafka.sink import KafkaSink
from riskengine.stream.kafka.source import KafkaSource
from riskengine.stream.loop import StreamLoop

__all__ = ["KafkaSink", "KafkaSource", "KafkaWorker", "WorkerSettings"]


class KafkaWorker(StreamLoop[Record]):
    """Consume, decide, produce, commit: the stream loop with the Kafka adapters; `run`
    until `stop`, `max_events`, idle, or the end of a replay."""

    def __init__(self, engine: Engine, settings: WorkerSettings) -> None:
        super().__init__(engine, settings,
                         lambda metrics: KafkaSource(engine, settings, metrics),
                         lambda: KafkaSink(settings))
