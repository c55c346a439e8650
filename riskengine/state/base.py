"""What the engine asks of a state backend (in memory: `riskengine.state.memory`; Redis:
`riskengine.state.redis.backend`). The engine is given one; everything that differs
between runtimes about state — idempotency, LSNs, the scene clock, feature and pattern
state, persistence — lives behind these two protocols, and every backend decides through
`SceneRuntime.decide`.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Protocol

from riskengine.decision import Decision
from riskengine.lists import Lists
from riskengine.scene import SceneRuntime


class SceneState(Protocol):
    """One scene's state: decides parsed events."""

    def evaluate(self, event: dict[str, Any], started: float, clock: Hashable) -> Decision:
        """Decide one parsed event (`started`: the `perf_counter()` its latency counts
        from; `clock`: its clock domain, see `Engine.evaluate`)."""
        ...

    def evaluate_many(self, events: list[dict[str, Any]], clock: Hashable) -> list[Decision]:
        """Decide parsed events in order."""
        ...


class StateBackend(Protocol):
    """Where an engine keeps its state."""

    shared: bool
    """True when the state lives outside the process (several processes share it)."""

    def bind(self, runtimes: Mapping[str, SceneRuntime], lists: Lists
             ) -> Mapping[str, SceneState]:
        """Prepare the state of every scene; called once by the engine."""
        ...

    @property
    def lsn(self) -> int:
        """The LSN of this process's last new decision."""
        ...

    def use_lists(self, lists: Lists) -> None:
        """Read lists from `lists` from now on (feature `where` filters included)."""
        ...

    def entity(self, scene: str, field: str, value: Any) -> tuple[int | None, dict[str, Any]]:
        """See `Engine.entity`."""
        ...

    def drop_clock(self, clock: Hashable) -> None:
        """Forget the state of clock domain `clock` (a partition no longer read here)."""
        ...

    def clock(self, scene: str) -> int | None:
        """See `Engine.clock`."""
        ...

    def stats(self) -> dict[str, Any]:
        """Per scene: what the backend counts."""
        ...

    def snapshot(self, path: str | os.PathLike[str]) -> Path:
        """Write the state to `path` (a backend whose state is elsewhere refuses)."""
        ...

    def restore(self, path: str | os.PathLike[str]) -> None:
        """Load a snapshot written by `snapshot`."""
        ...

    def close(self) -> None:
        """Release what the backend holds (connections)."""
        ...
