"""A private Kafka-protocol broker (Tansu, tests/servers.py) for the stream tests, one per
session; each test makes its own topics. Makes tests/servers.py importable and puts the
working tree's `riskengine` first, as the other test folders do."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for _path in (str(_TESTS.parent), str(_TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from servers import kafka_server  # noqa: E402


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """`127.0.0.1:PORT` of a broker that lives for the whole test session."""
    with kafka_server() as address:
        yield address
