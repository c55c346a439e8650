"""A private Kafka-protocol broker (Tansu, tests/servers.py) for the stream tests, one per
session; each test makes its own topics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import kafka_server


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """`127.0.0.1:PORT` of a broker that lives for the whole test session."""
    with kafka_server() as address:
        yield address
