"""A private redis-server for the Redis state tests (tests/servers.py), one per session.

Also makes the shared helpers importable (`tests/oracle.py`, `tests/streams.py`) and
puts the working tree's `riskengine` first, as tests/features/conftest.py does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

_TESTS = Path(__file__).resolve().parents[1]
for _path in (str(_TESTS.parent), str(_TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from servers import redis_server  # noqa: E402


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an empty database (scripts stay cached, as on a live server)."""
    connection = redis.Redis.from_url(redis_url)
    connection.flushall()
    try:
        yield connection
    finally:
        connection.close()
