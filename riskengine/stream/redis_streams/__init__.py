"""The Redis Streams worker: entries in through a consumer group, decisions out by XADD.

`RedisStreamWorker` is the stream loop (`riskengine.stream.loop`) with a Redis Streams
source (`source.py`: the group, pending entries, XAUTOCLAIM, XACK, replay, lag) and sink
(`sink.py`: the XADD pipeline); `base.py` holds addresses and settings.

A stream is named by ``redis-stream://[user:password@]host:port[/db]/stream``. Each input
entry carries the event as JSON in its ``event`` field. Per batch of up to `batch_size`
entries: decide each, XADD the decisions (field ``decision``, the JSON of
`riskengine.stream.codec.decision_message`, and ``event_id``) to the sink in one
pipeline, and only once Redis answered every XADD, XACK the batch. A crash leaves the
unacknowledged entries pending: they are read again (this consumer's own pending entries
first, at start; those of a consumer gone quiet for `claim_idle_ms` are taken over with
XAUTOCLAIM), and the idempotency guard answers them without counting them again, marked
``"redelivery": true``.

Poison entries (no ``event`` field, not JSON, not an object, refused by the scene, an
engine error) go to the dead-letter stream with all their fields and the error in
``riskengine.error.kind`` / ``.message`` / ``.field`` and ``riskengine.source.stream`` /
``.id``; then they are acknowledged and the worker goes on.

State. A Redis stream has no partitions: with in-memory state, one consumer in the group
must see every entry (run one worker per group); with shared state (`RedisState`) any
number of consumers share the group. In-memory state is checkpointed with the id of the
newest entry of a finished batch (`state_dir`); after a crash the worker restores it and
decides again, without producing, the entries between that id and the group's last
delivered id (they were read before; those not acknowledged are read again afterwards
and produced as redeliveries).

Replay (`from_timestamp_ms`): entry ids are times, so the stream is read with XRANGE from
``T-0`` to its end as it is when reached, from fresh state, without a group.
"""

from __future__ import annotations

from riskengine.engine import Engine
from riskengine.stream.loop import StreamLoop
from riskengine.stream.redis_streams.base import (
    SCHEME,
    Entry,
    RedisStream,
    RedisStreamSettings,
    parse_stream_url,
)
from riskengine.stream.redis_streams.sink import RedisSink
from riskengine.stream.redis_streams.source import RedisSource

__all__ = ["SCHEME", "RedisSink", "RedisSource", "RedisStream", "RedisStreamSettings",
           "RedisStreamWorker", "parse_stream_url"]


class RedisStreamWorker(StreamLoop[Entry]):
    """Read, decide, XADD, XACK: the stream loop with the Redis Streams adapters; `run`
    until `stop`, `max_events`, idle, or the end of a replay."""

    def __init__(self, engine: Engine, settings: RedisStreamSettings) -> None:
        super().__init__(engine, settings, lambda metrics: RedisSource(settings, metrics),
                         lambda: RedisSink(settings))
