"""Trace context across the stream worker, on a real broker and a real redis-server: the
context of each input message (Kafka headers, Redis Streams entry fields) is the parent
of its ``riskengine.evaluate`` span, and the decision produced carries that span's
context on. Spans are read from the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Producer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from riskengine.engine import Engine
from riskengine.stream.base import KafkaTopic
from riskengine.stream.kafka import KafkaWorker, WorkerSettings
from riskengine.stream.redis_streams import RedisStreamSettings, RedisStreamWorker
from riskengine.stream.redis_streams.base import RedisStream
from riskengine.tracing import TracingSettings
from tests.servers import redis_server
from tests.stream.kafkatools import FAST_GROUP, new_topics, read_all
from tests.stream.test_kafka_worker import _events

PARENT_ID = "00f067aa0ba902b7"
MALFORMED = ["garbage", "00-" + "0" * 32 + "-" + PARENT_ID + "-01", "00-zz-zz-01",
             "x" * 5000]


def trace_id(i: int) -> str:
    return f"{i + 1:032x}"


def traceparent(i: int) -> str:
    return f"00-{trace_id(i)}-{PARENT_ID}-01"


def context_of(i: int) -> dict[str, str] | None:
    """Message i's trace context: most carry a valid one, some a malformed one, some none."""
    if i % 5 == 3:
        return {"traceparent": MALFORMED[i % len(MALFORMED)]}
    if i % 5 == 4:
        return None
    return {"traceparent": traceparent(i), "tracestate": f"k=v{i}"}


