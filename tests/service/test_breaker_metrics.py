"""The shared state's circuit breaker in /metrics: open while Redis is away, closed again
when it answers; absent with in-memory state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from riskengine.service.breaker_metrics import StateBreakerCollector, state_breaker
from riskengine.state.breaker import CircuitBreaker
from tests.servers import free_port, redis_server_aof
from tests.service.test_restart import traffic
from tests.waiting import eventually

OPEN = "riskengine_state_breaker_open"
OPENS = "riskengine_state_breaker_opens_total"


def samples(text: str) -> dict[str, float]:
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples}


def scrape(breaker: CircuitBreaker) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(StateBreakerCollector(breaker))
    return samples(generate_latest(registry).decode())


def test_gauge_follows_the_breaker_through_open_half_open_and_closed() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, cooldown_ms=100, clock=lambda: now[0])
    assert (scrape(breaker)[OPEN], scrape(breaker)[OPENS]) == (0, 0)
    breaker.failure()
    assert scrape(breaker)[OPEN] == 0
    breaker.failure()
    assert (scrape(breaker)[OPEN], scrape(breaker)[OPENS]) == (1, 1)
    now[0] = 0.2
    assert breaker.allow() and breaker.state == "half_open"
    assert scrape(breaker)[OPEN] == 1
    breaker.success()
    assert (scrape(breaker)[OPEN], scrape(breaker)[OPENS]) == (0, 1)


def test_state_breaker_finds_none_without_one() -> None:
    assert state_breaker(object()) is None

    class WithOther:
        breaker = "not a breaker"

    assert state_breaker(WithOther()) is None


def test_service_on_redis_shows_the_breaker_open_while_redis_is_away(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    events = iter(traffic(400, seed=5))
    port = free_port()
    (tmp_path / "redis").mkdir()
    redis = redis_server_aof(tmp_path / "redis", port)
    try:
        client = make_client(state=f"redis://127.0.0.1:{port}/0")
        assert client.post("/v1/transfer/evaluate", json=next(events)).json()["degraded"] is False
        up = samples(client.get("/metrics").text)
        assert (up[OPEN], up[OPENS]) == (0, 0)
        redis.terminate()
        redis.wait()
        for _ in range(8):
            response = client.post("/v1/transfer/evaluate", json=next(events))
            assert response.status_code == 200 and response.json()["degraded"] is True
        down = samples(client.get("/metrics").text)
        assert down[OPEN] == 1 and down[OPENS] >= 1

        redis = redis_server_aof(tmp_path / "redis", port)

        def decides_on_the_state_again() -> bool:
            body = client.post("/v1/transfer/evaluate", json=next(events)).json()
            return body["degraded"] is False

        assert eventually(decides_on_the_state_again, 20.0, 0.1)
        back = samples(client.get("/metrics").text)
        assert back[OPEN] == 0 and back[OPENS] == down[OPENS]
    finally:
        redis.terminate()
        redis.wait()


def test_in_memory_service_lists_no_breaker(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert "riskengine_decisions_total" in text and "breaker" not in text
