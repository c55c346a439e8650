"""`riskengine spark-stream`: the stream worker's job on Spark Structured Streaming.

    Kafka source topic ── riskengine-kafka (kafka_source.py: offset ranges per partition)
      → group by partition ── PartitionDecider (partition_decider.py: offset order, the
        partition's clock, the engine's decision path; state per key in the RocksDB state
        store, partition_state.py)
      → foreachBatch ── BatchWriter (kafka_sink.py: decisions keyed by event_id, dead
        letters; once per batch id)

`run_stream_job` checks what it can before Spark starts (stream_settings.py: the config
and the scene, the checkpoint folder, that the brokers answer and the source topic
exists) and raises `StreamError` / `ConfigError` / `UnknownSceneError` with the reason;
then it runs the query until it ends (`once`, `available_now`) or `stop` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from riskengine.spark.kafka_sink import BatchWriter, SinkLedger, SinkTarget
from riskengine.spark.kafka_source import SOURCE_NAME, KafkaEventSource
from riskengine.spark.partition_decider import OUTPUT_SCHEMA, PartitionDecider
from riskengine.spark.session import spark_session
from riskengine.spark.stream_settings import (
    ConfigSource,
    SparkStreamSettings,
    check_brokers,
    check_job,
    claim_checkpoint,
    portable_config,
)
from riskengine.stream.base import StreamError, WorkerStats

__all__ = ["ROCKSDB_PROVIDER", "run_stream_job"]

log = logging.getLogger(__name__)

ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
"""The state store `transformWithStateInPandas` needs (Spark 4.3)."""
STOP_WAIT_S = 30.0
"""On stop, how long to wait for the batch in flight to finish before stopping anyway."""


def _reason(exc: BaseException) -> str:
    """The line of a failed query's error that says why (Spark wraps the Python one)."""
    text = str(exc)
    for line in text.splitlines():
        for marker in ("StreamError: ", "RiskEngineError: ", "ConfigError: "):
            if marker in line:
                return line.split(marker, 1)[1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def run_stream_job(config: ConfigSource, settings: SparkStreamSettings, *,
                   spark: Any = None, stop: threading.Event | None = None) -> WorkerStats:
    """Run the job until it ends by itself (`once`, `available_now`) or `stop` is set;
    returns what the sink produced. `spark`: an existing session (default: one on
    `settings.master`)."""
    source = portable_config(config)
    check_job(source, settings)
    partitions = check_brokers(settings)
    claim_checkpoint(settings)
    session = spark if spark is not None else spark_session(
        settings.master, app_name="riskengine-spark-stream")
    session.conf.set("spark.sql.streaming.stateStore.providerClass", ROCKSDB_PROVIDER)
    session.dataSource.register(KafkaEventSource)
    reader = (session.readStream.format(SOURCE_NAME)
              .option("bootstrap", settings.source.bootstrap)
              .option("topic", settings.source.topic))
    if settings.max_records_per_batch is not None:
        reader = reader.option("maxRecordsPerBatch", str(settings.max_records_per_batch))
    for key, value in settings.consumer_options.items():
        reader = reader.option(f"kafka.{key}", value)
    decided = reader.load().groupBy("partition").transformWithStateInPandas(
        PartitionDecider(source, settings.scene, settings.source.topic), OUTPUT_SCHEMA,
        "Append", "None")
    stop = stop if stop is not None else threading.Event()
    writer = BatchWriter(SinkTarget(settings.sink, settings.dead_letter,
                                    settings.source.topic, dict(settings.producer_options)),
                         SinkLedger(settings.checkpoint), stop)
    stream = (decided.writeStream.foreachBatch(writer)
              .option("checkpointLocation", str(settings.checkpoint)))
    if settings.once:
        stream = stream.trigger(once=True)
    elif settings.available_now:
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=f"{settings.trigger_ms} milliseconds")
    query = _start(session, stream, partitions)
    log.info("reading %s into %s (checkpoint %s)", settings.source, settings.sink,
             settings.checkpoint)
    try:
        _wait(query, stop)
    finally:
        if query.isActive:
            query.stop()
    failure = query.exception()
    if writer.held is not None:
        log.info("stopped: batch %d is left for the next start", writer.held)
    elif failure is not None:
        raise StreamError(f"the stream job failed: {_reason(failure)}")
    counts = writer.counts
    return WorkerStats(
        decided=counts["decided"], dead_lettered=counts["dead_lettered"],
        redelivered=counts["redelivered"], commits=writer.batches,
        by_decision={name.split(":", 1)[1]: n for name, n in counts.items()
                     if name.startswith("decision:")})


def _start(session: Any, stream: Any, partitions: int) -> Any:
    """Start the query; a new checkpoint gets one state partition per source partition
    (at most twice the default parallelism): more would only add empty tasks to every
    batch. Spark keeps the number in the checkpoint, so a restart uses it again."""
    key = "spark.sql.shuffle.partitions"
    previous = session.conf.get(key)
    wanted = max(1, min(partitions, 2 * session.sparkContext.defaultParallelism))
    session.conf.set(key, str(wanted))
    try:
        return stream.start()
    finally:
        session.conf.set(key, previous)


def _wait(query: Any, stop: threading.Event) -> None:
    """Until the query ends, or `stop` is set: then the writer begins no batch any more
    (one that reaches it ends the query, left for the next start), the batch in flight
    finishes (for up to `STOP_WAIT_S`), and the query is stopped."""
    from pyspark.errors import StreamingQueryException

    try:
        while query.isActive:
            if stop.is_set():
                deadline = time.monotonic() + STOP_WAIT_S
                while (query.isActive and query.status.get("isTriggerActive")
                       and time.monotonic() < deadline):
                    time.sleep(0.05)
                query.stop()
                return
            query.awaitTermination(0.2)
    except StreamingQueryException:
        return  # the caller reads `query.exception()`
