"""State across restarts: graceful stop (snapshot) and a crash (snapshot + log replay)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from riskengine.engine import Engine
from riskengine.service import ServiceSettings, create_app
from riskengine.service.runtime import ServiceRuntime
from tests.service.helpers import ADMIN, ADMIN_HEADERS, T0


def traffic(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"event_id": f"t{i}", "timestamp": T0 + i * 20_000 + rng.randint(-15_000, 0),
             "pay_account": f"A{rng.randint(0, 5)}", "rcv_account": f"R{rng.randint(0, 3)}",
             "amount": round(rng.uniform(1, 2000), 2), "device_id": f"d{rng.randint(0, 4)}"}
            for i in range(n)]


def reference(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = Engine.from_config(None)
    return [engine.evaluate("transfer", e).features for e in events]


def test_graceful_restart_continues_exactly(make_client: Callable[..., TestClient],
                                            tmp_path: Path) -> None:
    events = traffic(120)
    first = make_client()
    for event in events[:70]:
        assert first.post("/v1/transfer/evaluate", json=event).status_code == 200
    first.__exit__(None, None, None)
    assert (tmp_path / "state" / "snapshot.pkl").exists()
    second = make_client()
    got = [second.post("/v1/transfer/evaluate", json=e).json()["features"]
           for e in events[70:]]
    assert got == reference(events)[70:]


def test_crash_recovery_replays_the_log_after_the_snapshot(tmp_path: Path) -> None:
    """A snapshot at event 40, a crash at 90 (no shutdown): the restart restores the
    snapshot, replays the 50 logged events after it, and continues exactly."""
    events = traffic(150, seed=5)
    settings = ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                               watch_config=False)
    crashed = ServiceRuntime(settings)
    with TestClient(create_app(runtime=crashed)) as client:
        for i, event in enumerate(events[:90]):
            assert client.post("/v1/transfer/evaluate", json=event).status_code == 200
            if i == 39:
                crashed.snapshot()
        # simulate kill -9: the lifespan's shutdown (final snapshot) must not run
        crashed.close = lambda: crashed.log.close()  # type: ignore[method-assign]
    restarted = ServiceRuntime(settings)
    with TestClient(create_app(runtime=restarted)) as client:
        assert restarted.recovered_events == 50
        got = [client.post("/v1/transfer/evaluate", json=e).json()["features"]
               for e in events[90:]]
        logged = client.get("/v1/decisions/t10", headers=ADMIN_HEADERS)
        assert logged.status_code == 200
    assert got == reference(events)[90:]


def test_api_changes_survive_restart(make_client: Callable[..., TestClient]) -> None:
    first = make_client()
    put = first.put("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS, json={
        "rules": [{"id": "always", "when": "amount >= 0", "action": "review"}]})
    version = put.json()["version"]
    first.put("/v1/lists/blocked_devices/dev-P", headers=ADMIN_HEADERS)
    first.__exit__(None, None, None)
    second = make_client()
    live = second.get("/v1/scenes/transfer/ruleset", headers=ADMIN_HEADERS).json()
    assert live["version"] == version
    entries = second.get("/v1/lists/blocked_devices", headers=ADMIN_HEADERS).json()["entries"]
    assert "dev-P" in [e["value"] for e in entries]
