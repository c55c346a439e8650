"""The stream job's sink: each micro-batch's decisions and dead letters to Kafka, once per
batch id (`foreachBatch`).

Decisions go to the sink topic keyed by `event_id`, with the JSON value the stream
worker produces; poison messages go to the dead-letter topic (when there is one) with
their original key and value and the error in headers (`riskengine.stream.codec`). Each
executor task produces its rows in order and waits for the broker's acknowledgements;
the batch fails if any was refused.

A batch re-run after a crash must not produce twice. The ledger (``riskengine-sink.json``
in the checkpoint folder, written atomically) records the batch id whose messages are
being produced and the last batch id whose messages were all acknowledged:

- a batch id at or below the last finished one is not produced again (its stateful
  operator still runs, so the state store holds that batch);
- a batch that had begun and not finished (a crash while producing) is produced again
  with every decision marked ``"redelivery": true`` — the same decisions but for
  `latency_ms`, which consumers upsert by `event_id`, as after a stream worker crash.

When the job is asked to stop, the writer begins no batch any more: a batch that reaches
it ends the query untouched (nothing produced, nothing in the ledger), and the next start
runs it as a new one.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from riskengine.files import read_json, write_json_atomic
from riskengine.stream.base import KafkaTopic, PoisonMessage, StreamError
from riskengine.stream.codec import dead_letter_headers

__all__ = ["LEDGER_NAME", "BatchHeld", "BatchWriter", "SinkLedger", "SinkTarget", "produce_rows"]

log = logging.getLogger(__name__)

LEDGER_NAME = "riskengine-sink.json"
FLUSH_TIMEOUT_S = 60.0


class SinkLedger:
    """Which micro-batches reached the sink (see the module docstring)."""

    def __init__(self, checkpoint: Path) -> None:
        self.path = checkpoint / LEDGER_NAME

    def _read(self) -> dict[str, int]:
        try:
            data = read_json(self.path)
        except (OSError, ValueError) as exc:
            raise StreamError(f"{self.path} cannot be read: {exc}") from None
        if data is None:
            return {"started": -1, "done": -1}
        if not isinstance(data, dict) or not all(
                isinstance(data.get(k), int) for k in ("started", "done")):
            raise StreamError(f"{self.path} is not a sink ledger of riskengine")
        return {"started": data["started"], "done": data["done"]}

    def started(self) -> int:
        """The last batch id whose messages were begun (-1: none)."""
        return self._read()["started"]

    def status(self, batch_id: int) -> str:
        """``done`` (produced before), ``again`` (begun before, maybe in part) or
        ``new``."""
        data = self._read()
        if batch_id <= data["done"]:
            return "done"
        return "again" if batch_id <= data["started"] else "new"

    def begin(self, batch_id: int) -> None:
        data = self._read()
        write_json_atomic(self.path, {**data, "started": max(batch_id, data["started"])})

    def finish(self, batch_id: int) -> None:
        data = self._read()
        write_json_atomic(self.path, {"started": max(batch_id, data["started"]),
                                      "done": batch_id})


@dataclass(frozen=True)
class SinkTarget:
    """Where the rows go (pickled to the executors)."""

    sink: KafkaTopic
    dead_letter: KafkaTopic | None
    source_topic: str
    producer_options: dict[str, str] = field(default_factory=dict)


def produce_rows(target: SinkTarget, redelivery: bool, rows: Iterable[Any]
                 ) -> Iterator[tuple[str, int]]:
    """Produce one task's rows in order (decisions to the sink, poison messages to the
    dead letters), wait for the broker; yield what was done as (counter, n). With
    `redelivery` every decision is marked as one."""
    from confluent_kafka import Producer

    from riskengine.stream.kafka.sink import produce

    pending = iter(rows)
    first = next(pending, None)
    if first is None:  # an empty task connects to nothing
        return
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(f"{msg.topic()}: {err}")

    def connect(bootstrap: str) -> Any:
        return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         **target.producer_options})

    producer = connect(target.sink.bootstrap)
    dead = target.dead_letter
    dead_producer = None if dead is None else (
        producer if dead.bootstrap == target.sink.bootstrap else connect(dead.bootstrap))
    counts: Counter[str] = Counter()
    for row in itertools.chain((first,), pending):
        if row.error_kind is None:
            value = bytes(row.value)
            if redelivery and not row.redelivery:
                value = orjson.dumps({**orjson.loads(value), "redelivery": True})
            produce(producer, target.sink.topic, value, bytes(row.key), None, delivered)
            counts["decided"] += 1
            counts["redelivered"] += redelivery or bool(row.redelivery)
            counts[f"decision:{row.decision}"] += 1
            continue
        counts["dead_lettered"] += 1
        if dead is None or dead_producer is None:
            log.warning("skipped %s[%s]@%s (%s): %s", target.source_topic, row.partition,
                        row.offset, row.error_kind, row.error_message)
            continue
        error = PoisonMessage(row.error_kind, row.error_message, field=row.error_field)
        headers = dead_letter_headers(error, target.source_topic, row.partition, row.offset)
        produce(dead_producer, dead.topic, None if row.value is None else bytes(row.value),
                 None if row.key is None else bytes(row.key), headers, delivered)
    left = producer.flush(FLUSH_TIMEOUT_S)
    if dead_producer is not None and dead_producer is not producer:
        left += dead_producer.flush(FLUSH_TIMEOUT_S)
    if left or failures:
        problems = "; ".join(failures[:5]) or f"{left} still unacknowledged"
        raise StreamError(f"the broker did not take the decisions ({problems})")
    yield from counts.items()


class BatchHeld(StreamError):
    """The job is stopping: a batch that reaches the writer now is left, whole, for the
    next start (it ends the query)."""


@dataclass
class BatchWriter:
    """The `foreachBatch` function: produce a micro-batch once (see the module
    docstring); `counts` adds up what was produced. Once `stopping` is set it begins no
    batch: it records the batch id in `held` and raises `BatchHeld`."""

    target: SinkTarget
    ledger: SinkLedger
    stopping: threading.Event = field(default_factory=threading.Event)
    counts: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    held: int | None = None

    def __call__(self, frame: Any, batch_id: int) -> None:
        if self.stopping.is_set():
            self.held = batch_id
            raise BatchHeld(f"stopping: batch {batch_id} is left for the next start")
        status = self.ledger.status(batch_id)
        if status == "done":
            log.info("batch %d reached the sink before: not produced again", batch_id)
            frame.write.format("noop").mode("overwrite").save()
            return
        self.ledger.begin(batch_id)
        done = frame.rdd.mapPartitions(partial(produce_rows, self.target,
                                               status == "again")).collect()
        self.ledger.finish(batch_id)
        for name, n in done:
            self.counts[name] += n
        self.batches += 1