def span_by_event(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    out = {}
    for span in exporter.get_finished_spans():
        if span.name == "riskengine.evaluate" and span.attributes:
            event_id = span.attributes.get("riskengine.event_id")
            if event_id is not None:
                out[str(event_id)] = span
    return out


def check_trace(events: list[dict[str, Any]], exporter: InMemorySpanExporter,
                out_context: dict[str, dict[str, str]]) -> None:
    """Each event's span continues its input's context (or starts a trace), and its
    decision carries the span's context."""
    spans = span_by_event(exporter)
    assert sorted(spans) == sorted(e["event_id"] for e in events)
    children: dict[int, set[str]] = {}
    for span in exporter.get_finished_spans():
        if span.parent is not None:
            children.setdefault(span.parent.span_id, set()).add(span.name)
    for i, event in enumerate(events):
        span = spans[event["event_id"]]
        assert span.kind is SpanKind.CONSUMER
        given = context_of(i)
        if given is not None and given.get("traceparent") == traceparent(i):
            assert span.parent is not None and span.parent.is_remote
            assert format(span.context.trace_id, "032x") == trace_id(i)
            assert format(span.parent.span_id, "016x") == PARENT_ID
            assert span.context.trace_state.get("k") == f"v{i}"
            assert out_context[event["event_id"]]["tracestate"] == f"k=v{i}"
        else:  # none, or malformed: a new trace
            assert span.parent is None
        assert children[span.context.span_id] == {"riskengine.features", "riskengine.rules"}
        carried = out_context[event["event_id"]]
        assert carried["traceparent"] == (f"00-{span.context.trace_id:032x}-"
                                          f"{span.context.span_id:016x}-"
                                          f"{span.context.trace_flags:02x}")


# -- Kafka ------------------------------------------------------------------------------


def test_kafka_headers_carry_the_context_across_the_worker(bootstrap: str) -> None:
    events = _events(40, seed=5)
    topics = new_topics(bootstrap, events=1, decisions=1, dead=1)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, event in enumerate(events):
        context = context_of(i)
        headers = None if context is None else [(k, v.encode()) for k, v in context.items()]
        producer.produce(topics["events"], orjson.dumps(event), b"k", headers=headers)
    producer.produce(topics["events"], b"{not json", b"k",
                     headers=[("traceparent", traceparent(999).encode())])
    assert producer.flush(30) == 0
    exporter = InMemorySpanExporter()
    settings = WorkerSettings(
        source=KafkaTopic(bootstrap, topics["events"]),
        sink=KafkaTopic(bootstrap, topics["decisions"]),
        dead_letter=KafkaTopic(bootstrap, topics["dead"]), group="traced",
        max_events=len(events) + 1, idle_exit_s=20,
        consumer_options=dict(o.removeprefix("consumer:").split("=")
                              for o in FAST_GROUP[1::2]),
        tracing=TracingSettings(exporter=exporter))
    stats = KafkaWorker(Engine.from_config(None), settings).run()
    assert stats.decided == len(events) and stats.dead_lettered == 1
    out = read_all(bootstrap, topics["decisions"], 1, len(events))
    carried = {orjson.loads(m.value())["event_id"]: {k: v.decode() for k, v in m.headers()}
               for m in out}
    check_trace(events, exporter, carried)
    poison = [s for s in exporter.get_finished_spans() if "riskengine.poison" in
              (s.attributes or {})]
    assert len(poison) == 1
    assert poison[0].status.status_code is StatusCode.ERROR
    assert format(poison[0].context.trace_id, "032x") == trace_id(999)


# -- Redis Streams ----------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[str]:
    with redis_server() as url:
        yield url


def test_redis_stream_fields_carry_the_context_across_the_worker(server: str) -> None:
    client = redis.Redis.from_url(server)
    events = _events(40, seed=6)
    for i, event in enumerate(events):
        fields: dict[str, Any] = {"event": orjson.dumps(event)}
        fields.update(context_of(i) or {})
        client.xadd("events", fields)
    client.xadd("events", {"event": b"[1]", "traceparent": traceparent(998)})
    exporter = InMemorySpanExporter()
    settings = RedisStreamSettings(
        source=RedisStream(server, "events"), sink=RedisStream(server, "decisions"),
        dead_letter=RedisStream(server, "dead"), max_events=len(events) + 1,
        idle_exit_s=10, tracing=TracingSettings(exporter=exporter))
    stats = RedisStreamWorker(Engine.from_config(None), settings).run()
    assert stats.decided == len(events) and stats.dead_lettered == 1
    carried = {}
    for _, fields in client.xrange("decisions"):
        decision = orjson.loads(fields[b"decision"])
        carried[decision["event_id"]] = {k.decode(): v.decode() for k, v in fields.items()
                                         if k in (b"traceparent", b"tracestate")}
    assert len(carried) == len(events)
    check_trace(events, exporter, carried)
    (poison,) = [s for s in exporter.get_finished_spans()
                 if (s.attributes or {}).get("riskengine.poison") == "undecodable"]
    assert format(poison.context.trace_id, "032x") == trace_id(998)
    client.close()


def test_without_tracing_the_decisions_carry_no_context(server: str) -> None:
    client = redis.Redis.from_url(server)
    events = _events(5, seed=7)
    for i, event in enumerate(events):
        client.xadd("events", {"event": orjson.dumps(event), "traceparent": traceparent(i)})
    settings = RedisStreamSettings(source=RedisStream(server, "events"),
                                   sink=RedisStream(server, "decisions"),
                                   max_events=len(events), idle_exit_s=10)
    loop = RedisStreamWorker(Engine.from_config(None), settings)
    assert loop.tracing is None
    assert loop.run().decided == len(events)
    entries = client.xrange("decisions")
    assert len(entries) == len(events)
    assert all(set(fields) == {b"decision", b"event_id"} for _, fields in entries)
    client.close()


def test_the_worker_refuses_an_endpoint_that_is_not_an_http_url() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "riskengine", "worker", "--source",
                           "kafka://127.0.0.1:9/in", "--sink", "kafka://127.0.0.1:9/out",
                           "--otel-endpoint", "127.0.0.1:4318"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "--otel-endpoint must be an http:// or https:// URL" in done.stderr
