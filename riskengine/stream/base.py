"""Stream addresses, errors and counters shared by the stream runtimes.

A Kafka topic is named by a URL: ``kafka://host:port[,host:port…]/topic``.

>>> parse_kafka_url("kafka://127.0.0.1:9092/transfers", "--source")
KafkaTopic(bootstrap='127.0.0.1:9092', topic='transfers')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import unquote

from riskengine.exceptions import RiskEngineError
from riskengine.tracing import TracingSettings

__all__ = ["CommonSettings", "KafkaTopic", "PoisonMessage", "StreamError", "WorkerStats",
           "parse_kafka_url"]

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_HOST_PORT = re.compile(r"[A-Za-z0-9._\-\[\]:]+:\d{1,5}")


class StreamError(RiskEngineError):
    """A stream worker cannot start or cannot go on (bad address, broker refused a write)."""


class PoisonMessage(RiskEngineError):
    """An input message that cannot be decided; it goes to the dead-letter topic."""

    def __init__(self, kind: str, message: str, *, field: str | None = None) -> None:
        self.kind = kind
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class KafkaTopic:
    """One topic on one Kafka cluster."""

    bootstrap: str
    topic: str

    def __str__(self) -> str:
        return f"kafka://{self.bootstrap}/{self.topic}"


def parse_kafka_url(url: str, option: str) -> KafkaTopic:
    """``kafka://host:port[,host:port]/topic`` → `KafkaTopic`; `StreamError` naming
    `option` when the URL is not one."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "kafka":
        raise StreamError(f"{option}: expected kafka://host:port/topic, got {url[:200]!r}")
    hosts, slash, topic = rest.partition("/")
    topic = unquote(topic)
    if not slash or not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise StreamError(f"{option}: {url[:200]!r} needs a topic name after the address "
                          "(letters, digits, '.', '_', '-'; at most 249)")
    servers = [h for h in hosts.split(",") if h]
    if not servers or not all(_HOST_PORT.fullmatch(h) for h in servers):
        raise StreamError(f"{option}: {url[:200]!r} needs host:port (comma-separated for "
                          "several brokers) before the topic")
    return KafkaTopic(",".join(servers), topic)


A = TypeVar("A")


@dataclass(frozen=True, kw_only=True)
class CommonSettings(Generic[A]):
    """What every stream worker is told, whatever the transport (`A`: its addresses)."""

    source: A
    sink: A | None
    """Where decisions go; None only for a dry run."""
    dead_letter: A | None = None
    """Where poison messages go; None: they are logged and skipped."""
    group: str = "riskengine"
    scene: str = "transfer"
    state_dir: Path | None = None
    """Checkpoint folder of the in-memory state."""
    max_events: int | None = None
    idle_exit_s: float | None = None
    batch_size: int = 1000
    checkpoint_interval_s: float = 300.0
    degraded_retry_s: float = 0.5
    """While the shared state does not answer, ask it again this often."""
    from_timestamp_ms: int | None = None
    """Replay from the first message stamped at or after this (epoch ms)."""
    dry_run: bool = False
    """Decide without producing anything (a replay that only counts)."""
    progress_interval_s: float | None = None
    """Log progress and lag this often (the CLI's default for a replay: 1 s)."""
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    """The address /metrics listens on (0.0.0.0: every interface, e.g. in a container)."""
    tracing: TracingSettings | None = None
    """Where spans go (riskengine/tracing/); None: tracing is off."""

    def required_sink(self) -> A:
        """The sink (a sink adapter is opened only when there is one to produce to)."""
        if self.sink is None:
            raise StreamError("--sink is needed unless it is a --dry-run")
        return self.sink

    def check_common(self, kind: str, name: str) -> None:
        """Validate what is common; the source is a `kind` ("topic") called `name`."""
        if not self.group:
            raise StreamError("the consumer group must not be empty")
        if self.batch_size < 1:
            raise StreamError("batch_size must be at least 1")
        if self.max_events is not None and self.max_events < 0:
            raise StreamError("max_events must not be negative")
        if self.idle_exit_s is not None and self.idle_exit_s <= 0:
            raise StreamError("idle_exit_s must be positive")
        if not self.dry_run:
            self.required_sink()
        for out in (self.sink, self.dead_letter):
            if out is not None and out == self.source:
                raise StreamError(f"the source {kind} {name!r} cannot also be the sink or "
                                  f"the dead-letter {kind}")


@dataclass
class WorkerStats:
    """What a worker run did; `decided + dead_lettered + rebuilt` messages were consumed."""

    decided: int = 0
    dead_lettered: int = 0
    redelivered: int = 0
    rebuilt: int = 0
    """Events decided again after an unclean stop only to rebuild the state (their
    decisions had been produced and acknowledged): not produced again."""
    state_waits: int = 0
    skipped: int = 0
    """Messages a replay passed over (stamped before its start time)."""
    commits: int = 0
    snapshot: str | None = None
    by_decision: dict[str, int] = field(default_factory=dict)

    @property
    def consumed(self) -> int:
        return self.decided + self.dead_lettered + self.rebuilt + self.skipped
