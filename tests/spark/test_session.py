"""The Spark session: workers run this interpreter and import riskengine."""

from __future__ import annotations

import sys
from typing import Any


def test_workers_run_this_interpreter_and_import_riskengine(spark: Any) -> None:
    def probe(_: Any) -> list[tuple[str, str]]:
        import sys as worker_sys

        import riskengine

        return [(worker_sys.executable, riskengine.__file__)]

    found = set(spark.sparkContext.parallelize(range(4), 2).mapPartitions(probe).collect())
    import riskengine

    assert found == {(sys.executable, riskengine.__file__)}

