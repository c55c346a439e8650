"""What is particular to Redis Cluster and to function libraries: where entities land,
libraries lost on one node, and the state URLs of `connect`."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from redis.cluster import RedisCluster

from riskengine.state.redis import RedisStateError, connect
from riskengine.state.redis.connect import cluster_nodes
from riskengine.state.redis.functions import Client
from tests.oracle import Oracle
from tests.redis.redis_harness import RedisDecider
from tests.redis.test_redis_oracle import compare_stream
from tests.streams import STREAM_FEATURES, STREAM_LATENESS, STREAM_LATENESS_MS, random_stream


def test_library_lost_mid_stream_is_loaded_again(client: Client) -> None:
    """FUNCTION FLUSH (a restarted or new node): the node that misses the library gets it
    again and only the refused calls are sent again. On a cluster, one node loses it."""
    events = random_stream(41, 300)
    decider = RedisDecider(client, STREAM_FEATURES, STREAM_LATENESS)
    oracle = Oracle(STREAM_FEATURES, STREAM_LATENESS_MS)
    compare_stream(decider, events[:150], oracle)
    if isinstance(client, RedisCluster):
        victim: Any = client.get_primaries()[1]
        client.execute_command("FUNCTION FLUSH", target_nodes=victim)
    else:
        client.function_flush()
    compare_stream(decider, events[150:], oracle)


def test_entities_spread_over_the_cluster(cluster_url: str) -> None:
    """Hash tags put each bucket (and its entities) on one slot; buckets spread."""
    cluster: Any = connect(cluster_url)
    try:
        cluster.flushall()
        decider = RedisDecider(cluster, STREAM_FEATURES, STREAM_LATENESS, buckets=64)
        for event in random_stream(42, 200):
            decider.evaluate("s", copy.deepcopy(event))
        sizes = [cluster.get_redis_connection(node).dbsize()
                 for node in cluster.get_primaries()]
        assert len(sizes) == 3 and all(size > 0 for size in sizes), sizes
    finally:
        cluster.close()


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+cluster://10.0.0.1:7000", (None, None, [("10.0.0.1", 7000)])),
    ("redis+cluster://a:7000,b:7001,c:7002/0",
     (None, None, [("a", 7000), ("b", 7001), ("c", 7002)])),
    ("rediss+cluster://app:s%40cret@a:7000, [::1]:7001",
     ("app", "s@cret", [("a", 7000), ("::1", 7001)])),
    ("redis+cluster://:pw@a:7000", (None, "pw", [("a", 7000)])),
])
def test_cluster_urls(url: str, expected: tuple[Any, ...]) -> None:
    assert cluster_nodes(url) == expected


@pytest.mark.parametrize("url", [
    "redis+cluster://a:7000/1", "redis+cluster://a", "redis+cluster://a:0",
    "redis+cluster://a:7000?timeout=1", "memcached://a:11211", "redis+cluster://:pw@a:x",
])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(RedisStateError) as refused:
        connect(url)
    assert "pw" not in str(refused.value)


def test_connect_gives_the_right_client(redis_url: str) -> None:
    connection = connect(redis_url)
    try:
        assert isinstance(connection, RedisCluster) == redis_url.startswith("redis+cluster")
        assert connection.ping()
        with pytest.raises(RedisStateError):
            connect(redis_url, decode_responses=True)
    finally:
        connection.close()
