"""Operations on the `window` buffers of an entity (`riskengine.features.tiles`), as the
general path (`SceneFeatures.compute_general`), snapshots and statistics use them."""

from __future__ import annotations

from typing import Any

from riskengine.features.aggregators import Entry
from riskengine.features.plan import BufferPlan
from riskengine.features.tilecounts import CountTiles, counts_only
from riskengine.features.tiles import UNTOUCHED, TiledBuffer

__all__ = ["TiledOps"]


class TiledOps:
    """Operations on one `window` buffer of an entity: at slot `base`, a `TiledBuffer`
    (a `CountTiles` when all its features count) or its lazy form (see
    `riskengine.features.tiles`), built on the first touch that needs it."""

    __slots__ = ("at", "kind", "plan")

    def __init__(self, plan: BufferPlan, base: int) -> None:
        self.plan = plan
        self.at = base
        self.kind: type[TiledBuffer] = CountTiles if counts_only(plan) else TiledBuffer

    def init_source(self, env: dict[str, Any], prefix: str) -> str:
        env[f"{prefix}untouched"] = UNTOUCHED
        return f"{prefix}untouched"

    def buffer(self, e: list[Any]) -> TiledBuffer:
        """The entity's buffer, built now if it was lazy."""
        buffer = e[self.at]
        if buffer.__class__ is tuple:
            buffer = e[self.at] = self.kind.first(self.plan, buffer)
        return buffer  # type: ignore[no-any-return]

    def _peek(self, e: list[Any]) -> TiledBuffer:
        """The entity's buffer, or what its lazy form stands for (the entity unchanged)."""
        buffer = e[self.at]
        return self.kind.first(self.plan, buffer) if buffer.__class__ is tuple else buffer

    def anchor(self, e: list[Any]) -> int:
        buffer = e[self.at]
        return buffer[0] if buffer.__class__ is tuple else buffer.anchor  # type: ignore[no-any-return]

    def step(self, e: list[Any], entry: Entry, passes: bool, out: dict[str, Any]) -> None:
        self.buffer(e).step(entry, passes, out)

    def compute(self, e: list[Any], entry: Entry, passes: bool, floor_ms: int | None,
                out: dict[str, Any]) -> None:
        self._peek(e).compute(entry, passes, floor_ms, out)

    def insert(self, e: list[Any], entry: Entry) -> None:
        self.buffer(e).insert(entry)

    def trim(self, e: list[Any], horizon: int, maxts: int, lateness_ms: int) -> None:
        buffer = e[self.at]
        if buffer.__class__ is tuple:
            entry = buffer[1]
            hop = self.plan.hop_ms
            if entry is None or entry[0] >= (maxts - lateness_ms) // hop * hop:
                return  # its entry is still in the raw tiles: nothing to trim
            buffer = self.buffer(e)
        buffer.trim(horizon, maxts, lateness_ms)

    def retained(self, e: list[Any]) -> int:
        return self._peek(e).retained

    def dump(self, e: list[Any]) -> tuple[str, dict[str, Any], int]:
        buffer = self._peek(e)
        return ("window", buffer.dump(), buffer.anchor)

    def load(self, e: list[Any], saved: tuple[Any, ...]) -> None:
        e[self.at] = self.kind.load(self.plan, saved[1])
