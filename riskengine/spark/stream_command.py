"""The body of `riskengine spark-stream` (its options are declared in riskengine/cli.py).

`prepare` turns the options into settings and checks the config, the scene and the
checkpoint folder: its errors are usage mistakes (exit code 2). `run` checks the brokers,
starts Spark and runs the job in the foreground, SIGTERM/SIGINT stopping it after the
batch in flight: its errors mean the job could not run or failed (exit code 1). It
returns the summary line.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from riskengine.spark.session import SparkUnavailableError
from riskengine.spark.stream_settings import (
    SparkStreamSettings,
    check_job,
    settings_from_options,
)
from riskengine.stream.base import WorkerStats

__all__ = ["prepare", "run", "summary"]

log = logging.getLogger(__name__)


def prepare(*, config: Path | None, source: str, sink: str, dead_letter: str | None,
            checkpoint: Path, scene: str, master: str | None, trigger_ms: int, once: bool,
            available_now: bool, max_records_per_batch: int | None,
            kafka_options: Sequence[str]) -> SparkStreamSettings:
    """Settings from the options, the config, scene and checkpoint folder checked."""
    settings = settings_from_options(
        source=source, sink=sink, dead_letter=dead_letter, checkpoint=checkpoint,
        scene=scene, master=master, trigger_ms=trigger_ms, once=once,
        available_now=available_now, max_records_per_batch=max_records_per_batch,
        kafka_options=kafka_options)
    check_job(config, settings)
    return settings


def run(config: Path | None, settings: SparkStreamSettings) -> str:
    """Run the job until it ends or a signal stops it; the summary line."""
    try:
        from riskengine.spark.stream_job import run_stream_job
    except ImportError:
        raise SparkUnavailableError(
            "the Spark runner needs pyspark: pip install 'riskengine[spark]'") from None
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the batch in flight", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return summary(run_stream_job(config, settings, stop=stop))
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def summary(stats: WorkerStats) -> str:
    """One line: what the sink produced.

    >>> summary(WorkerStats(decided=3, dead_lettered=1, commits=2,
    ...                     by_decision={"accept": 2, "reject": 1}))
    'decided 3 events (accept 2, reject 1), 1 dead-lettered, 0 redeliveries, in 2 micro-batches'
    """
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.by_decision.items()))
    return (f"decided {stats.decided:,} events ({counts or 'none'}), "
            f"{stats.dead_lettered:,} dead-lettered, {stats.redelivered:,} redeliveries, "
            f"in {stats.commits:,} micro-batches")
