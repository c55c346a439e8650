"""`riskengine backfill --state redis://…`, then an engine or the service on that Redis:
the live decisions are a replay's of history + live; state already there is refused
unless forced (then replaced); a run that stops midway leaves no state it can delete."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from riskengine.batch.backfill import BackfillStoppedError, backfill
from riskengine.batch.io import open_reader
from riskengine.batch.state_targets import RedisTarget
from riskengine.config import load_config
from riskengine.engine import Engine
from riskengine.service import ServiceSettings, create_app, shared
from riskengine.service.shared import shared_engine
from riskengine.state.redis import RedisDecisionStore
from riskengine.state.redis.functions import Client
from riskengine.state.redis.lists import RedisListStore
from riskengine.state.redis.scenestate import scene_holdings
from tests.backfilling import (
    comparable,
    demo_case,
    hostile_case,
    replayed,
    write_config,
    write_jsonl,
)
from tests.cli.clitools import run
from tests.hostile import HOSTILE_SEEDS
from tests.servers import free_port, redis_server_aof
from tests.service.helpers import ADMIN

PATIENT_MS = 5_000
"""The live engines' Redis budget here: on a busy test machine a round trip can take
longer than the service's 50 ms, and a fallback answer is not what these tests are about."""


def live_on(url: str, config: Path, scene: str, live: list[dict[str, Any]]
            ) -> list[dict[str, Any]]:
    with shared_engine(load_config(config), url, require_state=True,
                       state_timeout_ms=PATIENT_MS) as engine:
        return [comparable(engine.evaluate(scene, e).to_dict()) for e in live]


@pytest.fixture
def patient_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's shared engine with the budget `PATIENT_MS`; no admin token from the
    environment."""
    monkeypatch.delenv("RISKENGINE_ADMIN_TOKEN", raising=False)
    monkeypatch.setattr(shared, "shared_engine",
                        functools.partial(shared.shared_engine, state_timeout_ms=PATIENT_MS))


def but_lsn(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decisions without their LSN: on a Redis Cluster a duplicate's clock step takes an
    LSN (a gap), in memory it takes none, so the numbers differ once a duplicate came."""
    return [{k: v for k, v in d.items() if k != "lsn"} for d in decisions]


@pytest.mark.parametrize("seed", HOSTILE_SEEDS)
def test_engine_on_a_backfilled_redis_decides_as_a_replay(
        client: Client, redis_url: str, tmp_path: Path, seed: int) -> None:
    config, scene, history, live = hostile_case(tmp_path, seed, 500, 350)
    result = run("backfill", write_jsonl(tmp_path / "history.jsonl", history),
                 "--state", redis_url, "-c", config, "-s", scene)
    assert result.exit_code == 0, result.output
    got = live_on(redis_url, config, scene, live)
    assert but_lsn(got) == but_lsn(replayed(config, scene, history, live))
    fresh = [d["lsn"] for d in got if not d["duplicate"]]
    assert fresh == sorted(fresh) and fresh[0] > len(history) // 2
    assert any(d["late"] for d in got) and any(d["duplicate"] for d in got)


@pytest.mark.usefixtures("patient_service")
def test_service_on_a_backfilled_redis_with_demo_traffic(
        standalone_client: Client, standalone_url: str, tmp_path: Path) -> None:
    config, scene, history, live = demo_case(1_200, 1_000)
    result = run("backfill", write_jsonl(tmp_path / "history.jsonl", history),
                 "--state", standalone_url)
    assert result.exit_code == 0, result.output
    settings = ServiceSettings(state=standalone_url, state_dir=tmp_path / "service",
                               admin_token=ADMIN, watch_config=False)
    with TestClient(create_app(settings)) as service:
        got = [comparable(service.post(f"/v1/{scene}/evaluate", json=e).json())
               for e in live]
    assert got == replayed(config, scene, history, live)


def test_state_there_is_refused_then_replaced_with_force(
        client: Client, redis_url: str, tmp_path: Path) -> None:
    config, scene, history, live = hostile_case(tmp_path, HOSTILE_SEEDS[0], 400, 300)
    source = write_jsonl(tmp_path / "history.jsonl", history)
    assert run("backfill", source, "--state", redis_url, "-c", config, "-s", scene
               ).exit_code == 0
    clock = client.hget("re:{clock}", f"G:{scene}")
    first_lsn = int(client.hget("re:{clock}", "lsn"))
    refused = run("backfill", source, "--state", redis_url, "-c", config, "-s", scene)
    assert refused.exit_code == 2
    assert f"already holds state for scene {scene!r}" in refused.stderr
    assert "--force" in refused.stderr
    assert client.hget("re:{clock}", f"G:{scene}") == clock
    shorter = write_jsonl(tmp_path / "shorter.jsonl", history[:120])
    forced = run("backfill", shorter, "--state", redis_url, "-c", config, "-s", scene,
                 "--force")
    assert forced.exit_code == 0, forced.output
    forced_lsn = int(client.hget("re:{clock}", "lsn"))
    got = live_on(redis_url, config, scene, live)
    expected = replayed(config, scene, history[:120], live)
    assert but_lsn(got) == but_lsn(expected)
    # the LSN counter is every scene's and never goes back: the forced run's LSNs follow
    # the first run's, and the live events' follow them
    assert forced_lsn >= first_lsn + 100  # 120 events, a few of them duplicates
    assert min(d["lsn"] for d in got if not d["duplicate"]) > forced_lsn


