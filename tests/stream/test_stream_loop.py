"""The one stream loop over in-memory adapters: decisions in order, commits after the sink
took them, and the garbage collector kept off the state while it runs."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
import pytest

from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.longlived import _freeze_survivors, settle_memory
from riskengine.stream.base import CommonSettings, PoisonMessage
from riskengine.stream.checkpoint import PreviousRun
from riskengine.stream.loop import Batch, Offsets, StreamLoop
from riskengine.synth import generate_transfers


class ListSource:
    """Messages from a list, `size` per poll; records what it saw of the collector."""

    no_value = "no value"

    def __init__(self, values: list[bytes], size: int) -> None:
        self.values = values
        self.size = size
        self.ready_at: float | None = None
        self.at = 0
        self.committed = 0
        self.frozen_while_polling: list[int] = []

    def start(self, resume: Offsets, previous: PreviousRun | None,
              save: Callable[[], None] | None) -> None:
        self.ready_at = 0.0

    def poll(self, limit: int) -> Batch[int] | None:
        self.frozen_while_polling.append(gc.get_freeze_count())
        end = min(self.at + min(limit, self.size), len(self.values))
        if end == self.at:
            return None
        batch = Batch(list(range(self.at, end)), self.values[self.at:end])
        self.at = end
        return batch

    def where(self, message: int) -> str:
        return f"#{message}"

    def trace_carrier(self, message: int) -> Mapping[str, str]:
        return {}

    def commit(self, batch: Batch[int], done: int) -> bool:
        self.committed = batch.messages[done - 1] + 1
        return True

    def report(self) -> str:
        return ""

    def at_end(self) -> bool:
        return False

    def offsets(self) -> Offsets:
        return {}

    def close(self) -> None:
        pass


class ListSink:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self.dead: list[PoisonMessage] = []

    def decision(self, message: int, decision: Decision, redelivery: bool,
                 trace: Mapping[str, str] | None = None) -> None:
        self.decisions.append(decision)

    def dead_letter(self, message: int, error: PoisonMessage) -> bool:
        self.dead.append(error)
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def unsettled() -> Iterator[None]:
    """A process that has not settled its memory (`settle_memory`, which a service test
    in the same process may have done): the hook freezing survivors is out for the test."""
    hooked = _freeze_survivors in gc.callbacks
    if hooked:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    try:
        yield
    finally:
        if hooked:
            gc.callbacks.append(_freeze_survivors)


@pytest.mark.usefixtures("unsettled")
def test_the_loop_decides_in_order_and_keeps_the_collector_off_the_state() -> None:
    events = [{k: v for k, v in e.items() if k != "label"}
              for e in generate_transfers(2500, 6)]
    values = [orjson.dumps(e) for e in events]
    values.insert(1000, b"not json")
    source, sink = ListSource(values, 300), ListSink()
    settings: CommonSettings[Any] = CommonSettings(source="in", sink="out",
                                                   max_events=len(values))
    before = gc.get_freeze_count()
    loop = StreamLoop(Engine.from_config(None), settings, lambda _m: source, lambda: sink)
    stats = loop.run()
    assert stats.decided == len(events) and stats.dead_lettered == 1
    assert source.committed == len(values)
    alone = Engine.from_config(None)
    assert [d.features for d in sink.decisions] == [
        alone.evaluate("transfer", e).features for e in events]
    assert len(sink.dead) == 1 and sink.dead[0].__traceback__ is None
    assert min(source.frozen_while_polling) > before  # the state is frozen meanwhile
    assert gc.get_freeze_count() == before  # and given back to the collector after


def test_the_loop_in_a_settled_process_leaves_its_survivors_frozen() -> None:
    """After `settle_memory` (a service in the same process) the loop keeps the process's
    setting: the hook stays and what it froze stays frozen."""
    settled_before = _freeze_survivors in gc.callbacks
    settle_memory()
    try:
        before = gc.get_freeze_count()
        events = [{k: v for k, v in e.items() if k != "label"}
                  for e in generate_transfers(500, 7)]
        source, sink = ListSource([orjson.dumps(e) for e in events], 100), ListSink()
        settings: CommonSettings[Any] = CommonSettings(source="in", sink="out",
                                                       max_events=len(events))
        StreamLoop(Engine.from_config(None), settings, lambda _m: source, lambda: sink).run()
        assert len(sink.decisions) == len(events)
        assert _freeze_survivors in gc.callbacks
        assert gc.get_freeze_count() >= before
    finally:
        if not settled_before:  # leave the process as it was
            gc.callbacks.remove(_freeze_survivors)
            gc.unfreeze()
