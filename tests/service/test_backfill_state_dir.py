"""`riskengine backfill --state-dir`, then the service on that dir: its live decisions are
a replay's of history + live, with a fresh decision log and with an existing one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from riskengine.engine import Engine
from riskengine.service import ServiceSettings, create_app
from riskengine.service.runtime import ServiceRuntime
from tests.backfilling import comparable, demo_case, hostile_case, replayed, write_jsonl
from tests.cli.clitools import run
from tests.hostile import HOSTILE_SEEDS
from tests.service.helpers import ADMIN, ADMIN_HEADERS, transfer


@pytest.mark.parametrize("seed", HOSTILE_SEEDS)
def test_service_on_a_backfilled_dir_decides_as_a_replay_of_history_and_live(
        make_client: Callable[..., TestClient], tmp_path: Path, seed: int) -> None:
    config, scene, history, live = hostile_case(tmp_path, seed, 900, 650)
    state_dir = tmp_path / "state"
    result = run("backfill", write_jsonl(tmp_path / "history.jsonl", history),
                 "--state-dir", state_dir, "-c", config, "-s", scene)
    assert result.exit_code == 0, result.output
    client = make_client(config=config, state_dir=state_dir)
    got = [comparable(client.post(f"/v1/{scene}/evaluate", json=e).json()) for e in live]
    assert got == replayed(config, scene, history, live)
    assert any(d["late"] for d in got) and any(d["duplicate"] for d in got)


def test_demo_traffic_backfilled_then_live(make_client: Callable[..., TestClient],
                                           tmp_path: Path) -> None:
    config, scene, history, live = demo_case(2_400, 2_000)
    state_dir = tmp_path / "state"
    result = run("backfill", write_jsonl(tmp_path / "history.jsonl", history),
                 "--state-dir", state_dir)
    assert result.exit_code == 0, result.output
    assert "2,000" in result.stdout  # rows read, events taken, last LSN
    client = make_client(state_dir=state_dir)
    got = [comparable(client.post(f"/v1/{scene}/evaluate", json=e).json()) for e in live]
    assert got == replayed(config, scene, history, live)
    assert [d["lsn"] for d in got] == list(range(2_001, 2_401))


@pytest.mark.parametrize(("logged", "n", "cut"), [(30, 1_500, 1_200), (120, 300, 60)])
def test_an_existing_decision_log_is_refused_then_numbered_past_with_force(
        make_client: Callable[..., TestClient], tmp_path: Path, logged: int, n: int,
        cut: int) -> None:
    """A dir an earlier deployment used (snapshot and `logged` decisions, more or fewer
    than the history): refused without --force; with it, the history takes the LSNs after
    the log's, so the service re-runs no logged event on top of it, hands out no logged
    LSN, and recovers from a crash by the log as usual."""
    config, scene, history, live = demo_case(n, cut)
    state_dir = tmp_path / "state"
    earlier = make_client(state_dir=state_dir)
    for i in range(logged):
        assert earlier.post("/v1/transfer/evaluate", json=transfer(i)).status_code == 200
    earlier.__exit__(None, None, None)
    snapshot = (state_dir / "snapshot.pkl").read_bytes()
    source = write_jsonl(tmp_path / "history.jsonl", history)

    refused = run("backfill", source, "--state-dir", state_dir)
    assert refused.exit_code == 2
    assert "already holds state" in refused.stderr and "--force" in refused.stderr
    assert f"decisions up to LSN {logged}" in refused.stderr
    assert (state_dir / "snapshot.pkl").read_bytes() == snapshot

    forced = run("backfill", source, "--state-dir", state_dir, "--force")
    assert forced.exit_code == 0, forced.output
    expected = replayed(config, scene, history, live)
    settings = ServiceSettings(state_dir=state_dir, admin_token=ADMIN, watch_config=False)
    crashed = ServiceRuntime(settings)
    with TestClient(create_app(runtime=crashed)) as client:
        assert crashed.recovered_events == 0
        first = [client.post("/v1/transfer/evaluate", json=e).json() for e in live[:150]]
        crashed.close = lambda: crashed.log.close()  # type: ignore[method-assign]  # kill -9
    restarted = ServiceRuntime(settings)
    with TestClient(create_app(runtime=restarted)) as client:
        assert restarted.recovered_events == 150
        rest = [client.post("/v1/transfer/evaluate", json=e).json() for e in live[150:]]
        assert client.get("/v1/decisions/e3", headers=ADMIN_HEADERS).status_code == 200
    got = [comparable(d) for d in first + rest]
    assert [d["lsn"] for d in got] == [d["lsn"] + logged for d in expected]
    assert [{**d, "lsn": 0} for d in got] == [{**d, "lsn": 0} for d in expected]


def test_the_history_follows_a_decision_log_given_by_url(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    log = tmp_path / "elsewhere" / "decisions.db"
    earlier = make_client(state_dir=tmp_path / "earlier", decision_log=str(log))
    for i in range(5):
        assert earlier.post("/v1/transfer/evaluate", json=transfer(i)).status_code == 200
    earlier.__exit__(None, None, None)
    _, _, history, _ = demo_case(100, 100)
    source = write_jsonl(tmp_path / "history.jsonl", history)
    state_dir = tmp_path / "fresh"
    refused = run("backfill", source, "--state-dir", state_dir, "--decision-log", log)
    assert refused.exit_code == 2 and "decisions up to LSN 5" in refused.stderr
    assert not state_dir.exists()
    forced = run("backfill", source, "--state-dir", state_dir, "--decision-log", log,
                 "--force")
    assert forced.exit_code == 0, forced.output
    assert Engine.from_config(None).restore(state_dir / "snapshot.pkl").lsn == 105
