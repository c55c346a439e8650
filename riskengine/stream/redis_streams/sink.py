"""The Redis Streams sink: a batch's decisions and dead letters XADDed in one pipeline
per server at `flush`, which returns only once Redis took every entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from riskengine.decision import Decision
from riskengine.stream.base import PoisonMessage, StreamError
from riskengine.stream.codec import decision_message
from riskengine.stream.redis_streams.base import (
    Entry,
    RedisStream,
    RedisStreamSettings,
    connect,
    redis_errors,
)

__all__ = ["RedisSink"]

Fields = dict[Any, Any]


class RedisSink:
    """`riskengine.stream.loop.Sink` to a Redis stream (and a dead-letter stream)."""

    def __init__(self, settings: RedisStreamSettings) -> None:
        self.sink = settings.required_sink()
        self.dead = settings.dead_letter
        self.source = settings.source.stream
        self.maxlen = settings.sink_maxlen
        self._clients: dict[str, redis.Redis] = {}
        self._out: list[tuple[RedisStream, Fields]] = []

    def decision(self, message: Entry, decision: Decision, redelivery: bool,
                 trace: Mapping[str, str] | None = None) -> None:
        """Queue `decision` (fields ``decision``, ``event_id`` and `trace`'s) for `flush`."""
        body = decision_message(decision, {"stream": self.source, "id": message[0].decode()},
                                redelivery)
        fields: Fields = {"decision": body, "event_id": decision.event_id}
        if trace:
            fields.update(trace)
        self._out.append((self.sink, fields))

    def dead_letter(self, message: Entry, error: PoisonMessage) -> bool:
        if self.dead is None:
            return False
        entry_id, fields = message
        self._out.append((self.dead, _dead_letter(fields, error, self.source, entry_id)))
        return True

    @redis_errors
    def flush(self) -> None:
        """XADD every entry, one pipeline per server; raises unless all were taken."""
        out, self._out = self._out, []
        by_server: dict[str, Any] = {}
        for where, fields in out:
            pipe = by_server.get(where.redis_url)
            if pipe is None:
                pipe = by_server[where.redis_url] = self._client(where).pipeline(
                    transaction=False)
            pipe.xadd(where.stream, fields, maxlen=self.maxlen, approximate=True)
        for pipe in by_server.values():
            for reply in pipe.execute(raise_on_error=False):
                if isinstance(reply, Exception):
                    raise StreamError(f"the sink did not take the decisions ({reply}); "
                                      "the batch stays pending and is read again")

    def _client(self, where: RedisStream) -> redis.Redis:
        client = self._clients.get(where.redis_url)
        if client is None:
            client = self._clients[where.redis_url] = connect(where)
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _dead_letter(fields: Mapping[bytes, bytes], error: PoisonMessage, stream: str,
                 entry_id: bytes) -> Fields:
    out: Fields = dict(fields)
    out.update({"riskengine.error.kind": error.kind,
                "riskengine.error.message": str(error)[:2000],
                "riskengine.error.field": error.field or "",
                "riskengine.source.stream": stream,
                "riskengine.source.id": entry_id})
    return out
