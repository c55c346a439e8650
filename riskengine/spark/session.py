"""The Spark session the Spark runners use (`pip install 'riskengine[spark]'`).

PySpark starts a JVM (Java 17 or newer must be installed) and Python worker processes; the
workers run the interpreter named by ``PYSPARK_PYTHON``, which is set to this process's own
interpreter when unset, so that they import the same riskengine and the same packages.
`master` is any Spark master URL: ``local[2]`` (the default: two cores of this machine),
``local[*]``, ``spark://host:7077``, ``yarn``, ``k8s://…``. On a cluster the executors need
riskengine installed (the same version) and read the config's list files by the same paths.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from riskengine.exceptions import RiskEngineError

__all__ = ["DEFAULT_MASTER", "SparkUnavailableError", "spark_session"]

DEFAULT_MASTER = "local[2]"


class SparkUnavailableError(RiskEngineError):
    """PySpark is not installed, or no Spark session could be started."""


def spark_session(master: str | None = None, *, app_name: str = "riskengine",
                  shuffle_partitions: int | None = None,
                  conf: dict[str, str] | None = None) -> Any:
    """A Spark session on `master` (an existing active session is reused, as Spark does).

    `shuffle_partitions` sets ``spark.sql.shuffle.partitions`` (default: twice the
    default parallelism, at least 2). Raises `SparkUnavailableError` with the reason when
    pyspark or Java is missing."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailableError(
            "the Spark runner needs pyspark: pip install 'riskengine[spark]'") from None
    builder = (SparkSession.builder.master(master or DEFAULT_MASTER).appName(app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.python.worker.reuse", "true"))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: say why, without Py4J's trace
        raise SparkUnavailableError(
            f"cannot start Spark on {master or DEFAULT_MASTER!r} (is Java 17+ installed?): "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    partitions = shuffle_partitions or max(2, 2 * session.sparkContext.defaultParallelism)
    session.conf.set("spark.sql.shuffle.partitions", str(partitions))
    return session
