"""The service with its decision log in a real PostgreSQL server (`--decision-log
postgresql://…`): decisions are queryable, and a crash is recovered from the log."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from riskengine.engine import Engine
from riskengine.service import ServiceSettings, create_app
from riskengine.service.runtime import ServiceRuntime
from tests.service.helpers import ADMIN, ADMIN_HEADERS
from tests.service.test_restart import traffic


def test_postgres_decision_log_serves_queries_and_recovery(tmp_path: Path,
                                                          fresh_postgres_url: str) -> None:
    events = traffic(80, seed=9)
    settings = ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                               decision_log=fresh_postgres_url, watch_config=False)
    crashed = ServiceRuntime(settings)
    with TestClient(create_app(runtime=crashed)) as client:
        for event in events[:50]:
            assert client.post("/v1/transfer/evaluate", json=event).status_code == 200
        logged = client.get("/v1/decisions/t7", headers=ADMIN_HEADERS)
        assert logged.status_code == 200
        assert logged.json()["event_id"] == "t7"
        newest = client.get("/v1/decisions?limit=3", headers=ADMIN_HEADERS).json()
        assert len(newest) == 3
        crashed.close = lambda: crashed.log.close()  # type: ignore[method-assign]  # no snapshot
    assert not (tmp_path / "state" / "snapshot.pkl").exists()
    restarted = ServiceRuntime(settings)
    with TestClient(create_app(runtime=restarted)) as client:
        assert restarted.recovered_events == 50
        got = [client.post("/v1/transfer/evaluate", json=e).json()["features"]
               for e in events[50:]]
    engine = Engine.from_config(None)
    assert got == [engine.evaluate("transfer", e).features for e in events][50:]
