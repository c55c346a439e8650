"""The Spark stream job (riskengine/spark/stream_job.py) against the test broker, in this
process's Spark session: its decisions and dead letters equal the stream worker's on the
same one-partition topic, and a micro-batch run again after a crash changes nothing but
the redelivery marks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from riskengine.engine import Engine
from riskengine.files import read_json, write_json_atomic
from riskengine.spark.kafka_sink import LEDGER_NAME
from riskengine.spark.stream_job import run_stream_job
from riskengine.spark.stream_settings import SparkStreamSettings
from riskengine.stream.base import KafkaTopic
from tests.hostile import hostile_config, hostile_stream
from tests.servers import kafka_server
from tests.spark.streamtools import (
    dead_letters,
    decisions,
    demo_events,
    essence,
    run_worker,
)
from tests.stream.kafkatools import new_topics, produce, produce_events, read_all


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with kafka_server() as address:
        yield address


def _job(bootstrap: str, topics: dict[str, str], checkpoint: Path, **extra: Any
         ) -> SparkStreamSettings:
    return SparkStreamSettings(
        source=KafkaTopic(bootstrap, topics["events"]),
        sink=KafkaTopic(bootstrap, topics["spark"]),
        dead_letter=KafkaTopic(bootstrap, topics["spark_dead"]) if "spark_dead" in topics
        else None,
        checkpoint=checkpoint, available_now=True, **extra)


def test_hostile_stream_decisions_equal_the_stream_workers(spark: Any, bootstrap: str,
                                                           tmp_path: Path) -> None:
    events, stats = hostile_stream(101, 300)
    assert stats.duplicates and stats.behind_clock and stats.watermark_ties
    config = hostile_config()
    topics = new_topics(bootstrap, events=1, worker=1, spark=1)
    produce_events(bootstrap, topics["events"], events, key_field=None)
    run_worker(bootstrap, config, "s", topics["events"], topics["worker"], len(events))
    stats_ = run_stream_job(config, _job(bootstrap, topics, tmp_path / "ck", scene="s",
                                         max_records_per_batch=120), spark=spark)
    assert stats_.decided == len(events) and stats_.commits == 3
    expected = [essence(d) for d in decisions(bootstrap, topics["worker"], len(events))]
    got = [essence(d) for d in decisions(bootstrap, topics["spark"], len(events))]
    assert got == expected
    assert any(d["late"] for d in got) and any(d["duplicate"] for d in got)
    assert any(d["features"]["pattern:withdraw_unconfirmed"] for d in got)


def _commit_files(checkpoint: Path) -> list[int]:
    return sorted(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())


def _crash_before_the_commit_log(checkpoint: Path, *, while_producing: bool) -> int:
    """Make the checkpoint look as if the job died after the last batch's state was
    written and before Spark logged the batch as committed: in the middle of producing
    its messages, or after they were all acknowledged. Returns the batch id."""
    last = _commit_files(checkpoint)[-1]
    for name in (str(last), f".{last}.crc"):
        (checkpoint / "commits" / name).unlink(missing_ok=True)
    ledger = read_json(checkpoint / LEDGER_NAME)
    assert ledger == {"started": last, "done": last}
    if while_producing:
        write_json_atomic(checkpoint / LEDGER_NAME, {"started": last, "done": last - 1})
    return last


def test_demo_traffic_with_poison_then_batches_run_again_after_crashes(
        spark: Any, bootstrap: str, tmp_path: Path) -> None:
    events = demo_events(900, seed=17)
    events[300]["unknown"] = {"fields": ["pass", "through"]}  # decided, as by the worker
    first, second, third = events[:500], events[500:700], events[700:]
    ts = first[0]["timestamp"]
    poison: dict[int, bytes | None] = {
        40: b"{not json", 90: b"[1, 2]", 130: None,
        170: orjson.dumps({"event_id": "bad-1", "timestamp": ts, "pay_account": "A",
                           "rcv_account": "B", "amount": "lots"}),
        210: orjson.dumps({"event_id": "bad-2", "timestamp": ts, "rcv_account": "B",
                           "amount": 1.0}),
        250: orjson.dumps({"event_id": 7, "timestamp": ts, "pay_account": "A",
                           "rcv_account": "B", "amount": 1.0})}
    stream: list[tuple[bytes | None, bytes | None]] = []
    for index, event in enumerate(first):
        if index in poison:
            stream.append((b"poison", poison[index]))
        stream.append((event["pay_account"].encode(), orjson.dumps(event)))
    topics = new_topics(bootstrap, events=1, worker=1, worker_dead=1, spark=1, spark_dead=1)
    checkpoint = tmp_path / "ck"
    produce(bootstrap, topics["events"], stream)
    job = _job(bootstrap, topics, checkpoint, max_records_per_batch=300)
    stats = run_stream_job(None, replace(job, available_now=False, once=True,
                                         max_records_per_batch=None), spark=spark)
    assert (stats.decided, stats.dead_lettered, stats.redelivered) == (len(first), 6, 0)

    # a crash after batch 0's messages were all acknowledged: not produced again, its
    # state rebuilt (the next events' features count it)
    assert _crash_before_the_commit_log(checkpoint, while_producing=False) == 0
    produce_events(bootstrap, topics["events"], second)
    stats = run_stream_job(None, job, spark=spark)
    assert (stats.decided, stats.redelivered) == (len(second), 0)

    # a crash while batch 1's messages were being produced: produced again, marked
    assert _crash_before_the_commit_log(checkpoint, while_producing=True) == 1
    produce_events(bootstrap, topics["events"], third)
    stats = run_stream_job(None, job, spark=spark)
    assert (stats.decided, stats.redelivered) == (len(second) + len(third), len(second))

    total = len(stream) + len(second) + len(third)
    run_worker(bootstrap, None, "transfer", topics["events"], topics["worker"], total,
               dead_letter=topics["worker_dead"])
    expected = [essence(d) for d in decisions(bootstrap, topics["worker"], len(events))]
    got = [essence(d) for d in decisions(bootstrap, topics["spark"],
                                         len(events) + len(second))]
    again = got[len(first) + len(second):len(first) + 2 * len(second)]
    assert all(d["redelivery"] for d in again)
    assert [d | {"redelivery": False} for d in again] == got[len(first):len(first)
                                                             + len(second)]
    assert got[:len(first) + len(second)] + got[len(first) + 2 * len(second):] == expected
    assert dead_letters(bootstrap, topics["spark_dead"], 6) == dead_letters(
        bootstrap, topics["worker_dead"], 6)



def test_each_partition_decides_alone_and_a_stop_ends_between_batches(
        spark: Any, bootstrap: str, tmp_path: Path) -> None:
    events = demo_events(600, seed=41)
    topics = new_topics(bootstrap, events=2, spark=1)
    produce_events(bootstrap, topics["events"], events)  # keyed by pay_account
    job = _job(bootstrap, topics, tmp_path / "ck", max_records_per_batch=200)
    stop = threading.Event()

    def stop_after_the_first_decisions() -> None:
        read_all(bootstrap, topics["spark"], 1, 1, timeout=300)
        stop.set()

    stopper = threading.Thread(target=stop_after_the_first_decisions)
    stopper.start()
    first = run_stream_job(None, replace(job, available_now=False, trigger_ms=100),
                           spark=spark, stop=stop)
    stopper.join()
    assert 0 < first.decided < len(events)
    ledger = read_json(job.checkpoint / LEDGER_NAME)
    assert ledger["started"] == ledger["done"] == _commit_files(job.checkpoint)[-1]
    rest = run_stream_job(None, job, spark=spark)
    assert first.decided + rest.decided == len(events) and rest.redelivered == 0

    got = decisions(bootstrap, topics["spark"], len(events))
    partition_of = {d["event_id"]: d["source"]["partition"] for d in got}
    assert len(partition_of) == len(events) and set(partition_of.values()) == {0, 1}
    for partition in (0, 1):  # each as a replay of that partition alone (LSNs included)
        engine = Engine.from_config(None)
        expected = [essence(engine.evaluate("transfer", e).to_dict()) for e in events
                    if partition_of[e["event_id"]] == partition]
        mine = sorted((d for d in got if d["source"]["partition"] == partition),
                      key=lambda d: d["source"]["offset"])
        assert [{k: v for k, v in essence(d).items() if k not in ("source", "redelivery")}
                for d in mine] == expected
