"""Run a worker in the foreground: options in, signals wired, a summary line out."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from riskengine.engine import Engine
from riskengine.exceptions import ListError, RiskEngineError
from riskengine.lists import parse_expiry
from riskengine.stream.base import StreamError, WorkerStats, parse_kafka_url
from riskengine.stream.kafka import KafkaWorker, WorkerSettings
from riskengine.stream.kafka.group import DEFAULT_SESSION_TIMEOUT_MS, check_session_timeout
from riskengine.stream.loop import StreamLoop
from riskengine.stream.redis_streams import (
    SCHEME as STREAM_SCHEME,
)
from riskengine.stream.redis_streams import (
    RedisStream,
    RedisStreamSettings,
    RedisStreamWorker,
    parse_stream_url,
)
from riskengine.stream.section import WorkerSection, duration
from riskengine.tracing import TracingSettings

__all__ = ["build_settings", "run_foreground", "split_options", "use_ruleset_file"]


def split_options(options: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``KEY=VALUE`` librdkafka settings → (consumer, producer) settings. A key prefixed
    ``consumer:`` or ``producer:`` goes to that client only; others go to both.

    >>> split_options(["consumer:session.timeout.ms=6000", "client.id=w1"])
    ({'session.timeout.ms': '6000', 'client.id': 'w1'}, {'client.id': 'w1'})
    """
    consumer: dict[str, str] = {}
    producer: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise StreamError(f"--kafka-option {option[:200]!r}: expected KEY=VALUE")
        which, colon, name = key.partition(":")
        if colon and which not in ("consumer", "producer"):
            raise StreamError(f"--kafka-option {option[:200]!r}: the prefix must be "
                              "consumer: or producer:")
        if not colon or which == "consumer":
            consumer[name if colon else key] = value
        if not colon or which == "producer":
            producer[name if colon else key] = value
    return consumer, producer


def build_settings(*, source: str, sink: str | None, dead_letter: str | None, group: str,
                   scene: str, state_dir: Path | None, max_events: int | None,
                   idle_exit_s: float | None, batch_size: int,
                   kafka_options: Sequence[str], checkpoint_interval_s: float = 300.0,
                   from_offset: int | None = None, from_timestamp: str | None = None,
                   dry_run: bool = False, metrics_port: int | None = None,
                   metrics_host: str = "127.0.0.1",
                   consumer_name: str | None = None, claim_idle_ms: int = 30_000,
                   tracing: TracingSettings | None = None, session_timeout: str | None = None,
                   section: WorkerSection | None = None
                   ) -> WorkerSettings | RedisStreamSettings:
    """The CLI's options (over the config's ``worker:`` `section`) as the settings of a
    Kafka (``kafka://``) or Redis Streams (``redis-stream://``) worker; `StreamError`
    names the bad option."""
    start_ms = None
    if from_timestamp is not None:
        try:
            start_ms = parse_expiry(from_timestamp, what="--from-timestamp")
        except ListError as exc:
            raise StreamError(str(exc)) from None
    if source.startswith(f"{STREAM_SCHEME}://"):
        if kafka_options:
            raise StreamError("--kafka-option is for kafka:// sources")
        if from_offset is not None:
            raise StreamError("a Redis stream has no offsets: replay it with "
                              "--from-timestamp (entry ids are times)")
        if session_timeout is not None:
            raise StreamError("--session-timeout is for kafka:// sources (a Redis consumer "
                              "group has no sessions: see --claim-idle)")

        def stream(url: str | None, option: str) -> RedisStream | None:
            return None if url is None else parse_stream_url(url, option)

        return RedisStreamSettings(
            source=parse_stream_url(source, "--source"), sink=stream(sink, "--sink"),
            dead_letter=stream(dead_letter, "--dead-letter"), group=group,
            consumer=consumer_name, scene=scene, state_dir=state_dir,
            max_events=max_events, idle_exit_s=idle_exit_s, batch_size=batch_size,
            checkpoint_interval_s=checkpoint_interval_s, claim_idle_ms=claim_idle_ms,
            from_timestamp_ms=start_ms, dry_run=dry_run, metrics_port=metrics_port,
            metrics_host=metrics_host,
            progress_interval_s=1.0 if start_ms is not None else None, tracing=tracing)
    if consumer_name is not None:
        raise StreamError("--consumer names a Redis Streams consumer; a Kafka worker is "
                          "named by librdkafka's client.id (-X client.id=…)")
    consumer, producer = split_options(kafka_options)
    timeout_ms = _session_timeout(session_timeout, consumer, section or WorkerSection())
    replay = from_offset is not None or start_ms is not None
    return WorkerSettings(
        source=parse_kafka_url(source, "--source"),
        sink=parse_kafka_url(sink, "--sink") if sink is not None else None,
        from_offset=from_offset, from_timestamp_ms=start_ms, dry_run=dry_run,
        stop_at_end=replay, progress_interval_s=1.0 if replay else None,
        metrics_port=metrics_port, metrics_host=metrics_host, tracing=tracing,
        dead_letter=(parse_kafka_url(dead_letter, "--dead-letter")
                     if dead_letter is not None else None),
        group=group, scene=scene, state_dir=state_dir, max_events=max_events,
        idle_exit_s=idle_exit_s, batch_size=batch_size, consumer_options=consumer,
        producer_options=producer, checkpoint_interval_s=checkpoint_interval_s,
        session_timeout_ms=timeout_ms)


