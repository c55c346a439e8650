"""Private Redis servers for the Redis state tests (tests/servers.py), one of each kind per
session: a single redis-server and a 3-primary Redis Cluster. Every test that takes
`redis_url` or `client` runs against both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from riskengine.state.redis import connect
from riskengine.state.redis.functions import Client
from tests.servers import redis_cluster, redis_server


@pytest.fixture(scope="session")
def standalone_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    with redis_cluster() as url:
        yield url


@pytest.fixture(params=["standalone", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of the Redis under test: `redis://…` or `redis+cluster://…`."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def _fresh(url: str) -> Iterator[Client]:
    connection = connect(url)
    connection.flushall()
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[Client]:
    """A client on an empty database (function libraries stay loaded, as on a live
    server)."""
    yield from _fresh(redis_url)


@pytest.fixture
def standalone_client(standalone_url: str) -> Iterator[Client]:
    """The same on the single server only, for tests of what runs inside one Lua call
    (where a cluster adds nothing) or of one server's memory."""
    yield from _fresh(standalone_url)
