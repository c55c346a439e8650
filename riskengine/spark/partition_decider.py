"""The stream job's stateful operator: one source partition's messages of a micro-batch,
decided in offset order by the engine, on that partition's state from Spark's state store.

The job groups the source rows by Kafka partition and hands each group to
`PartitionDecider.handleInputRows` (`transformWithStateInPandas`). A partition is one
clock domain, as in the stream worker (docs/semantics.md, "Order"): its LSN order is its
offset order, and its scene clock G is carried here, in the operator's state (the
reader only plans offset ranges). Per call the rows are sorted by offset, the state of
the keys they touch is loaded (`PartitionState`), `StreamWorker.decide_batch` decides
them — the stream worker's own per-message path: decode, the scene's parser, poison
messages, the engine (`SceneRuntime.decide`) — and the changed state is written back.

Each message gives one output row: a decision (key: the event id; value: the decision
JSON with `source` and `redelivery`, as the stream worker produces it; `decision` set) or
a poison message (key and value as read; `error_kind`, `error_message`, `error_field`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd  # type: ignore[import-untyped]
from pyspark.sql.streaming.stateful_processor import (
    StatefulProcessor,
    StatefulProcessorHandle,
    TimerValues,
)

from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.spark.partition_state import (
    CLOCK_SCHEMA,
    ENTRY_SCHEMA,
    KEY_SCHEMA,
    PartitionState,
    Stores,
)
from riskengine.state.memory import MemoryState
from riskengine.stream.base import PoisonMessage
from riskengine.stream.codec import decision_message, decode_event
from riskengine.stream.worker import StreamWorker

__all__ = ["OUTPUT_COLUMNS", "OUTPUT_SCHEMA", "PartitionDecider"]

log = logging.getLogger(__name__)

OUTPUT_SCHEMA = ("partition INT, offset BIGINT, key BINARY, value BINARY, decision STRING, "
                 "redelivery BOOLEAN, error_kind STRING, error_message STRING, "
                 "error_field STRING")
OUTPUT_COLUMNS = ("partition", "offset", "key", "value", "decision", "redelivery",
                  "error_kind", "error_message", "error_field")
NO_VALUE = "the message has no value (a tombstone)"

ConfigSource = str | Mapping[str, Any] | None
"""The project config as the executors load it: a file path, a mapping, or None (the
example)."""


@dataclass(frozen=True)
class _Prepared:
    """What deciding a scene needs, made once per Python worker process."""

    worker: StreamWorker
    parse: Callable[[Mapping[str, Any]], dict[str, Any]]
    idempotency_max: int
    state: PartitionState


_PREPARED: dict[tuple[str, str], _Prepared] = {}
"""Per (config, scene): an engine is compiled once per worker process, not per task
(every batch's load clears the state it holds)."""


def _config_key(config: ConfigSource) -> str:
    if config is None:
        return "example"
    if isinstance(config, str):
        return f"{config}@{os.stat(config).st_mtime_ns}"
    try:
        return orjson.dumps(config, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(config)


def _prepare(config: ConfigSource, scene: str) -> _Prepared:
    key = (_config_key(config), scene)
    prepared = _PREPARED.get(key)
    if prepared is None:
        engine = Engine.from_config(config)
        memory = engine.state
        if not isinstance(memory, MemoryState):
            raise RiskEngineError("the stream job keeps its state in Spark's state store")
        runtime = engine.scene(scene)
        prepared = _PREPARED[key] = _Prepared(
            StreamWorker(engine, scene), runtime.parse, runtime.idempotency_max,
            PartitionState(memory, memory.part(scene, None)))
    return prepared


class PartitionDecider(StatefulProcessor):
    """Decides one source partition's messages per micro-batch (see the module
    docstring). Built on the driver with the config and the scene; the engine is made on
    the executor, once per Python worker process."""

    def __init__(self, config: ConfigSource, scene: str, topic: str) -> None:
        self.config = str(Path(config).resolve()) if isinstance(config, str) else config
        self.scene = scene
        self.topic = topic

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.stores = Stores(handle.getValueState("clock", CLOCK_SCHEMA),
                             handle.getMapState("keys", KEY_SCHEMA, ENTRY_SCHEMA),
                             handle.getMapState("ids", KEY_SCHEMA, ENTRY_SCHEMA))
        prepared = _prepare(self.config, self.scene)
        self.worker = prepared.worker
        self.parse = prepared.parse
        self.idempotency_max = prepared.idempotency_max
        self.state = prepared.state

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame],
                        timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        partition = int(key[0])
        frame = pd.concat(list(rows), ignore_index=True).sort_values("offset", kind="stable")
        offsets = [int(o) for o in frame["offset"]]
        keys = [None if k is None else bytes(k) for k in frame["key"]]
        values = [None if v is None else bytes(v) for v in frame["value"]]
        state = self.state
        loaded = state.load(self.stores, state.keys_of(self._events(values)))
        outcomes = self.worker.decide_batch(
            values, lambda i: f"{self.topic}[{partition}]@{offsets[i]}")
        state.save(self.stores, loaded, self.idempotency_max)
        out: list[tuple[Any, ...]] = []
        for offset, message_key, value, outcome in zip(offsets, keys, values, outcomes,
                                                       strict=True):
            if isinstance(outcome, PoisonMessage):
                message = NO_VALUE if value is None else str(outcome)
                out.append((partition, offset, message_key, value, None, False,
                            outcome.kind, message[:2000], outcome.field))
            elif outcome is not None:
                decision = outcome.decision
                body = decision_message(decision, {"topic": self.topic, "partition": partition,
                                                   "offset": offset}, not outcome.fresh)
                out.append((partition, offset, decision.event_id.encode(), body,
                            decision.decision, not outcome.fresh, None, None, None))
        if out:
            yield pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))

    def _events(self, values: list[bytes | None]) -> Iterator[dict[str, Any]]:
        """The batch's valid events, parsed (to find the keys whose state to load)."""
        for value in values:
            try:
                yield self.parse(decode_event(value))
            except Exception:  # the decision path classifies it; here it only has no keys
                continue

    def close(self) -> None:
        """Nothing to release: the state is in the store."""
