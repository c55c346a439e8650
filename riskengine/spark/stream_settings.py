"""What `riskengine spark-stream` is told, and the checks made before Spark starts: the
config and the scene, the checkpoint folder, the brokers (none of it needs pyspark).

The checkpoint folder holds everything the job must remember: Spark's offset and commit
logs and state store, the sink's ledger (riskengine/spark/kafka_sink.py), and
``riskengine.json``, the source topic and scene the folder belongs to: a folder of
another job, or a folder that holds something else, is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riskengine.engine import Engine
from riskengine.files import read_json, write_json_atomic
from riskengine.spark.kafka_sink import LEDGER_NAME, SinkLedger
from riskengine.stream.base import KafkaTopic, StreamError, parse_kafka_url
from riskengine.stream.runner import split_options

__all__ = ["JOB_FILE", "ConfigSource", "SparkStreamSettings", "check_brokers", "check_job",
           "claim_checkpoint", "portable_config", "settings_from_options"]

JOB_FILE = "riskengine.json"
BROKER_TIMEOUT_S = 10.0

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | None
"""A project config: a YAML path, a mapping, or None (the example)."""


@dataclass(frozen=True, kw_only=True)
class SparkStreamSettings:
    """What the job reads, writes, where it keeps its checkpoint, and when it triggers;
    validated when built."""

    source: KafkaTopic
    sink: KafkaTopic
    checkpoint: Path
    dead_letter: KafkaTopic | None = None
    scene: str = "transfer"
    master: str | None = None
    trigger_ms: int = 1000
    once: bool = False
    """One micro-batch (of at most `max_records_per_batch` messages), then stop."""
    available_now: bool = False
    """Everything available when the job starts, in micro-batches of at most
    `max_records_per_batch`, then stop."""
    max_records_per_batch: int | None = None
    consumer_options: Mapping[str, str] = field(default_factory=dict)
    producer_options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.once and self.available_now:
            raise StreamError("give --once or --available-now, not both")
        if self.trigger_ms < 0:
            raise StreamError("--trigger-ms must not be negative")
        if self.max_records_per_batch is not None and self.max_records_per_batch < 1:
            raise StreamError("--max-records-per-batch must be at least 1")
        for out in (self.sink, self.dead_letter):
            if out is not None and out == self.source:
                raise StreamError(f"the source topic {self.source.topic!r} cannot also be "
                                  "the sink or the dead-letter topic")


def _job(settings: SparkStreamSettings) -> dict[str, str]:
    return {"source": str(settings.source), "scene": settings.scene}


def check_checkpoint(settings: SparkStreamSettings) -> None:
    """The checkpoint folder is this job's, or empty, or can be made; `StreamError` naming
    the problem otherwise. Nothing is written (see `claim_checkpoint`)."""
    folder = settings.checkpoint
    if folder.exists() and not folder.is_dir():
        raise StreamError(f"--checkpoint {str(folder)!r} is a file, not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise StreamError(f"--checkpoint {str(folder)!r} cannot be made: {str(existing)!r} "
                          "is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StreamError(f"--checkpoint {str(folder)!r} cannot be written (no permission "
                          f"on {str(existing)!r})")
    if existing != folder:
        return
    path = folder / JOB_FILE
    try:
        found = read_json(path)
    except (OSError, ValueError) as exc:
        raise StreamError(f"{str(path)!r} cannot be read: {exc}") from None
    if found is None:
        others = [p.name for p in folder.iterdir() if p.name != LEDGER_NAME]
        if others:
            raise StreamError(f"--checkpoint {str(folder)!r} is not empty and is not the "
                              f"checkpoint of a riskengine spark-stream job (it holds "
                              f"{', '.join(sorted(others)[:5])}): give an empty or new folder")
    else:
        job = _job(settings)
        if found != job:
            described = (f"{found.get('source')} for scene {found.get('scene')!r}"
                         if isinstance(found, dict) else repr(found)[:200])
            raise StreamError(f"--checkpoint {str(folder)!r} belongs to the job reading "
                              f"{described}, not {job['source']} for scene "
                              f"{settings.scene!r}: give another folder")
    _check_ledger(folder)


def _check_ledger(folder: Path) -> None:
    """The sink's ledger is readable and says no more than Spark's offset log: a batch
    reaches the sink only after Spark logged its offsets (a ledger ahead of the log means
    the folder was changed by hand, and the sink would skip batches it never produced)."""
    ledger = SinkLedger(folder)
    begun = ledger.started()
    offsets = folder / "offsets"
    planned = max((int(p.name) for p in offsets.iterdir() if p.name.isdigit()),
                  default=-1) if offsets.is_dir() else -1
    if begun > planned:
        raise StreamError(f"{ledger.path} says batch {begun} reached the sink, but Spark's "
                          f"offset log in {str(folder)!r} ends at batch {planned}: the "
                          "folder was changed by hand; give a new folder")


def claim_checkpoint(settings: SparkStreamSettings) -> None:
    """Make the checkpoint folder (checked by `check_checkpoint`) and record the job in it;
    `StreamError` when it cannot be written."""
    try:
        settings.checkpoint.mkdir(parents=True, exist_ok=True)
        path = settings.checkpoint / JOB_FILE
        if not path.exists():
            write_json_atomic(path, _job(settings))
    except OSError as exc:
        raise StreamError(f"--checkpoint {str(settings.checkpoint)!r} cannot be written: "
                          f"{exc.strerror or exc}") from None


def check_brokers(settings: SparkStreamSettings) -> int:
    """Each broker answers and the source topic exists (`StreamError` otherwise); returns
    how many partitions the source topic has."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    places = [settings.source, settings.sink]
    if settings.dead_letter is not None:
        places.append(settings.dead_letter)
    partitions = 0
    for place in places:
        admin = AdminClient({"bootstrap.servers": place.bootstrap,
                             **settings.consumer_options})
        try:
            metadata = admin.list_topics(timeout=BROKER_TIMEOUT_S)
        except KafkaException as exc:
            raise StreamError(f"cannot reach the broker at {place.bootstrap}: "
                              f"{exc.args[0].str() if exc.args else exc}") from None
        if place is settings.source:
            topic = metadata.topics.get(place.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise StreamError(f"the source topic {place.topic!r} does not exist on "
                                  f"{place.bootstrap}")
            partitions = len(topic.partitions)
    return partitions


def portable_config(config: ConfigSource) -> str | Mapping[str, Any] | None:
    """The config as the executors load it (a path made absolute)."""
    return str(Path(config).resolve()) if isinstance(config, str | os.PathLike) else config


def check_job(config: ConfigSource, settings: SparkStreamSettings) -> None:
    """What can be checked without a broker: the config, the scene, the checkpoint folder
    (`ConfigError`, `UnknownSceneError`, `StreamError`)."""
    Engine.from_config(portable_config(config)).scene(settings.scene)
    check_checkpoint(settings)


def settings_from_options(*, source: str, sink: str, dead_letter: str | None,
                          checkpoint: Path, scene: str, master: str | None, trigger_ms: int,
                          once: bool, available_now: bool,
                          max_records_per_batch: int | None,
                          kafka_options: Sequence[str]) -> SparkStreamSettings:
    """The command line's options as settings; `StreamError` names the bad option."""
    consumer, producer = split_options(kafka_options)
    return SparkStreamSettings(
        source=parse_kafka_url(source, "--source"), sink=parse_kafka_url(sink, "--sink"),
        dead_letter=(parse_kafka_url(dead_letter, "--dead-letter")
                     if dead_letter is not None else None),
        checkpoint=checkpoint, scene=scene, master=master, trigger_ms=trigger_ms, once=once,
        available_now=available_now, max_records_per_batch=max_records_per_batch,
        consumer_options=consumer, producer_options=producer)
