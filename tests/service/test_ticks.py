"""Single events decided together at the end of their event-loop tick
(riskengine/service/ticks.py): each gets what deciding it alone would give it, in
arrival order; a refused one is refused alone; the log gets every record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskengine.engine import Engine
from riskengine.exceptions import EventValidationError
from riskengine.service import ServiceSettings
from riskengine.service.runtime import Decided, ServiceRuntime
from tests.service.helpers import ADMIN, T0, transfer


def login(i: int) -> dict[str, Any]:
    return {"event_id": f"l{i}", "timestamp": T0 + i * 1000, "account": "A",
            "result": "fail" if i % 2 else "ok", "ip": "10.0.0.1"}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ServiceRuntime]:
    rt = ServiceRuntime(ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                                        watch_config=False))
    rt.recover()
    yield rt
    rt.close()


def submitted(runtime: ServiceRuntime, items: list[tuple[str, object]]
              ) -> list[Decided | Exception]:
    """Submit `items` in one tick; their outcomes once decided and committed."""
    async def run() -> list[Decided | Exception]:
        outcomes: list[Decided | Exception] = []
        for scene, raw in items:
            runtime.decide_soon(scene, raw, outcomes.append)
        assert outcomes == []  # nothing is decided before the tick's end
        await asyncio.sleep(0)
        assert len(outcomes) == len(items)
        records = [o.record for o in outcomes if isinstance(o, Decided) and o.record]
        await runtime.committed(records)  # raises on a failed commit
        return outcomes

    return asyncio.run(run())


def test_a_tick_decides_each_event_as_alone_in_arrival_order(runtime: ServiceRuntime) -> None:
    bad = {**transfer(90), "amount": "lots"}
    items: list[tuple[str, object]] = [
        ("transfer", transfer(1)), ("transfer", transfer(2, amount=7000.0)),
        ("login", login(1)), ("transfer", bad), ("transfer", [1, 2]),
        ("transfer", transfer(1)),  # again, in the same tick
        ("login", login(2)), ("transfer", transfer(3, pay_account="B"))]
    outcomes = submitted(runtime, items)

    engine = Engine.from_config(None)
    for (scene, raw), outcome in zip(items, outcomes, strict=True):
        try:
            expected = engine.evaluate(scene, raw)  # type: ignore[arg-type]
        except EventValidationError as exc:
            assert isinstance(outcome, EventValidationError)
            assert str(outcome) == str(exc)
            continue
        assert isinstance(outcome, Decided)
        got = outcome.decision
        assert (got.lsn, got.duplicate, got.decision, got.features) == \
            (expected.lsn, expected.duplicate, expected.decision, expected.features)
        assert outcome.answer == got.to_json()
        assert (outcome.record is None) == got.duplicate
    lsns = [o.decision.lsn for o in outcomes if isinstance(o, Decided)]
    assert lsns == [1, 2, 3, 1, 4, 5]
    runtime.log.flush(30)
    assert [lsn for lsn, _, _ in runtime.log.events_after(0)] == [1, 2, 3, 4, 5]


def test_an_event_without_time_gets_its_arrival_in_a_tick(runtime: ServiceRuntime) -> None:
    timeless = {k: v for k, v in transfer(1).items() if k != "timestamp"}
    before = int(time.time() * 1000)
    (outcome,) = submitted(runtime, [("transfer", timeless)])
    assert isinstance(outcome, Decided)
    assert before <= outcome.decision.timestamp <= int(time.time() * 1000)
    assert outcome.record is not None
    assert outcome.record.event["timestamp"] == outcome.decision.timestamp


def test_ticks_one_after_another_go_on_where_the_last_stopped(runtime: ServiceRuntime) -> None:
    first = submitted(runtime, [("transfer", transfer(i)) for i in range(5)])
    second = submitted(runtime, [("transfer", transfer(i)) for i in range(3, 8)])
    assert [o.decision.lsn for o in first] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    assert [(o.decision.lsn, o.decision.duplicate)  # type: ignore[union-attr]
            for o in second] == [(4, True), (5, True), (6, False), (7, False), (8, False)]
    engine = Engine.from_config(None)
    expected = [engine.evaluate("transfer", transfer(i)).features for i in range(8)]
    assert [o.decision.features for o in second[2:]] == expected[5:]  # type: ignore[union-attr]
