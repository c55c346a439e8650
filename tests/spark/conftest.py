"""The Spark tests' session: one ``local[2]`` session for the whole run (a JVM start costs
seconds), with the Python workers on this interpreter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from riskengine.spark.session import spark_session


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    session = spark_session("local[2]", app_name="riskengine-tests", shuffle_partitions=4)
    yield session
    session.stop()
