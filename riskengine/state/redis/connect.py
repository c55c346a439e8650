"""`connect(url)`: the Redis client a state URL asks for, one server or a Redis Cluster.

    >>> connect("redis://127.0.0.1:6379/0")                    # doctest: +SKIP
    >>> connect("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")  # doctest: +SKIP
    >>> cluster_nodes("redis+cluster://:pw@a:7000,[::1]:7001")
    (None, 'pw', [('a', 7000), ('::1', 7001)])
    >>> state_options("unix:///run/redis.sock?db=2&buckets=65536")
    ('unix:///run/redis.sock?db=2', 65536)

A state URL may carry ``buckets=N``, riskengine's own: the bucket count to create the
state with (`SharedClock`); the client never sees it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import redis
from redis.cluster import ClusterNode, RedisCluster

from riskengine.state.redis.clock import MAX_BUCKETS
from riskengine.state.redis.codec import RedisStateError
from riskengine.state.redis.functions import Client

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SERVER_SCHEMES = ("redis", "rediss", "unix")


def connect(url: str, **options: Any) -> Client:
    """A client for `url`, with bytes replies as `RedisSceneFeatures` needs them.

    - ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS) and
      ``unix:///path/to/socket?db=N``: one Redis server (`redis.Redis.from_url`).
    - ``redis+cluster://[[user]:password@]host:port[,host:port…]`` and
      ``rediss+cluster://…`` (TLS): a Redis Cluster, found through any of the listed
      nodes (`redis.cluster.RedisCluster`, which learns the others and the slot map from
      them). A cluster has database 0 only, so the URL has no other.

    `options` go to the client (`socket_timeout=0.05`, `max_connections=64`, …).
    """
    url = state_options(url)[0]
    scheme = url.partition("://")[0].lower()
    options.setdefault("decode_responses", False)
    if options["decode_responses"]:
        raise RedisStateError("the Redis state needs bytes replies: decode_responses=False")
    if scheme in SERVER_SCHEMES:
        return redis.Redis.from_url(url, **options)
    if scheme in CLUSTER_SCHEMES:
        username, password, nodes = cluster_nodes(url)
        if username is not None:
            options.setdefault("username", username)
        if password is not None:
            options.setdefault("password", password)
        if scheme == "rediss+cluster":
            options.setdefault("ssl", True)
        node: Any = ClusterNode  # untyped in redis-py
        return RedisCluster(startup_nodes=[node(host, port) for host, port in nodes],
                            **options)
    raise RedisStateError(
        f"state URL {_safe(url)!r}: expected redis://host:port/db, rediss://…, unix://… or "
        f"redis+cluster://host:port,host:port,…")


def state_options(url: str) -> tuple[str, int | None]:
    """(`url` without riskengine's own query parameter, the ``buckets`` it gives or None)."""
    base, mark, query = url.partition("?")
    if not mark:
        return url, None
    query, hashmark, fragment = query.partition("#")
    kept: list[str] = []
    buckets = None
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name != "buckets":
            if part:
                kept.append(part)
            continue
        if buckets is not None:
            raise RedisStateError(f"state URL {_safe(url)!r}: buckets is given twice")
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_BUCKETS:
            raise RedisStateError(f"state URL {_safe(url)!r}: buckets must be a whole number "
                                  f"from 1 to {MAX_BUCKETS:,}; got {value[:20]!r}")
        buckets = int(value)
    rest = "&".join(kept)
    return base + ("?" + rest if rest else "") + hashmark + fragment, buckets


def cluster_nodes(url: str) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """(username, password, [(host, port), …]) of a ``redis+cluster://`` URL."""
    rest = url.partition("://")[2]
    if "?" in rest or "#" in rest:
        raise RedisStateError(f"cluster URL {_safe(url)!r}: options go to connect(), "
                              f"not into the URL")
    credentials, _, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    if path not in ("", "0"):
        raise RedisStateError(f"cluster URL {_safe(url)!r}: a Redis Cluster has database 0 "
                              f"only")
    username = password = None
    if credentials:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = []
    for part in hosts.split(","):
        part = part.strip()
        if part.startswith("["):
            host, _, port_text = part[1:].partition("]:")
        else:
            host, _, port_text = part.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise RedisStateError(f"cluster URL {_safe(url)!r}: {part!r} is not host:port")
        nodes.append((host, int(port_text)))
    return username, password, nodes


def _safe(url: str) -> str:
    """`url` without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hosts}"
