"""The transport-independent worker parts on hostile input, without a broker: every
message gets a decision or a poison verdict naming what is wrong, and the batch goes on."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from riskengine.engine import Engine
from riskengine.exceptions import UnknownSceneError
from riskengine.stream import StreamError
from riskengine.stream.base import PoisonMessage
from riskengine.stream.redis_streams import parse_stream_url
from riskengine.stream.runner import build_settings
from riskengine.stream.worker import Decided, StreamWorker

T0 = 1_767_225_600_000
GOOD = {"event_id": "g1", "timestamp": T0, "pay_account": "A", "rcv_account": "B",
        "amount": 5.0}


def test_a_hostile_batch_gets_one_verdict_per_message() -> None:
    worker = StreamWorker(Engine.from_config(None), "transfer")
    values: list[bytes | None] = [
        orjson.dumps(GOOD),
        b"{" * 1_000_000,                                      # huge and malformed
        b"[" * 5000 + b"]" * 5000,                              # nested past the limit
        orjson.dumps({**GOOD, "event_id": "big", "note": "x" * 2_000_000}),  # huge, valid
        orjson.dumps({**GOOD, "event_id": "w", "amount": "lots"}),           # wrong type
        orjson.dumps({**GOOD, "event_id": "n", "amount": 1e300}),            # out of range
        b"\xff\xfe not utf-8",
        None,                                                  # a tombstone
        orjson.dumps(GOOD),                                    # a repeat of the first
        orjson.dumps({**GOOD, "event_id": "last", "timestamp": T0 + 1}),
    ]
    out = worker.decide_batch(values, lambda i: f"#{i}")
    kinds = [o.kind if isinstance(o, PoisonMessage) else "decided" for o in out]
    assert kinds == ["decided", "undecodable", "undecodable", "decided", "invalid-event",
                     "invalid-event", "undecodable", "undecodable", "decided", "decided"]
    first, big, repeat, last = (o for o in out if isinstance(o, Decided))
    assert first.fresh and big.fresh and last.fresh and not repeat.fresh
    assert repeat.decision == replace(first.decision, duplicate=True)
    assert last.decision.features["count(pay_account.history,1h)"] == 3
    assert out[4].field == "amount"  # type: ignore[union-attr]


def test_an_unknown_scene_is_refused_before_any_connection() -> None:
    with pytest.raises(UnknownSceneError):
        StreamWorker(Engine.from_config(None), "nope")


@pytest.mark.parametrize(("url", "redis_url", "stream"), [
    ("redis-stream://127.0.0.1:6379/events", "redis://127.0.0.1:6379/0", "events"),
    ("redis-stream://h:1/3/a:b", "redis://h:1/3", "a:b"),
    ("redis-stream://user:pw@h:1/0/s", "redis://user:pw@h:1/0", "s"),
])
def test_redis_stream_urls(url: str, redis_url: str, stream: str) -> None:
    parsed = parse_stream_url(url, "--source")
    assert (parsed.redis_url, parsed.stream) == (redis_url, stream)
    assert "pw" not in str(parsed)


@pytest.mark.parametrize("url", ["redis://h:1/s", "redis-stream://h:1", "redis-stream://h:1/",
                                 "redis-stream://h:1/0/a/b", "redis-stream:///s",
                                 "redis-stream://h:x/s"])
def test_bad_redis_stream_urls_name_the_option(url: str) -> None:
    with pytest.raises(StreamError, match="--dead-letter"):
        parse_stream_url(url, "--dead-letter")


def test_redis_stream_settings_refuse_what_does_not_apply() -> None:
    common = dict(dead_letter=None, group="g", scene="transfer", state_dir=None,
                  max_events=None, idle_exit_s=None, batch_size=10)
    with pytest.raises(StreamError, match="cannot also be"):
        build_settings(source="redis-stream://h:1/s", sink="redis-stream://h:1/0/s",
                       kafka_options=[], **common)  # type: ignore[arg-type]
    with pytest.raises(StreamError, match="--consumer"):
        build_settings(source="kafka://h:1/t", sink="kafka://h:1/u", kafka_options=[],
                       consumer_name="w1", **common)  # type: ignore[arg-type]
    with pytest.raises(StreamError, match="group"):
        build_settings(source="redis-stream://h:1/s", sink="redis-stream://h:1/d",
                       kafka_options=[], **{**common, "group": ""})  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["no.such.host.invalid", "10.255.255.1", "not an address"])
def test_metrics_on_an_address_that_cannot_be_served_is_a_stream_error(host: str) -> None:
    from riskengine.stream.metrics import StreamMetrics

    with pytest.raises(StreamError, match="--metrics-host"):
        StreamMetrics().serve(0, host)


def test_metrics_on_a_port_in_use_is_a_stream_error() -> None:
    from riskengine.stream.metrics import StreamMetrics

    first = StreamMetrics()
    port = first.serve(0)
    try:
        with pytest.raises(StreamError, match=f"127.0.0.1:{port}"):
            StreamMetrics().serve(port)
    finally:
        first.close()
