"""The circuit breaker, alone (fake clock) and in front of a real redis-server that is
killed, frozen and started again on the same port: decisions degrade to the scene's
fallback at once, and come back by themselves."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import yaml

from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.exceptions import ConfigError
from riskengine.state.breaker import CircuitBreaker
from riskengine.state.redis import functions
from riskengine.state.redis.backend import RedisState, StateUnavailableError
from tests.example_config import example_config
from tests.servers import free_port, wait_for_port

T0 = 1_767_225_600_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000.0


# -- the breaker alone ---------------------------------------------------------------------

def test_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_ms=500, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.success()  # resets the run of failures
    for _ in range(3):
        breaker.failure()
    assert breaker.state == "open" and breaker.opened == 1
    clock.advance(499)
    assert [breaker.allow() for _ in range(3)] == [False] * 3
    assert breaker.rejected == 3


def test_half_open_lets_one_probe_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_ms=500, clock=clock)
    breaker.failure()
    clock.advance(500)
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # the probe is out
    breaker.failure()  # the probe failed: open for another cooldown
    assert breaker.state == "open" and breaker.opened == 2
    clock.advance(100)
    assert not breaker.allow()
    clock.advance(400)
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_a_probe_that_never_reports_is_replaced() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_ms=200, clock=clock)
    breaker.failure()
    clock.advance(200)
    assert breaker.allow()
    clock.advance(199)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow() and breaker.state == "half_open"


def test_opens_on_a_failure_rate() -> None:
    breaker = CircuitBreaker(failure_threshold=100, failure_rate=0.5, window=10, min_calls=6,
                             clock=FakeClock())
    for _ in range(2):
        breaker.success()
        breaker.failure()
    assert breaker.state == "closed"  # 4 calls: under min_calls
    breaker.success()
    breaker.failure()
    assert breaker.state == "open"  # 3 failures in 6 calls


def test_the_rate_window_slides() -> None:
    breaker = CircuitBreaker(failure_threshold=100, failure_rate=0.5, window=4, min_calls=4,
                             clock=FakeClock())
    for failed in [True, False, False, False, True, False, False, False, True]:
        if failed:
            breaker.failure()
        else:
            breaker.success()
        assert breaker.state == "closed"  # never more than 1 failure in the last 4 calls
    breaker.failure()  # 2 of the last 4 (4 of all 10 calls: under the rate)
    assert breaker.state == "open"


def test_late_reports_while_open_change_nothing() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_ms=100, clock=clock)
    breaker.failure()
    breaker.success()  # a call let through before it opened
    breaker.failure()
    assert breaker.state == "open" and breaker.opened == 1


@pytest.mark.parametrize("options", [{"failure_threshold": 0}, {"failure_rate": 0.0},
                                     {"failure_rate": 1.5}, {"window": 0},
                                     {"cooldown_ms": -1}])
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="circuit breaker"):
        CircuitBreaker(**options)


# -- in front of a real redis-server -------------------------------------------------------

class Server:
    """A redis-server on a fixed port that can be killed, frozen and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.root = tempfile.mkdtemp(prefix="riskengine-breaker-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server not found: run scripts/install_services.sh"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.root,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()
            self.process = None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.root, ignore_errors=True)


@contextlib.contextmanager
def shared_engine(url: str, **options: Any) -> Iterator[Engine]:
    engine = Engine.from_config(None, state=RedisState.connect(
        url, state_timeout_ms=200, breaker=CircuitBreaker(failure_threshold=3, cooldown_ms=200),
        **options))
    try:
        yield engine
    finally:
        engine.close()


class Transfers:
    """Transfers of one account, one a second: each decision shows the count so far."""

    def __init__(self) -> None:
        self.i = 0

    def next(self) -> dict[str, Any]:
        self.i += 1
        return {"event_id": f"t{self.i}", "timestamp": T0 + self.i * 1000,
                "pay_account": "A", "rcv_account": "M", "amount": 10.0}


def assert_degraded(decision: Decision, fallback: str = "review") -> None:
    assert decision.degraded and decision.decision == fallback
    assert (decision.hits, decision.shadow_hits, decision.list_hits) == ((), (), ())
    assert decision.lsn == 0 and decision.score == 0.0
    # every feature of the example transfer scene (12) and its model score: all null
    assert set(decision.features.values()) == {None} and len(decision.features) == 13


def decide_until_normal(engine: Engine, events: Transfers, seconds: float = 20.0
                        ) -> Decision:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        decision = engine.evaluate("transfer", events.next())
        if not decision.degraded:
            return decision
        time.sleep(0.05)
    raise AssertionError("the breaker did not close after Redis came back")


