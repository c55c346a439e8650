"""`kill -9` of the `riskengine spark-stream` driver in the middle of a stream, then a
restart from its checkpoint (in this process's Spark session, which is warm: a second
JVM would only make the test slower): no event is lost and none is counted twice —
every event id has exactly one distinct decision in the sink (a repeat differs only in
`latency_ms` and its redelivery mark), and every decision equals the stream worker's
(an event counted twice would change the features of the later events of its keys)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskengine.spark.stream_job import run_stream_job
from riskengine.spark.stream_settings import SparkStreamSettings
from riskengine.stream.base import KafkaTopic
from tests.servers import kafka_server
from tests.spark.streamtools import decisions, demo_events, essence, run_worker
from tests.stream.kafkatools import new_topics, produce_events, read_all

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with kafka_server() as address:
        yield address


def _start(bootstrap: str, topics: dict[str, str], checkpoint: Path, log: Path,
           *extra: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "riskengine", "spark-stream",
            "--source", f"kafka://{bootstrap}/{topics['events']}",
            "--sink", f"kafka://{bootstrap}/{topics['spark']}",
            "--checkpoint", str(checkpoint), "--max-records-per-batch", "100", *extra]
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _gone(group: int, timeout: float) -> bool:
    """Wait for every process of the group (the driver's JVM) to exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _end(job: subprocess.Popen[bytes]) -> None:
    """Whatever is left of a job this test started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job.pid, signal.SIGKILL)
    job.wait(30)


def test_kill_9_mid_stream_then_restart_loses_nothing_and_counts_nothing_twice(
        spark: Any, bootstrap: str, tmp_path: Path) -> None:
    events = demo_events(800, seed=29)
    topics = new_topics(bootstrap, events=1, worker=1, spark=1)
    produce_events(bootstrap, topics["events"], events)
    checkpoint, log = tmp_path / "ck", tmp_path / "job.log"

    job = _start(bootstrap, topics, checkpoint, log, "--trigger-ms", "100")
    try:
        deadline = time.monotonic() + 300
        while len(read_all(bootstrap, topics["spark"], 1, 100, timeout=1)) < 100:
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
        os.kill(job.pid, signal.SIGKILL)  # the driver, mid-stream
        job.wait(30)
        assert _gone(job.pid, 30), "the driver's JVM outlived it"
    finally:
        _end(job)
    produced = len(read_all(bootstrap, topics["spark"], 1, len(events), timeout=2))
    assert 100 <= produced < len(events)

    # the restart, in this process's (warm) Spark session: the same job from the same
    # checkpoint
    stats = run_stream_job(None, SparkStreamSettings(
        source=KafkaTopic(bootstrap, topics["events"]),
        sink=KafkaTopic(bootstrap, topics["spark"]), checkpoint=checkpoint,
        available_now=True), spark=spark)
    assert stats.decided >= len(events) - produced

    run_worker(bootstrap, None, "transfer", topics["events"], topics["worker"], len(events))
    expected = {d["event_id"]: essence(d) for d in decisions(bootstrap, topics["worker"],
                                                             len(events))}
    found: dict[str, set[bytes]] = {}
    for body in decisions(bootstrap, topics["spark"], len(events)):
        view = essence(body) | {"redelivery": False}
        assert view == expected[body["event_id"]] | {"redelivery": False}
        found.setdefault(body["event_id"], set()).add(repr(sorted(view.items())).encode())
    assert set(found) == set(expected)  # none lost
    assert all(len(views) == 1 for views in found.values())  # one decision each
