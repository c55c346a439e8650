"""The Redis Streams worker: entries in through a consumer group, decisions out by XADD.

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
must see every entry (run one worker per group); with shared state (`SharedEngine`) any
number of consumers share the group. In-memory state is checkpointed with the id of the
newest entry read (`state_dir`); after a crash the worker restores it and decides again,
without producing, the entries between that id and the group's last delivered id (they
were read before; those not acknowledged are read again afterwards and produced as
redeliveries).

Replay (`from_timestamp_ms`): entry ids are times, so the stream is read with XRANGE from
``T-0`` to its end as it is when reached, from fresh state, without a group.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis

from riskengine.engine import Engine
from riskengine.stream.base import CommonSettings, PoisonMessage, StreamError, WorkerStats
from riskengine.stream.checkpoint import Checkpoint
from riskengine.stream.codec import decision_message
from riskengine.stream.worker import StreamWorker

__all__ = ["RedisStream", "RedisStreamSettings", "RedisStreamWorker", "parse_stream_url"]

log = logging.getLogger(__name__)

EVENT_FIELD = b"event"
SCHEME = "redis-stream"


@dataclass(frozen=True)
class RedisStream:
    """One stream on one Redis server (`redis_url` without the stream)."""

    redis_url: str
    stream: str

    def __str__(self) -> str:
        parts = urlsplit(self.redis_url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return f"{SCHEME}://{netloc}{parts.path}/{self.stream}"


def parse_stream_url(url: str, option: str) -> RedisStream:
    """``redis-stream://host:port[/db]/stream`` → `RedisStream`.

    >>> parse_stream_url("redis-stream://127.0.0.1:6379/2/events", "--source")
    RedisStream(redis_url='redis://127.0.0.1:6379/2', stream='events')
    >>> str(parse_stream_url("redis-stream://u:pw@h:1/decisions", "--sink"))
    'redis-stream://h:1/0/decisions'
    """
    parts = urlsplit(url)
    if parts.scheme != SCHEME or not parts.hostname:
        raise StreamError(f"{option}: expected {SCHEME}://host:port[/db]/stream, got "
                          f"{url[:200]!r}")
    segments = [unquote(s) for s in parts.path.strip("/").split("/") if s]
    db = "0"
    if len(segments) == 2 and segments[0].isdigit():
        db, segments = segments[0], segments[1:]
    if len(segments) != 1 or not 0 < len(segments[0]) <= 1000:
        raise StreamError(f"{option}: {url[:200]!r} needs one stream name after the "
                          "address (and an optional database number before it)")
    try:
        parts.port  # noqa: B018  (validates the port)
    except ValueError as exc:
        raise StreamError(f"{option}: {url[:200]!r}: {exc}") from None
    return RedisStream(urlunsplit(("redis", parts.netloc, f"/{db}", "", "")), segments[0])


@dataclass(frozen=True, kw_only=True)
class RedisStreamSettings(CommonSettings):
    source: RedisStream
    sink: RedisStream | None
    dead_letter: RedisStream | None = None
    consumer: str | None = None
    """This worker's consumer name; default host-pid. Keep it across restarts to read
    its own pending entries first."""
    claim_idle_ms: int = 30_000
    block_ms: int = 100
    sink_maxlen: int | None = None
    """Trim the sink (and dead-letter) stream to about this many entries (MAXLEN ~)."""

    def __post_init__(self) -> None:
        self.check_common()
        if self.claim_idle_ms < 1:
            raise StreamError("claim_idle_ms must be at least 1")
        if self.sink is None and not self.dry_run:
            raise StreamError("--sink is needed unless it is a --dry-run")
        if self.from_timestamp_ms is not None and self.state_dir is not None:
            raise StreamError("a replay starts from fresh state and acknowledges nothing: "
                              "it takes no --state-dir")
        for out in (self.sink, self.dead_letter):
            if out is not None and out == self.source:
                raise StreamError(f"the source stream {self.source.stream!r} cannot also be "
                                  "the sink or the dead-letter stream")


Entry = tuple[bytes, dict[bytes, bytes]]
Fields = dict[Any, Any]


class RedisStreamWorker(StreamWorker):
    """Read, decide, XADD, XACK; `run` until `stop`, `max_events` or idle."""

    def __init__(self, engine: Engine, settings: RedisStreamSettings) -> None:
        super().__init__(engine, settings.scene, settings.degraded_retry_s)
        self.settings = settings
        self.consumer = settings.consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._checkpoint = Checkpoint(settings.state_dir) if settings.state_dir else None
        self._newest = b"0-0"  # the newest entry id read (what a checkpoint covers)
        self._redis: dict[str, redis.Redis] = {}

    def _client(self, where: RedisStream) -> redis.Redis:
        client = self._redis.get(where.redis_url)
        if client is None:
            client = redis.Redis.from_url(where.redis_url, socket_timeout=30,
                                          socket_connect_timeout=10)
            self._redis[where.redis_url] = client
        return client

    # the loop -------------------------------------------------------------------------

    def run(self) -> WorkerStats:
        settings = self.settings
        source = self._client(settings.source)
        try:
            source.ping()
        except redis.RedisError as exc:
            raise StreamError(f"cannot reach {settings.source}: {exc}") from None
        if settings.metrics_port is not None:
            port = self.metrics.serve(settings.metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", port)
        self.metrics.assigned.set(1)
        try:
            if settings.from_timestamp_ms is not None:
                self._replay(source, settings.from_timestamp_ms)
            else:
                self._consume(source)
        except redis.RedisError as exc:
            raise StreamError(f"Redis failed: {exc}; unacknowledged entries stay pending "
                              "and are read again") from None
        finally:
            if self._checkpoint is not None:
                self.stats.snapshot = str(self._checkpoint.save(
                    self.engine, {(settings.source.stream, 0): _id_number(self._newest)}))
                self._checkpoint.end_cleanly()
            for client in self._redis.values():
                client.close()
        return self.finish()

    def _consume(self, source: redis.Redis) -> None:
        settings = self.settings
        stream, group = settings.source.stream, settings.group
        try:
            source.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        if self._checkpoint is not None:
            self._restore(source)
        own_pending = True  # this consumer's pending entries first (a restart)
        last_entry = time.monotonic()
        last_claim = 0.0
        last_lag = 0.0
        last_checkpoint = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_lag >= 1.0:
                last_lag = time.monotonic()
                self._report_lag(source)
            limit = self._limit()
            if limit <= 0:
                break
            entries: list[Entry] = []
            if time.monotonic() - last_claim >= settings.claim_idle_ms / 2000:
                last_claim = time.monotonic()
                entries = self._claim(source, limit)
            if not entries and own_pending:
                entries = _entries(source.xreadgroup(group, self.consumer, {stream: "0"},
                                                     count=limit))
                own_pending = bool(entries)
            if not entries:
                entries = _entries(source.xreadgroup(group, self.consumer, {stream: ">"},
                                                     count=limit, block=settings.block_ms))
            self.record_metrics()
            if not entries:
                if settings.idle_exit_s is not None and \
                        time.monotonic() - last_entry >= settings.idle_exit_s:
                    log.info("no entry for %.1f s: stopping", settings.idle_exit_s)
                    break
                continue
            last_entry = time.monotonic()
            started = time.perf_counter()
            done = self._process(entries, rebuilding=False)
            if done:
                source.xack(stream, group, *done)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            if (self._checkpoint is not None and time.monotonic() - last_checkpoint
                    >= settings.checkpoint_interval_s):
                self._checkpoint.save(self.engine,
                                      {(stream, 0): _id_number(self._newest)})
                last_checkpoint = time.monotonic()

    def _report_lag(self, source: redis.Redis) -> None:
        """The group's lag (entries not yet delivered to it; Redis 7.0+) as the
        consumer-lag metric, partition "0"."""
        stream, group = self.settings.source.stream, self.settings.group
        for info in source.xinfo_groups(stream):
            if info["name"] in (group, group.encode()) and info.get("lag") is not None:
                self.metrics.lag.labels(stream, "0").set(int(info["lag"]))

    def _limit(self) -> int:
        limit = self.settings.batch_size
        if self.settings.max_events is not None:
            limit = min(limit, self.settings.max_events - self.stats.consumed)
        return limit

    def _claim(self, source: redis.Redis, limit: int) -> list[Entry]:
        """Take over entries another consumer left pending for `claim_idle_ms`."""
        settings = self.settings
        reply = source.xautoclaim(settings.source.stream, settings.group, self.consumer,
                                  settings.claim_idle_ms, start_id="0-0", count=limit)
        claimed = [(i, f) for i, f in reply[1] if f is not None] if len(reply) > 1 else []
        if claimed:
            log.warning("took over %d entries pending for over %d ms", len(claimed),
                        settings.claim_idle_ms)
        return _entries_of(claimed)

    def _restore(self, source: redis.Redis) -> None:
        """Restore the checkpoint and rebuild the state from the entries read after it."""
        assert self._checkpoint is not None
        stream, group = self.settings.source.stream, self.settings.group
        saved = self._checkpoint.restore(self.engine).get((stream, 0))
        self._checkpoint.begin(self.settings.batch_size)
        if saved is None:
            self._checkpoint.save(self.engine, {(stream, 0): 0})
            return
        self._newest = _id_text(saved)
        delivered = b"0-0"
        for info in source.xinfo_groups(stream):
            if info["name"] in (group, group.encode()):
                delivered = _as_bytes(info["last-delivered-id"])
        if _id_key(delivered) <= _id_key(self._newest):
            return
        log.warning("rebuilding the state from %s to %s without producing",
                    self._newest.decode(), delivered.decode())
        start = b"(" + self._newest
        while not self._stop.is_set():
            page = _entries(source.xrange(stream, min=start, max=delivered, count=1000))
            if not page:
                break
            self._process(page, rebuilding=True)
            start = b"(" + page[-1][0]

    def _replay(self, source: redis.Redis, start_ms: int) -> None:
        stream = self.settings.source.stream
        end = _entries(source.xrevrange(stream, count=1))
        if not end:
            return
        last = end[0][0]
        start: bytes = f"{start_ms}-0".encode()
        log.info("replaying %s from %s to %s", stream, start.decode(), last.decode())
        while not self._stop.is_set() and self._limit() > 0:
            page = _entries(source.xrange(stream, min=start, max=last, count=self._limit()))
            if not page:
                break
            self._process(page, rebuilding=False)
            start = b"(" + page[-1][0]
            self.record_metrics()
            log.info("progress: %s decided, %s dead-lettered, at %s", f"{self.stats.decided:,}",
                     f"{self.stats.dead_lettered:,}", page[-1][0].decode())

    # one batch ------------------------------------------------------------------------

    def _process(self, entries: list[Entry], rebuilding: bool) -> list[bytes]:
        """Decide `entries`, XADD what they give in one pipeline; return the ids done
        (to acknowledge). `rebuilding`: decide only, produce nothing."""
        settings = self.settings
        stream = settings.source.stream
        out: list[tuple[RedisStream, Fields]] = []
        done: list[bytes] = []
        outcomes = self.decide_batch(
            [fields.get(EVENT_FIELD) if fields else None for _, fields in entries],
            lambda i: f"{stream}@{entries[i][0].decode()}")
        for (entry_id, fields), outcome in zip(entries, outcomes, strict=True):
            if outcome is None:  # stopping: the rest stays pending
                break
            done.append(entry_id)
            if _id_key(entry_id) > _id_key(self._newest):
                self._newest = entry_id
            if rebuilding:
                self.stats.rebuilt += 1
                continue
            if isinstance(outcome, PoisonMessage):
                if EVENT_FIELD not in fields and outcome.kind == "undecodable":
                    outcome = PoisonMessage("undecodable", "the entry has no 'event' field")
                self.stats.dead_lettered += 1
                if settings.dead_letter is None:
                    log.warning("skipped %s@%s (%s): %s", stream, entry_id.decode(),
                                outcome.kind, outcome)
                elif not settings.dry_run:
                    out.append((settings.dead_letter, _dead_letter(fields, outcome, stream,
                                                                   entry_id)))
                continue
            decision = outcome.decision
            redelivery = not outcome.fresh
            if settings.sink is not None and not settings.dry_run:
                body = decision_message(decision, {"stream": stream, "id": entry_id.decode()},
                                        redelivery)
                out.append((settings.sink, {"decision": body, "event_id": decision.event_id}))
            self.counted(decision, redelivery)
        if out:
            self._add(out)
        return done

    def _add(self, out: list[tuple[RedisStream, Fields]]) -> None:
        """XADD every entry, one pipeline per server; raises unless all were taken."""
        maxlen = self.settings.sink_maxlen
        by_server: dict[str, Any] = {}
        for where, fields in out:
            pipe = by_server.get(where.redis_url)
            if pipe is None:
                pipe = by_server[where.redis_url] = self._client(where).pipeline(
                    transaction=False)
            pipe.xadd(where.stream, fields, maxlen=maxlen, approximate=True)
        for pipe in by_server.values():
            for reply in pipe.execute(raise_on_error=False):
                if isinstance(reply, Exception):
                    raise StreamError(f"the sink did not take the decisions ({reply}); "
                                      "the batch stays pending and is read again")


def _dead_letter(fields: Mapping[bytes, bytes], error: PoisonMessage, stream: str,
                 entry_id: bytes) -> Fields:
    out: Fields = dict(fields)
    out.update({"riskengine.error.kind": error.kind,
                "riskengine.error.message": str(error)[:2000],
                "riskengine.error.field": error.field or "",
                "riskengine.source.stream": stream,
                "riskengine.source.id": entry_id})
    return out


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