def test_a_run_that_fails_midway_deletes_what_it_wrote(
        client: Client, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, scene, history, _ = hostile_case(tmp_path, HOSTILE_SEEDS[1], 300, 300)
    original = Engine.evaluate

    def flaky(self: Engine, name: str, event: Any, **options: Any) -> Any:
        if event.get("event_id") == history[200]["event_id"]:
            raise RuntimeError("simulated failure")
        return original(self, name, event, **options)

    monkeypatch.setattr(Engine, "evaluate", flaky)
    result = run("backfill", write_jsonl(tmp_path / "history.jsonl", history),
                 "--state", redis_url, "-c", config, "-s", scene)
    assert result.exit_code == 1
    assert "backfill stopped" in result.stderr and "was deleted" in result.stderr
    assert scene_holdings(client, scene) == []


def test_redis_that_stops_answering_stops_the_run(tmp_path: Path) -> None:
    """Redis killed after 1,024 rows: the next event gets no state, the run stops (no
    fallback decision is taken for history) and says the state is partial."""
    config, scene, history, _ = demo_case(1_500, 1_500)
    port = free_port()
    (tmp_path / "redis").mkdir()
    server = redis_server_aof(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        target = RedisTarget(load_config(config), url, state_timeout_ms=500)
        source = write_jsonl(tmp_path / "history.jsonl", history)
        reader = open_reader(source)

        def kill_at_first_progress(rows: int, done: int, total: int) -> None:
            if rows < len(history):
                server.kill()
                server.wait()

        with pytest.raises(BackfillStoppedError) as stopped:
            backfill(target, scene, reader, on_progress=kill_at_first_progress)
        assert "did not reach the state" in str(stopped.value)
        assert "partial" in str(stopped.value) and "--force" in str(stopped.value)
    finally:
        server.kill()
        server.wait()


@pytest.mark.usefixtures("patient_service")
def test_lists_are_those_in_redis(standalone_client: Client, standalone_url: str,
                                  tmp_path: Path) -> None:
    """A feature filtered by a list sees the entries put in Redis through the API, as
    the service on that Redis does: its decisions are a replay's with those entries."""
    scenes = {"s": {"features": [{"name": "vip_count", "func": "count", "by": ["acct"],
                                  "window": "1h", "where": "in_list('vip', acct)"}]}}
    config = write_config(tmp_path / "lists.yaml", {"lists": {"vip": {"values": ["zz"]}},
                                                    "scenes": scenes})
    with_entry = write_config(tmp_path / "entry.yaml", {"lists": {"vip": {"values": ["zz", "a1"]}},
                                                        "scenes": scenes})
    project = load_config(config)
    RedisListStore.from_config(project.lists, project.base_dir,
                               standalone_client).add("vip", "a1")
    events = [{"event_id": f"v{i}", "timestamp": 1_767_571_200_000 + i,
               "acct": "a1" if i % 2 else "a2"} for i in range(12)]
    history, live = events[:8], events[8:]
    result = run("backfill", write_jsonl(tmp_path / "history.jsonl", history),
                 "--state", standalone_url, "-c", config, "-s", "s")
    assert result.exit_code == 0, result.output
    settings = ServiceSettings(config=config, state=standalone_url,
                               state_dir=tmp_path / "service", admin_token=ADMIN,
                               watch_config=False)
    with TestClient(create_app(settings)) as service:
        got = [comparable(service.post("/v1/s/evaluate", json=e).json()) for e in live]
    assert got == replayed(with_entry, "s", history, live)
    assert got[-1]["features"]["vip_count"] == 6


def test_a_decision_redis_did_not_remember_fails_the_run(
        standalone_client: Client, standalone_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The third round trip of one event fails (its decision stands, its idempotency
    record is missing): the history would not be whole, so the run fails and clears."""
    config, scene, history, _ = hostile_case(tmp_path, HOSTILE_SEEDS[2], 200, 200)
    original = RedisDecisionStore.remember_many
    lost = history[150]["event_id"]

    def forgetful(self: RedisDecisionStore, records: Any) -> Any:
        if any(record[0] == lost for record in records):
            raise redis.exceptions.ConnectionError("simulated: connection lost")
        return original(self, records)

    monkeypatch.setattr(RedisDecisionStore, "remember_many", forgetful)
    result = run("backfill", write_jsonl(tmp_path / "history.jsonl", history),
                 "--state", standalone_url, "-c", config, "-s", scene)
    assert result.exit_code == 1
    assert "did not remember the decisions of 1 events" in result.stderr
    assert "was deleted" in result.stderr
    assert scene_holdings(standalone_client, scene) == []
