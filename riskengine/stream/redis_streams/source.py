"""The Redis Streams source: a consumer group (the entries read since the checkpoint
first, decided again only to rebuild the state; then this consumer's own pending
entries, those taken over with XAUTOCLAIM, and new ones), XACK; or a replay by XRANGE."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import redis

from riskengine.stream.base import StreamError
from riskengine.stream.checkpoint import PreviousRun
from riskengine.stream.loop import Batch, Offsets
from riskengine.stream.metrics import StreamMetrics
from riskengine.stream.redis_streams.base import (
    EVENT_FIELD,
    Entry,
    RedisStreamSettings,
    connect,
    redis_errors,
)
from riskengine.tracing import TRACE_FIELDS

__all__ = ["RedisSource"]

_TRACE_KEYS = tuple((name, name.encode()) for name in TRACE_FIELDS)

log = logging.getLogger(__name__)


class RedisSource:
    """`riskengine.stream.loop.Source` over a Redis stream."""

    no_value = "the entry has no 'event' field"

    def __init__(self, settings: RedisStreamSettings, metrics: StreamMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stream = settings.source.stream
        self.consumer = settings.consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.ready_at: float | None = None
        self.client = connect(settings.source)
        self._newest = b"0-0"
        """The newest entry id of a finished batch (what a checkpoint covers)."""
        self._rebuild: tuple[bytes, bytes] | None = None
        """The entries still to decide only to rebuild the state (XRANGE's min and max)."""
        self._replay: tuple[bytes, bytes] | None = None
        """A replay's entries still to read (XRANGE's min and max; None: not a replay)."""
        self._ended = False
        self._own_pending = True  # this consumer's pending entries first (a restart)
        self._claimed_at = 0.0

    def start(self, resume: Offsets, previous: PreviousRun | None,
              save: Callable[[], None] | None) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise StreamError(f"cannot reach {self.settings.source}: {exc}") from None
        self.metrics.assigned.set(1)
        if self.settings.from_timestamp_ms is not None:
            self._start_replay(self.settings.from_timestamp_ms)
        else:
            self._join(resume.get((self.stream, 0)), save)
        self.ready_at = time.monotonic()

    @redis_errors
    def _start_replay(self, start_ms: int) -> None:
        end = _entries(self.client.xrevrange(self.stream, count=1))
        if not end:
            self._ended = True
            return
        start = f"{start_ms}-0".encode()
        log.info("replaying %s from %s to %s", self.stream, start.decode(), end[0][0].decode())
        self._replay = (start, end[0][0])  # the start time's first entry included

    @redis_errors
    def _join(self, saved: int | None, save: Callable[[], None] | None) -> None:
        """Join the group (creating it and the stream if need be); with a checkpoint,
        plan to rebuild the state from the entries delivered after it."""
        client, stream, group = self.client, self.stream, self.settings.group
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        if save is None:
            return
        if saved is None:
            save()
            return
        self._newest = _id_text(saved)
        delivered = b"0-0"
        for info in client.xinfo_groups(stream):
            if info["name"] in (group, group.encode()):
                delivered = _as_bytes(info["last-delivered-id"])
        if _id_key(delivered) > _id_key(self._newest):
            log.warning("rebuilding the state from %s to %s without producing",
                        self._newest.decode(), delivered.decode())
            self._rebuild = (b"(" + self._newest, delivered)

    @redis_errors
    def poll(self, limit: int) -> Batch[Entry] | None:
        if self._rebuild is not None:
            entries = self._page(self._rebuild, limit)
            if entries:
                self._rebuild = (b"(" + entries[-1][0], self._rebuild[1])
                return _batch(entries, quiet=True)
            self._rebuild = None
        if self._replay is not None:
            entries = self._page(self._replay, limit)
            if not entries:
                self._replay, self._ended = None, True
                return None
            self._replay = (b"(" + entries[-1][0], self._replay[1])
            return _batch(entries)
        if self._ended:
            return None
        settings, client = self.settings, self.client
        stream, group = self.stream, settings.group
        entries = []
        if time.monotonic() - self._claimed_at >= settings.claim_idle_ms / 2000:
            self._claimed_at = time.monotonic()
            entries = self._claim(limit)
        if not entries and self._own_pending:
            entries = _entries(client.xreadgroup(group, self.consumer, {stream: "0"},
                                                 count=limit))
            self._own_pending = bool(entries)
        if not entries:
            entries = _entries(client.xreadgroup(group, self.consumer, {stream: ">"},
                                                 count=limit, block=settings.block_ms))
        return _batch(entries) if entries else None

    def _page(self, span: tuple[bytes, bytes], limit: int) -> list[Entry]:
        """Up to `limit` entries from XRANGE `span` (min, max)."""
        return _entries(self.client.xrange(self.stream, min=span[0], max=span[1],
                                           count=limit))

    def _claim(self, limit: int) -> list[Entry]:
        """Take over entries another consumer left pending for `claim_idle_ms`."""
        settings = self.settings
        reply = self.client.xautoclaim(self.stream, settings.group, self.consumer,
                                       settings.claim_idle_ms, start_id="0-0", count=limit)
        claimed = [(i, f) for i, f in reply[1] if f is not None] if len(reply) > 1 else []
        if claimed:
            log.warning("took over %d entries pending for over %d ms", len(claimed),
                        settings.claim_idle_ms)
        return _entries_of(claimed)

    def where(self, message: Entry) -> str:
        return f"{self.stream}@{message[0].decode()}"

    def trace_carrier(self, message: Entry) -> dict[str, str]:
        """The entry's ``traceparent`` / ``tracestate`` fields."""
        fields = message[1]
        return {name: fields[key].decode("latin-1") for name, key in _TRACE_KEYS
                if key in fields}

    @redis_errors
    def commit(self, batch: Batch[Entry], done: int) -> bool:
        """XACK the first `done` entries, unless they were read without the group (a
        rebuild, a replay)."""
        ids = [entry_id for entry_id, _ in batch.messages[:done]]
        newest = _id_key(self._newest)
        for entry_id in ids:
            if _id_key(entry_id) > newest:
                self._newest, newest = entry_id, _id_key(entry_id)
        if not ids or batch.quiet is not None or self.settings.from_timestamp_ms is not None:
            return False
        self.client.xack(self.stream, self.settings.group, *ids)
        return True

    def report(self) -> str:
        """The group's lag (entries not yet delivered to it; Redis 7.0+) as the
        consumer-lag metric, partition "0"."""
        if self.settings.from_timestamp_ms is not None:
            return f"at {self._newest.decode()}"
        group = self.settings.group
        try:
            groups = self.client.xinfo_groups(self.stream)
        except redis.RedisError:  # the next read says what is wrong
            return "lag unknown"
        for info in groups:
            if info["name"] in (group, group.encode()) and info.get("lag") is not None:
                self.metrics.lag.labels(self.stream, "0").set(int(info["lag"]))
                return f"{int(info['lag']):,} behind"
        return "lag unknown"

    def at_end(self) -> bool:
        return self._ended

    def offsets(self) -> Offsets:
        return {(self.stream, 0): _id_number(self._newest)}

    def close(self) -> None:
        self.client.close()


def _batch(entries: list[Entry], quiet: bool = False) -> Batch[Entry]:
    return Batch(entries, [fields.get(EVENT_FIELD) if fields else None
                           for _, fields in entries],
                 quiet=[True] * len(entries) if quiet else None)


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _entries(reply: Any) -> list[Entry]:
    """XREADGROUP / XRANGE replies → [(id, fields)]."""
    if not reply:
        return []
    if isinstance(reply, list) and reply and isinstance(reply[0], (list, tuple)) and \
            len(reply[0]) == 2 and isinstance(reply[0][1], list):  # XREADGROUP
        rows = reply[0][1]
    else:
        rows = reply
    return _entries_of(rows)


def _entries_of(rows: Any) -> list[Entry]:
    return [(_as_bytes(i), {_as_bytes(k): _as_bytes(v) for k, v in (f or {}).items()})
            for i, f in rows]


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


_SEQ_BITS = 22


def _id_number(entry_id: bytes) -> int:
    """An entry id as one integer below 2^63, for the checkpoint's offsets file (entry
    sequence numbers within one millisecond stay far below 2^22 in practice).

    >>> _id_text(_id_number(b"1767225600000-5"))
    b'1767225600000-5'
    """
    ms, seq = _id_key(entry_id)
    if seq >= 1 << _SEQ_BITS:
        raise StreamError(f"entry id {entry_id!r}: a sequence number this large cannot be "
                          "checkpointed")
    return (ms << _SEQ_BITS) | seq


def _id_text(number: int) -> bytes:
    return f"{number >> _SEQ_BITS}-{number & ((1 << _SEQ_BITS) - 1)}".encode()
