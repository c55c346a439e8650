"""Fixtures for the decision log tests: every log test runs on SQLite and on PostgreSQL.

The PostgreSQL server is a private one (tests/servers.py) started once per session; each
test gets a database of its own in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskengine.decisionlog import DecisionLog, open_log

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty log: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.db'}"
    fresh: str = request.getfixturevalue("fresh_postgres_url")
    return fresh


@pytest.fixture
def open_at(tmp_path: Path) -> Iterator[Any]:
    """`open_at(url, **options)` opens a log that is closed after the test."""
    opened: list[DecisionLog] = []

    def opener(url: str, **options: Any) -> DecisionLog:
        log = open_log(url, path_default=tmp_path / "default.db", **options)
        opened.append(log)
        return log

    yield opener
    for log in opened:
        log.close()


@pytest.fixture
def log(log_url: str, open_at: Any) -> DecisionLog:
    opened: DecisionLog = open_at(log_url)
    return opened
