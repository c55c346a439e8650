"""Hypothesis streams against the oracle: bursts, ties, disorder, duplicates, nulls.

Windows and lateness are a few milliseconds long so that short generated streams keep
landing on the boundaries: exactly W apart, exactly L behind, a key idle for exactly
L + Wmax, a tile edge.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle import Oracle
from tests.streams import BASE_TS, decision_view, run_against_oracle, scene_config

LATENESS, LATENESS_MS = "15ms", 15

HISTORY_FEATURES: list[Any] = [
    "count(a.history,10ms)",
    "count(a.history,50ms)",
    "sum(v#a.history,10ms)",
    "sum(v#a.history,50ms)",
    "avg(v#a.history,50ms)",
    "min(v#a.history,10ms)",
    "max(v#a.history,50ms)",
    "stddev(v#a.history,50ms)",
    "count_distinct(v#a.history,50ms)",
    "first(v#a.history,10ms)",
    "last(v#a.history,50ms)",
    {"name": "x_sum", "func": "sum", "target": "v", "by": ["a"], "window": "50ms",
     "where": "c == 'x'"},
    "sum(v#a+b.history,20ms)",
    "count(b.history,20ms)",
    "last(a#b.history,20ms)",
]
TILED_FEATURES: list[Any] = [
    "count(a.history,10ms)",
    {"name": "tiled_n", "func": "count", "by": ["b"], "window": "40ms", "kind": "window",
     "hop": "10ms"},
    {"name": "tiled_sum", "func": "sum", "target": "v", "by": ["a"], "window": "40ms",
     "kind": "window", "hop": "10ms"},
    {"name": "tiled_distinct", "func": "count_distinct", "target": "v", "by": ["a"],
     "window": "30ms", "kind": "window", "hop": "10ms"},
]

TILED_MORE_FEATURES: list[Any] = [
    # every function on tiled windows; filters; two windows in one buffer; a composite key
    {"name": "t_avg", "func": "avg", "target": "v", "by": ["a"], "window": "40ms",
     "kind": "window", "hop": "10ms"},
    {"name": "t_avg_long", "func": "avg", "target": "v", "by": ["a"], "window": "60ms",
     "kind": "window", "hop": "10ms"},
    {"name": "t_stddev", "func": "stddev", "target": "v", "by": ["a"], "window": "40ms",
     "kind": "window", "hop": "10ms"},
    {"name": "t_n_x", "func": "count", "by": ["b"], "window": "30ms", "kind": "window",
     "hop": "10ms", "where": "c == 'x'"},
    {"name": "t_sum_x", "func": "sum", "target": "v", "by": ["b"], "window": "30ms",
     "kind": "window", "hop": "10ms", "where": "c == 'x'"},
    {"name": "t_n_pair", "func": "count", "by": ["a", "b"], "window": "40ms",
     "kind": "window", "hop": "20ms"},
    {"name": "t_n_y", "func": "count", "by": ["a"], "window": "20ms", "kind": "window",
     "hop": "10ms", "where": "c == 'y'"},
    {"name": "t_n_y_long", "func": "count", "by": ["a"], "window": "50ms",
     "kind": "window", "hop": "10ms", "where": "c == 'y'"},
    {"name": "t_max", "func": "max", "target": "v", "by": ["b"], "window": "40ms",
     "kind": "window", "hop": "10ms"},
    {"name": "t_min", "func": "min", "target": "v", "by": ["b"], "window": "40ms",
     "kind": "window", "hop": "10ms"},
    {"name": "t_first", "func": "first", "target": "v", "by": ["a", "b"], "window": "30ms",
     "kind": "window", "hop": "10ms"},
    {"name": "t_last", "func": "last", "target": "v", "by": ["a", "b"], "window": "30ms",
     "kind": "window", "hop": "10ms"},
]

ABSENT = object()
STEPS = [-60, -40, -20, -16, -15, -14, -5, -1, 0, 0, 0, 1, 5, 9, 10, 11, 20, 40, 50, 65,
         66, 100, 1000]
VALUES: list[Any] = [None, ABSENT, 0, 1, 2, -1, 0.1, 0.2, 1e-7, 2.5e-6, 1.0, 123456.789,
                     -0.5, 1000]


@st.composite
def event_streams(draw: st.DrawFn, max_size: int = 40) -> list[dict[str, Any]]:
    size = draw(st.integers(1, max_size))
    events: list[dict[str, Any]] = []
    t = BASE_TS
    for i in range(size):
        dup = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(0, 10_000)))
        if dup is not None and events and draw(st.booleans()):
            events.append(copy.deepcopy(events[dup % len(events)]))  # same content
            continue
        burst = draw(st.booleans())
        t = max(BASE_TS, t + draw(st.sampled_from([0, 0, 1] if burst else STEPS)))
        eid = events[dup % len(events)]["event_id"] if dup is not None and events else f"h{i}"
        ev: dict[str, Any] = {"event_id": eid, "timestamp": t}
        for name, choices in (("a", ["k1", "k1", "k2", None, ABSENT]),
                              ("b", ["x", "y", None, ABSENT]),
                              ("v", VALUES)):
            value = draw(st.sampled_from(choices))
            if value is not ABSENT:
                ev[name] = value
        ev["c"] = draw(st.sampled_from(["x", "y"]))
        events.append(ev)
    return events


def make_engine(config: dict[str, Any]) -> Any:
    from riskengine import Engine  # imported here: a missing engine fails these tests only

    return Engine.from_config(config)


@settings(max_examples=300, deadline=None)
@given(event_streams())
def test_history_features_match_oracle(events: list[dict[str, Any]]) -> None:
    engine = make_engine(scene_config(HISTORY_FEATURES, LATENESS))
    run_against_oracle(engine, "s", events, Oracle(HISTORY_FEATURES, LATENESS_MS))


@settings(max_examples=200, deadline=None)
@given(event_streams())
def test_tiled_features_match_oracle(events: list[dict[str, Any]]) -> None:
    engine = make_engine(scene_config(TILED_FEATURES, LATENESS))
    run_against_oracle(engine, "s", events, Oracle(TILED_FEATURES, LATENESS_MS))


@settings(max_examples=200, deadline=None)
@given(event_streams())
def test_every_tiled_function_matches_oracle(events: list[dict[str, Any]]) -> None:
    engine = make_engine(scene_config(TILED_MORE_FEATURES, LATENESS))
    run_against_oracle(engine, "s", events, Oracle(TILED_MORE_FEATURES, LATENESS_MS))


RULES = [
    {"id": "many", "when": 'features["count(a.history,50ms)"] >= 3', "score": 60,
     "reason": "many"},
    {"id": "big", "when": 'features["sum(v#a.history,50ms)"] > 100', "action": "reject",
     "reason": "big"},
]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(event_streams(max_size=30), st.integers(0, 30))
def test_restart_equals_uninterrupted(events: list[dict[str, Any]], cut: int) -> None:
    cut = min(cut, len(events))
    config = scene_config(HISTORY_FEATURES + TILED_FEATURES[1:] + TILED_MORE_FEATURES,
                          LATENESS, rules=RULES,
                          policy={"review_at": 50, "reject_at": 80})
    uninterrupted = make_engine(config)
    expected = [decision_view(uninterrupted.evaluate("s", dict(e))) for e in events]
    first = make_engine(config)
    for e in events[:cut]:
        first.evaluate("s", dict(e))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "engine.snapshot"
        first.snapshot(str(path))
        restored = make_engine(config)
        restored.restore(str(path))
    for i in range(cut, len(events)):
        got = decision_view(restored.evaluate("s", dict(events[i])))
        assert got == expected[i], (f"event #{i} {events[i]!r} after a restart at #{cut}: "
                                    f"{got!r} != uninterrupted {expected[i]!r}")
