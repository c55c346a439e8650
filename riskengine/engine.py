"""Engine: a project's scenes, their lists and rulesets, and a state backend.

validate → idempotency → LSN → features (forked by key) → patterns → lists → rules →
decision. The scenes (`SceneRuntime`, riskengine/scene.py) are prepared when the config
loads and hold the one decision path; the state backend (riskengine/state/) holds
everything that differs between runtimes — in memory by default, or in Redis:

    engine = Engine.from_config("project.yaml")                      # in memory
    engine = Engine.from_config("project.yaml",
                                state=RedisState.connect("redis://10.0.0.5:6379/0"))
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from time import perf_counter
from typing import Any

from riskengine.config import ProjectConfig, load_config
from riskengine.decision import Decision
from riskengine.exceptions import UnknownSceneError
from riskengine.lists import Lists, ListStore
from riskengine.rules.ruleset import Ruleset
from riskengine.scene import MAX_BATCH, SceneRuntime, parse_batch
from riskengine.state.base import SceneState, StateBackend
from riskengine.state.memory import MemoryState

__all__ = ["MAX_BATCH", "Engine", "SceneRuntime", "parse_batch"]


class Engine:
    """Decision engine over a project config; state in memory unless `state` says
    otherwise.

    >>> engine = Engine.from_config(None)
    >>> d = engine.evaluate("transfer", {"timestamp": 1_700_000_000_000, "pay_account": "A",
    ...                                  "rcv_account": "B", "amount": 10.0})
    >>> d.decision, d.features["count(pay_account.history,1h)"]
    ('accept', 1)
    """

    def __init__(self, config: ProjectConfig, state: StateBackend | None = None) -> None:
        self.config = config
        self.list_store = ListStore.from_config(config.lists, config.base_dir)
        """The lists of the config (kept in this process)."""
        self.lists: Lists = self.list_store
        """The lists deciding reads (`use_lists` puts a shared store here)."""
        self._runtimes = {name: SceneRuntime(sc, self.lists)
                          for name, sc in config.scenes.items()}
        self.state: StateBackend = state if state is not None else MemoryState()
        states = self.state.bind(self._runtimes, self.lists)
        self._scenes: dict[str, tuple[SceneRuntime, SceneState]] = {
            name: (rt, states[name]) for name, rt in self._runtimes.items()}

    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | Mapping[str, Any] | ProjectConfig
                    | None = None, *, state: StateBackend | None = None) -> Engine:
        """Build from a YAML path, a mapping, a `ProjectConfig`, or None (the example)."""
        return cls(load_config(source), state)

    @property
    def shared_state(self) -> bool:
        """True when the state lives outside the process (Redis)."""
        return self.state.shared

    @property
    def scenes(self) -> tuple[str, ...]:
        return tuple(self._runtimes)

    @property
    def lsn(self) -> int:
        """The LSN of this process's last new decision."""
        return self.state.lsn

    def scene(self, name: str) -> SceneRuntime:
        runtime = self._runtimes.get(name)
        if runtime is None:
            raise UnknownSceneError(
                f"unknown scene {name[:100]!r}; this project has {', '.join(self._runtimes)}")
        return runtime

    def ruleset(self, scene: str) -> Ruleset:
        return self.scene(scene).ruleset

    def activate_ruleset(self, scene: str, rules: Iterable[Mapping[str, Any]],
                         policy: Mapping[str, Any], version: str | None = None) -> Ruleset:
        """Compile a new ruleset and make it live in one assignment (all or nothing)."""
        runtime = self.scene(scene)
        ruleset = Ruleset.build(scene, list(rules), dict(policy), runtime.names, version)
        runtime.ruleset = ruleset
        return ruleset

    def use_lists(self, lists: Lists) -> None:
        """Read lists from `lists` from now on (e.g. a `RedisListStore`): in rules, list
        checks, patterns and feature `where` filters."""
        self.lists = lists
        self.state.use_lists(lists)

    # -- deciding ----------------------------------------------------------------------

    def evaluate(self, scene: str, event: Mapping[str, Any], *, clock: Hashable = None
                 ) -> Decision:
        """Decide one event. Raises `EventValidationError` / `UnknownSceneError`.

        `clock` names the event's clock domain: a stream worker reading several
        partitions passes the partition, so that each keeps its own scene clock G
        (docs/semantics.md); None is the one clock of everything else. Shared state has
        one clock per scene whatever `clock` says."""
        started = perf_counter()
        pair = self._scenes.get(scene)
        if pair is None:
            self.scene(scene)  # raises UnknownSceneError
            raise AssertionError(scene)
        runtime, state = pair
        return state.evaluate(runtime.parse(event), started, clock)

    def evaluate_many(self, scene: str, events: Iterable[Mapping[str, Any]]) -> list[Decision]:
        """Decide events in order. All are validated first: one invalid event refuses the
        batch (the error names its index) and nothing changes. Then one loop decides them
        all; each decision's `latency_ms` is the time spent on that event."""
        runtime = self.scene(scene)
        return self._scenes[scene][1].evaluate_many(parse_batch(runtime, events), None)

    def decide_parsed(self, scene: str, events: list[dict[str, Any]], *,
                      clock: Hashable = None) -> list[Decision]:
        """Decide events that the scene's parser (`scene(s).parse`) already validated, in
        order, in one loop (as `evaluate_many` once it validated the batch), all on the
        clock domain `clock` (see `evaluate`)."""
        self.scene(scene)
        return self._scenes[scene][1].evaluate_many(events, clock)

    def drop_clock(self, clock: Hashable) -> None:
        """Forget the state of clock domain `clock` (a partition no longer read here):
        in memory its keys, remembered ids and clock; shared state keeps one clock."""
        self.state.drop_clock(clock)

    def clock(self, scene: str) -> int | None:
        """The scene clock G (docs/semantics.md) of the one clock domain None: the newest
        time of the scene's events taken on time; None before the first. Raises
        `UnknownSceneError` (and, with shared state, the state's error when it cannot be
        reached)."""
        self.scene(scene)
        return self.state.clock(scene)

    def entity(self, scene: str, field: str, value: Any) -> tuple[int | None, dict[str, Any]]:
        """The current values of the features of `scene` keyed by `field` alone, for the
        entity `value`: `(as_of, {name: value})`, as_of being the scene's event clock
        (None before any event). A string value that looks like an integer also finds an
        entity keyed by that integer. Raises `UnknownSceneError`, or `KeyError` when no
        feature of the scene is keyed by `field` alone (and, with shared state, the
        state's error when it cannot be reached).
        """
        self.scene(scene)
        return self.state.entity(scene, field, value)

    # -- state -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per scene, what the state backend counts (in memory: entities, retained entries
        and remembered event ids, and the keys and entries of its sequence patterns)."""
        return self.state.stats()

    def snapshot(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole state to `path` atomically (in memory; shared state refuses)."""
        return self.state.snapshot(path)

    def restore(self, path: str | os.PathLike[str]) -> Engine:
        """Load a snapshot written by `snapshot` (a trusted file: it is a pickle)."""
        self.state.restore(path)
        return self

    def close(self) -> None:
        """Release the state backend's connections."""
        self.state.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
