"""Fork and join: a scene's events decided by key groups computed apart.

The seed's architecture forks each event to one computation per key, then joins the
results back by the event's LSN. docs/semantics.md makes that exact: whether an event is
stored on a key, and what a key keeps, depends only on the key's own events and on the
scene clock G, which one ordered pass over the events gives (`Sequencer`). So:

1. `Sequencer` — in LSN order, each accepted event gets its LSN, the clock G before it, its
   late flag, or the LSN of the decision it duplicates (the engine's own idempotency
   records, riskengine/state/idempotency.py). Cheap: an id and a time per event.
2. `KeyGroups.fork` — each event that is not a duplicate goes to one task per key group:
   per distinct `by` of the scene's features, and per sequence pattern, when the event
   has that key (a null key's features are null and its pattern false, with no state).
3. `GroupRunner` — the tasks of any set of keys, in LSN order, computed by the engine's own
   feature and pattern code (`SceneFeatures.compute_at`, `ScenePatterns`) with G from step 1.
4. `join` — the groups' values of one event, then `SceneRuntime.decide`: lists, rules,
   policy, the one decision path of every runtime.

`fork_replay` runs the four steps in one process (a reference for the Spark runner, which
runs step 3 per partition of a shuffle by key, and tests). The in-memory `max_entities`
cap is not applied to forked groups: a partition holds only its own keys, so a cap would
evict other keys than the whole engine does; `degraded` is therefore never set here.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from time import perf_counter
from typing import Any

from riskengine.decision import Decision
from riskengine.features.dsl import FeatureSpec
from riskengine.features.engine import SceneFeatures
from riskengine.features.history import NEVER
from riskengine.lists import Lists
from riskengine.patterns import ScenePatterns
from riskengine.scene import SceneRuntime
from riskengine.state.idempotency import RememberedIds

__all__ = ["NEVER", "GroupRunner", "KeyGroups", "Sequencer", "Step", "fork_replay",
           "key_hash"]

_UNCAPPED = sys.maxsize


class Step:
    """What the ordered pass says of one event: a new decision (`lsn`, the clock before
    it, `late`) or a duplicate of the decision with LSN `duplicate_of`."""

    __slots__ = ("clock", "duplicate_of", "late", "lsn")

    def __init__(self, lsn: int, clock: int, late: bool, duplicate_of: int = 0) -> None:
        self.lsn = lsn
        self.clock = clock
        self.late = late
        self.duplicate_of = duplicate_of


class Sequencer:
    """The ordered pass of a forked runtime, for one scene and one clock domain: LSNs,
    the scene clock G, late flags and idempotency, exactly as the in-memory state takes
    them (riskengine/state/memory.py `MemoryPart.evaluate`)."""

    def __init__(self, runtime: SceneRuntime, lsn: int = 0, clock: int = NEVER) -> None:
        self.lateness_ms = runtime.config.lateness_ms
        self.ids = RememberedIds(runtime.idempotency_horizon_ms, runtime.idempotency_max)
        self.lsn = lsn
        self.clock = clock
        """G after the last event (NEVER before the first)."""

    def step(self, event_id: str, t: int) -> Step:
        """Take one valid event (its id and time) in arrival order."""
        clock = self.clock
        ids = self.ids
        previous = ids.records.get(event_id)
        if previous is not None and ids.fresh(previous, clock):
            return Step(previous[1], clock, False, previous[1])
        self.lsn = lsn = self.lsn + 1
        late = clock != NEVER and t < clock - self.lateness_ms
        if not late and t > clock:
            self.clock = t
        ids.remember(event_id, (t, lsn), previous is not None, self.clock)
        return Step(lsn, clock, late)


def key_hash(key: Any) -> int:
    """A hash of a key that equal keys share in every process (Python's `hash` of a str
    changes per process): text and bytes by CRC-32, numbers by `hash` (which equal numbers
    share: ``1``, ``1.0`` and ``True`` are one key, as in a dict), tuples by their items."""
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, bytes):
        return zlib.crc32(key)
    if isinstance(key, tuple):
        value = 0x345678
        for item in key:
            value = (value * 1_000_003 ^ key_hash(item)) & 0xFFFFFFFF
        return value
    if isinstance(key, int | float):
        return hash(key) & 0xFFFFFFFF
    return zlib.crc32(repr(key).encode("utf-8", "surrogatepass"))


class KeyGroups:
    """The key groups of a scene: one per distinct `by` of its features (in the order they
    first appear), then one per sequence pattern."""

    def __init__(self, runtime: SceneRuntime) -> None:
        self.runtime = runtime
        config = runtime.config
        bys: dict[tuple[str, ...], list[FeatureSpec]] = {}
        for spec in config.features:
            bys.setdefault(spec.by, []).append(spec)
        self.features: tuple[tuple[tuple[str, ...], tuple[FeatureSpec, ...]], ...] = tuple(
            (by, tuple(specs)) for by, specs in bys.items())
        self.patterns = config.patterns
        self.by: tuple[tuple[str, ...], ...] = (
            *(by for by, _ in self.features), *(p.by for p in self.patterns))
        self.template: dict[str, Any] = {
            **{spec.name: None for spec in config.features},
            **{key: False for key in runtime.patterns.keys}}
        """The values of an event no group computed: null features, false patterns."""

    def __len__(self) -> int:
        return len(self.by)

    def fork(self, event: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
        """(group, key) of each group the event has a key in (no field of `by` null)."""
        for group, by in enumerate(self.by):
            if len(by) == 1:
                key = event.get(by[0])
                if key is not None:
                    yield group, key
            else:
                values = tuple(event.get(f) for f in by)
                if None not in values:
                    yield group, values


class GroupRunner:
    """The state of the keys of some groups (a partition's), computed in LSN order."""

    def __init__(self, groups: KeyGroups, lists: Lists) -> None:
        self.groups = groups
        self.lists = lists
        self._state: dict[int, SceneFeatures | ScenePatterns] = {}

    def _group(self, group: int) -> SceneFeatures | ScenePatterns:
        state = self._state.get(group)
        if state is None:
            runtime = self.groups.runtime
            config = runtime.config
            features = self.groups.features
            if group < len(features):
                state = SceneFeatures(features[group][1], config.lateness_ms, _UNCAPPED,
                                      runtime.compile_where, self.lists)
            else:
                spec = self.groups.patterns[group - len(features)]
                state = ScenePatterns((spec,), config.lateness_ms, runtime.where_names)
            self._state[group] = state
        return state

    def dump(self) -> dict[int, Any]:
        """Each group's state (`SceneFeatures.dump` or `ScenePatterns.dump`), by group."""
        return {group: state.dump() for group, state in self._state.items()}

    def run(self, group: int, event: dict[str, Any], lsn: int, clock: int, late: bool
            ) -> tuple[dict[str, Any], bool]:
        """The group's values for one event (and whether they are degraded); `clock` is
        G before the event, from the `Sequencer`."""
        state = self._group(group)
        if isinstance(state, SceneFeatures):
            values, computed_late, degraded = state.compute_at(event, lsn, clock)
            if computed_late != late:  # one G, one answer: anything else is a bug
                raise AssertionError(f"late flag differs for LSN {lsn}")
            return values, degraded
        t = event["timestamp"]
        after = clock if late or (clock != NEVER and t <= clock) else t
        out: dict[str, Any] = {}
        state.observe(event, lsn, late, self.lists, after, out)
        return out, False


def join(runtime: SceneRuntime, template: dict[str, Any], event: dict[str, Any], lsn: int,
         late: bool, parts: Iterable[tuple[dict[str, Any], bool]], lists: Lists,
         started: float) -> Decision:
    """One event's decision from its groups' values (any order)."""
    values = template.copy()
    degraded = False
    for part, part_degraded in parts:
        values.update(part)
        degraded = degraded or part_degraded
    return runtime.decide(event, lsn, values, late, degraded, lists, started)[0]


def fork_replay(runtime: SceneRuntime, lists: Lists, events: Iterable[dict[str, Any]],
                partitions: int = 3) -> list[Decision]:
    """Decide parsed `events` (in arrival order) by fork and join in this process, the keys
    spread over `partitions` runners as a shuffle would. A duplicate's decision is the
    one it duplicates, marked `duplicate` (as `Engine.evaluate` returns it)."""
    groups = KeyGroups(runtime)
    sequencer = Sequencer(runtime)
    runners = [GroupRunner(groups, lists) for _ in range(partitions)]
    steps: list[tuple[dict[str, Any], Step]] = []
    outputs: dict[int, list[tuple[dict[str, Any], bool]]] = {}
    for event in events:
        step = sequencer.step(event["event_id"], event["timestamp"])
        steps.append((event, step))
        if step.duplicate_of:
            continue
        parts = outputs[step.lsn] = []
        for group, key in groups.fork(event):
            runner = runners[(group * 31 + key_hash(key)) % partitions]
            parts.append(runner.run(group, event, step.lsn, step.clock, step.late))
    decided: dict[int, Decision] = {}
    decisions = []
    for event, step in steps:
        if step.duplicate_of:
            decisions.append(replace(decided[step.duplicate_of], duplicate=True))
            continue
        decision = join(runtime, groups.template, event, step.lsn, step.late,
                        outputs[step.lsn], lists, perf_counter())
        decided[step.lsn] = decision
        decisions.append(decision)
    return decisions
