"""Every runtime on the hostile streams (tests/hostile.py): `riskengine replay`, the
service, the Kafka worker (one partition, and two partitions with one lagging hours
behind the other) and the Redis Streams worker give the in-process engine's decisions
and feature values on every event — the engine itself equals the oracle on these
streams (tests/features/test_hostile_streams.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import redis
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from riskengine import Engine
from riskengine.cli import app
from riskengine.service import ServiceSettings, create_app
from tests.hostile import HOSTILE_SEEDS, hostile_config, hostile_stream
from tests.servers import redis_server
from tests.stream.kafkatools import new_topics, produce, read_all
from tests.stream.test_kafka_worker import _finish
from tests.stream.test_kafka_worker import _worker as kafka_worker
from tests.stream.test_redis_streams import _add
from tests.stream.test_redis_streams import _finish as streams_finish
from tests.stream.test_redis_streams import _worker as streams_worker

N = 1500
HOUR = 3_600_000


def essence(d: dict[str, Any]) -> tuple[Any, ...]:
    hits = [(h["rule_id"], h["score"]) for h in d["hits"]]
    return (d["event_id"], d["decision"], d["score"], d["features"], hits, d["late"],
            d["degraded"])


def replayed(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    engine = Engine.from_config(hostile_config())
    return [essence(engine.evaluate("s", copy.deepcopy(e)).to_dict()) for e in events]


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(hostile_config()), encoding="utf-8")
    return path


def test_replay_and_the_service_equal_the_engine(tmp_path: Path) -> None:
    events, _ = hostile_stream(HOSTILE_SEEDS[0], N)
    expected = replayed(events)
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    out = tmp_path / "decisions.jsonl"
    result = CliRunner().invoke(app, ["replay", str(source), "--output", str(out),
                                      "--config", str(config_file(tmp_path)),
                                      "--scene", "s"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["event_id"], r["decision"], r["score"], r["features"], r["late"])
            for r in rows] == [(*x[:4], x[5]) for x in expected]

    settings = ServiceSettings(config=config_file(tmp_path), state_dir=tmp_path / "state",
                               admin_token="a" * 24, watch_config=False)
    with TestClient(create_app(settings)) as client:
        got = []
        for event in events:
            response = client.post("/v1/s/evaluate", json=event)
            assert response.status_code == 200, response.text
            got.append(essence(response.json()))
    assert got == expected


def test_the_kafka_worker_on_one_partition(bootstrap: str, tmp_path: Path) -> None:
    events, _ = hostile_stream(HOSTILE_SEEDS[1], N)
    topics = new_topics(bootstrap, events=1, decisions=1)
    produce(bootstrap, topics["events"], ((None, orjson.dumps(e)) for e in events))
    out = _finish(kafka_worker(bootstrap, topics, "hostile-1", "--config",
                               str(config_file(tmp_path)), "--scene", "s",
                               "--idle-exit", "10"), timeout=120)
    assert "decided" in out
    messages = read_all(bootstrap, topics["decisions"], 1, len(events))
    assert [essence(orjson.loads(m.value())) for m in messages] == replayed(events)


def test_the_kafka_worker_keeps_a_clock_per_partition(bootstrap: str,
                                                      tmp_path: Path) -> None:
    """Two partitions with disjoint keys, the second five hours behind the first: each
    partition's decisions equal a replay of that partition alone (one clock for both
    would have answered most of the lagging partition late)."""
    first, _ = hostile_stream(HOSTILE_SEEDS[0], N, prefix="p0-")
    second, _ = hostile_stream(HOSTILE_SEEDS[2], N, prefix="p1-")
    second = [{**e, "timestamp": e["timestamp"] - 5 * HOUR} for e in second]
    topics = new_topics(bootstrap, events=2, decisions=1)
    for partition, events in enumerate((first, second)):
        produce(bootstrap, topics["events"], ((None, orjson.dumps(e)) for e in events),
                partition=partition)
    out = _finish(kafka_worker(bootstrap, topics, "hostile-2", "--config",
                               str(config_file(tmp_path)), "--scene", "s",
                               "--idle-exit", "10"), timeout=120)
    assert "decided" in out
    messages = [orjson.loads(m.value())
                for m in read_all(bootstrap, topics["decisions"], 1, 2 * N)]
    for prefix, events in (("p0-", first), ("p1-", second)):
        mine = [essence(d) for d in messages if d["event_id"].startswith(prefix)]
        assert mine == replayed(events), prefix
    assert sum(d["late"] for d in messages if d["event_id"].startswith("p1-")) < N // 2


def test_the_redis_streams_worker(tmp_path: Path) -> None:
    events, _ = hostile_stream(HOSTILE_SEEDS[2], N)
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        _add(client, events)
        out = streams_finish(streams_worker(url, "--config", str(config_file(tmp_path)),
                                            "--scene", "s", "--idle-exit", "5"))
        assert "decided" in out, out
        got = [essence(orjson.loads(fields[b"decision"]))
               for _, fields in client.xrange("decisions")]
    assert got == replayed(events)