def _session_timeout(option: str | None, consumer: dict[str, str],
                     section: WorkerSection) -> int:
    """The session timeout: ``--session-timeout``, or librdkafka's own
    ``session.timeout.ms`` given with -X (taken out of `consumer`: the worker sets it),
    else the config's ``worker: session_timeout``, else 6 s."""
    raw = consumer.pop("session.timeout.ms", None)
    if raw is not None:
        if option is not None:
            raise StreamError("give --session-timeout or -X session.timeout.ms, not both")
        if not raw.strip().isdigit():
            raise StreamError(f"-X session.timeout.ms={raw[:50]!r}: expected milliseconds")
        return check_session_timeout(int(raw), "-X session.timeout.ms")
    if option is not None:
        return check_session_timeout(duration(option, "--session-timeout"),
                                     "--session-timeout")
    if section.session_timeout_ms is not None:
        return section.session_timeout_ms
    return DEFAULT_SESSION_TIMEOUT_MS


@contextmanager
def _stop_on_signals(worker: StreamLoop[Any]) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %s: finishing the batch in flight", signum)
        worker.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_foreground(engine: Engine, settings: WorkerSettings | RedisStreamSettings
                   ) -> WorkerStats:
    """Run a `KafkaWorker` or `RedisStreamWorker` until SIGTERM/SIGINT, `max_events` or
    idle."""
    worker: KafkaWorker | RedisStreamWorker
    if isinstance(settings, RedisStreamSettings):
        worker = RedisStreamWorker(engine, settings)
    else:
        worker = KafkaWorker(engine, settings)
    with _stop_on_signals(worker):
        return worker.run()


def use_ruleset_file(engine: Engine, scene: str, path: Path) -> str:
    """Make the ruleset in `path` (JSON or YAML: ``{"rules": [...], "policy": {...}}``,
    the policy optional) live for `scene`; returns its version. `StreamError` when the
    file cannot be read or holds no valid ruleset."""
    try:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StreamError(f"--ruleset {str(path)!r}: cannot read it: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("rules"), list) or \
            not set(body) <= {"rules", "policy", "version", "scene", "active"}:
        raise StreamError(f"--ruleset {str(path)!r}: expected an object with 'rules' (a "
                          "list) and an optional 'policy'")
    policy = body.get("policy") or engine.ruleset(scene).policy.to_dict()
    if not isinstance(policy, dict):
        raise StreamError(f"--ruleset {str(path)!r}: 'policy' must be an object")
    if body.get("scene", scene) != scene:
        raise StreamError(f"--ruleset {str(path)!r} is for scene {body['scene']!r}, not "
                          f"{scene!r}")
    try:
        version = engine.activate_ruleset(scene, body["rules"], policy).version
    except RiskEngineError as exc:
        raise StreamError(f"--ruleset {str(path)!r}: {exc}") from None
    if body.get("version", version) != version:
        raise StreamError(f"--ruleset {str(path)!r} says version {body['version']!r}, but "
                          f"its rules and policy are version {version!r}")
    return version
