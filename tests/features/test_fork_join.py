"""Fork and join (riskengine/batch/fork.py) equal the whole engine, event for event: the
key groups computed apart with the scene clock from one ordered pass."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given, settings

from riskengine import Engine
from riskengine.batch.fork import KeyGroups, Sequencer, fork_replay, key_hash
from riskengine.config import ProjectConfig, load_config
from riskengine.exceptions import EventValidationError
from riskengine.synth import generate_transfers
from tests.engine.test_experiment import example_with, experiment
from tests.features.test_oracle_hypothesis import (
    HISTORY_FEATURES,
    LATENESS,
    RULES,
    TILED_FEATURES,
    event_streams,
)
from tests.hostile import HOSTILE_SEEDS, hostile_config, hostile_stream
from tests.streams import scene_config


def view(decision: Any) -> dict[str, Any]:
    out = decision.to_dict()
    out.pop("latency_ms")
    return dict(out)


def both(config: dict[str, Any] | ProjectConfig, scene: str, events: list[dict[str, Any]],
         partitions: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    whole = Engine.from_config(config)
    parsed = []
    for event in events:
        try:
            parsed.append(whole.scene(scene).parse(event))
        except EventValidationError:
            continue
    expected = [view(whole.evaluate(scene, dict(e))) for e in parsed]
    forked = Engine.from_config(config)
    runtime = forked.scene(scene)
    got = [view(d) for d in fork_replay(runtime, forked.lists, parsed, partitions)]
    return expected, got


@pytest.mark.parametrize("seed", HOSTILE_SEEDS)
def test_hostile_streams_forked_equal_the_engine(seed: int) -> None:
    events, _ = hostile_stream(seed, 2_500, prefix="f")
    expected, got = both(hostile_config(), "s", events)
    assert sum(e["late"] for e in expected) > 100
    assert sum(e["duplicate"] for e in expected) > 50
    assert any(k.startswith("pattern:") and v for e in expected
               for k, v in e["features"].items())
    assert got == expected


@settings(max_examples=80, deadline=None)
@given(event_streams())
def test_hypothesis_history_streams_forked_equal_the_engine(events: list[dict[str, Any]]
                                                            ) -> None:
    expected, got = both(scene_config(HISTORY_FEATURES, LATENESS, rules=RULES), "s", events)
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(event_streams())
def test_hypothesis_tiled_streams_forked_equal_the_engine(events: list[dict[str, Any]]
                                                          ) -> None:
    expected, got = both(scene_config(TILED_FEATURES, LATENESS), "s", events, partitions=2)
    assert got == expected


def test_the_example_config_forked_equals_the_engine() -> None:
    events = [{k: v for k, v in e.items() if k != "label"}
              for e in generate_transfers(3_000, seed=5)]
    expected, got = both(load_config(None), "transfer", events)
    assert any(e["decision"] != "accept" for e in expected)
    assert got == expected


def test_an_experiment_forked_equals_the_engine_arm_for_arm() -> None:
    events = [{k: v for k, v in e.items() if k != "label"}
              for e in generate_transfers(2_000, seed=6)]
    expected, got = both(example_with(experiment()), "transfer", events)
    assert {e["arm"] for e in expected} == {"champion", "strict", "loose"}
    assert all(set(e["arms"]) | {e["arm"]} == {"champion", "strict", "loose", "watch"}
               for e in expected if not e["duplicate"])
    assert got == expected


def test_groups_are_one_per_by_then_one_per_pattern() -> None:
    engine = Engine.from_config(hostile_config())
    groups = KeyGroups(engine.scene("s"))
    bys = [by for by, _ in groups.features]
    assert len(bys) == len(set(bys)) and len(groups) == len(bys) + len(groups.patterns)
    event = {field: "x" for by in groups.by for field in by}
    assert [g for g, _ in groups.fork(event)] == list(range(len(groups)))
    assert list(groups.fork({})) == []


def test_the_sequencer_gives_lsn_clock_late_and_duplicates() -> None:
    engine = Engine.from_config(scene_config(["count(a.history,10ms)"], "5ms"))
    seq = Sequencer(engine.scene("s"))
    first = seq.step("e1", 100)
    assert (first.lsn, first.late, first.duplicate_of) == (1, False, 0)
    assert seq.step("e2", 94).late and seq.clock == 100      # 94 < 100 - 5
    assert not seq.step("e3", 95).late                         # exactly L behind
    again = seq.step("e1", 100)
    assert again.duplicate_of == 1 and seq.lsn == 3            # nothing taken
    assert seq.step("e4", 120).clock == 100 and seq.clock == 120


def test_equal_keys_hash_alike_in_every_process() -> None:
    assert key_hash(1) == key_hash(1.0) == key_hash(True)
    assert key_hash(("a", 1)) == key_hash(("a", 1.0))
    assert key_hash("acct-1") == zlib.crc32(b"acct-1")
    assert key_hash("acct-1") != key_hash("acct-2")
