"""What the Redis Streams source and sink share: stream addresses, the worker's settings,
the entry record, and Redis errors as `StreamError`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import redis

from riskengine.stream.base import CommonSettings, StreamError

__all__ = ["EVENT_FIELD", "SCHEME", "Entry", "RedisStream", "RedisStreamSettings",
           "connect", "parse_stream_url", "redis_errors"]

EVENT_FIELD = b"event"
SCHEME = "redis-stream"

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry: its id and fields."""


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
class RedisStreamSettings(CommonSettings[RedisStream]):
    """What a Redis Streams worker reads, writes and how; validated when built."""

    consumer: str | None = None
    """This worker's consumer name; default host-pid. Keep it across restarts to read
    its own pending entries first."""
    claim_idle_ms: int = 30_000
    block_ms: int = 100
    sink_maxlen: int | None = None
    """Trim the sink (and dead-letter) stream to about this many entries (MAXLEN ~)."""

    def __post_init__(self) -> None:
        self.check_common("stream", self.source.stream)
        if self.claim_idle_ms < 1:
            raise StreamError("claim_idle_ms must be at least 1")
        if self.from_timestamp_ms is not None and self.state_dir is not None:
            raise StreamError("a replay starts from fresh state and acknowledges nothing: "
                              "it takes no --state-dir")


def connect(where: RedisStream) -> redis.Redis:
    return redis.Redis.from_url(where.redis_url, socket_timeout=30, socket_connect_timeout=10)


P = ParamSpec("P")
R = TypeVar("R")


def redis_errors(method: Callable[P, R]) -> Callable[P, R]:
    """`method`, with a Redis failure raised as `StreamError` (the worker stops; what it
    did not acknowledge stays pending)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StreamError(f"Redis failed: {exc}; unacknowledged entries stay pending "
                              "and are read again") from None

    return wrapper