def test_redis_killed_and_restarted(server: Server) -> None:
    events = Transfers()
    with shared_engine(server.url) as engine:
        for n in range(1, 6):
            decision = engine.evaluate("transfer", events.next())
            assert not decision.degraded
            assert decision.features["count(pay_account.history,1h)"] == n
        server.kill()
        down = [engine.evaluate("transfer", events.next()) for _ in range(20)]
        for decision in down:
            assert_degraded(decision)
        stats = engine.stats()["transfer"]
        assert stats["degraded_decisions"] == 20 and stats["breaker_state"] == "open"
        breaker = engine.state.breaker
        assert breaker.rejected > 0 and breaker.failures >= 3  # failed fast

        server.start()  # same port, empty
        back = decide_until_normal(engine, events)
        assert engine.state.breaker.state == "closed"
        assert back.features["count(pay_account.history,1h)"] == 1
        for _ in range(5):
            assert not engine.evaluate("transfer", events.next()).degraded
        retried = engine.evaluate("transfer", {**events.next(), "event_id": down[0].event_id})
        assert not retried.degraded  # a degraded decision was not remembered
        assert engine.stats()["transfer"]["breaker_opened"] >= 1


def test_redis_frozen_then_resumed(server: Server) -> None:
    """SIGSTOP: connections are accepted, nothing answers; the timeout ends each wait.
    A call that reached Redis before it froze runs when it resumes (its answer was the
    fallback): that event then counts, once, with its LSN and its step of the clock; the
    calls never sent change nothing."""
    events = Transfers()
    with shared_engine(server.url) as engine:
        assert not engine.evaluate("transfer", events.next()).degraded
        server.signal(signal.SIGSTOP)
        try:
            for _ in range(6):
                assert_degraded(engine.evaluate("transfer", events.next()))
            assert engine.state.breaker.state == "open"
        finally:
            server.signal(signal.SIGCONT)
        back = decide_until_normal(engine, events)
        ran = back.lsn - 2  # degraded calls Redis ran after it resumed (on one key)
        assert 0 <= ran <= 5
        assert back.features["count(pay_account.history,1h)"] == 2 + ran  # the state survived
        assert engine.state.breaker.state == "closed"


def test_scene_fallback_setting(server: Server, tmp_path: Any) -> None:
    config = tmp_path / "config.yaml"
    raw = example_config()
    raw["scenes"]["transfer"]["fallback"] = "reject"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    state = RedisState.connect(server.url, state_timeout_ms=200)
    with Engine.from_config(config, state=state) as engine:
        server.kill()
        assert_degraded(engine.evaluate("transfer", Transfers().next()), "reject")


def test_start_without_redis(server: Server) -> None:
    url = server.url
    server.kill()
    with pytest.raises(StateUnavailableError, match="cannot use the state"):
        Engine.from_config(None, state=RedisState.connect(url, state_timeout_ms=200))
    events = Transfers()
    with shared_engine(url, require_state=False) as engine:
        assert_degraded(engine.evaluate("transfer", events.next()))
        server.start()
        assert decide_until_normal(engine, events).features[
            "count(pay_account.history,1h)"] == 1


@pytest.mark.parametrize(("failure", "resent"), [
    (redis.exceptions.ConnectionError("Connection closed by server."), True),
    (redis.exceptions.TimeoutError("Timeout reading from socket"), False)])
def test_only_a_call_whose_connection_failed_is_sent_again(
        server: Server, monkeypatch: pytest.MonkeyPatch, failure: Exception,
        resent: bool) -> None:
    """A pooled connection that went stale fails at once (the server closed it): the call
    never ran, and is sent again on a new connection. A call that timed out may still run
    (it waits in a slow server's input): a copy sent after it would be applied twice when
    more events of an entity than its guard remembers run in between, so it is answered
    with the fallback instead (its step of the clock may have happened: README, Degraded
    decisions)."""
    events = Transfers()
    with shared_engine(server.url, guard_depth=2) as engine:
        assert not engine.evaluate("transfer", events.next()).degraded
        real = functions.exchange
        sent: list[int] = []

        def exchange(client: Any, commands: list[Any]) -> list[Any]:
            sent.append(len(commands))
            if len(sent) == 1:
                raise failure
            return real(client, commands)

        monkeypatch.setattr(functions, "exchange", exchange)
        decision = engine.evaluate("transfer", events.next())
        if resent:
            assert sent[:2] == [1, 1] and not decision.degraded
            assert decision.features["count(pay_account.history,1h)"] == 2
        else:
            assert sent == [1]
            assert_degraded(decision)
        monkeypatch.undo()
        after = engine.evaluate("transfer", events.next())
        assert after.features["count(pay_account.history,1h)"] == 3 if resent else 2
