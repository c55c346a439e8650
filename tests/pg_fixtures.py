"""Fixtures shared by every suite (loaded as a plugin, see pyproject): the session's private
PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from tests.servers import postgres_server

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of the session's private PostgreSQL server (its default database)."""
    with postgres_server() as url:
        yield url


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> str:
    """URL of a new, empty database on the session's server."""
    name = f"log_{next(_databases)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return with_database(postgres_url, name)
