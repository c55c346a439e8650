"""Worker addresses and options: clear errors naming the option, before any connection."""

from __future__ import annotations

import pytest

from riskengine.stream import KafkaTopic, StreamError, parse_kafka_url
from riskengine.stream.runner import build_settings, split_options


@pytest.mark.parametrize(("url", "expected"), [
    ("kafka://127.0.0.1:9092/events", KafkaTopic("127.0.0.1:9092", "events")),
    ("kafka://a:1,b:2/t.x-y_z", KafkaTopic("a:1,b:2", "t.x-y_z")),
])
def test_kafka_urls(url: str, expected: KafkaTopic) -> None:
    assert parse_kafka_url(url, "--source") == expected
    assert str(expected) == url


@pytest.mark.parametrize("url", ["redis://h:1/t", "kafka://h:1", "kafka://h:1/",
                                 "kafka://h/t", "kafka:///t", "kafka://h:1/a b", "h:1/t"])
def test_bad_kafka_urls_name_the_option(url: str) -> None:
    with pytest.raises(StreamError, match="--sink"):
        parse_kafka_url(url, "--sink")


def test_options_split_by_client() -> None:
    consumer, producer = split_options(["a=1", "consumer:b=2", "producer:c=x=y"])
    assert consumer == {"a": "1", "b": "2"} and producer == {"a": "1", "c": "x=y"}
    for bad in ("novalue", "=1", "admin:x=1"):
        with pytest.raises(StreamError, match="--kafka-option"):
            split_options([bad])


def test_source_cannot_be_the_sink() -> None:
    with pytest.raises(StreamError, match="cannot also be"):
        build_settings(source="kafka://h:1/t", sink="kafka://h:1/t", dead_letter=None,
                       group="g", scene="transfer", state_dir=None, max_events=None,
                       idle_exit_s=None, batch_size=10, kafka_options=[])
