"""Tiled windows whose features all count: a tile is the number of its entries.

The common tiled feature is a count over a long window ("has this account paid this
receiver in 30 days?"), and a key of a payer–receiver pair starts a tile with most of
its events. `CountTiles` is a `TiledBuffer` (same windows, raw entries, trimming and
saved form) that keeps each tile as an int and each window's running total as an int,
where the general buffer keeps a list of aggregator objects per tile and window: a new
tile is a dict slot, not three objects. Its snapshot form is the general buffer's, so a
snapshot loads into either.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Any

from riskengine.features.aggregators import CountAgg, Entry
from riskengine.features.plan import BufferPlan
from riskengine.features.tiles import NO_ANCHOR, Lazy, TiledBuffer

__all__ = ["CountTiles", "counts_only"]

_INF = float("inf")


def counts_only(plan: BufferPlan) -> bool:
    """Whether every feature of a tiled buffer counts."""
    return all(cls is CountAgg for window in plan.windows for cls, _ in window.agg_types)


class CountTiles(TiledBuffer):
    """A `TiledBuffer` of counts: `tiles` maps a tile to its number of entries and
    `running` holds each window's total over its tiles."""

    __slots__ = ()
    tiles: dict[int, int]  # type: ignore[assignment]
    running: list[int]  # type: ignore[assignment]

    def __init__(self, plan: BufferPlan) -> None:  # no aggregators: not the base's
        self.plan = plan
        self.tiles = {}
        self.order = []
        self.raw = []
        self.anchor = NO_ANCHOR
        self.starts = [0] * len(plan.windows)
        self.running = [0] * len(plan.windows)

    @classmethod
    def first(cls, plan: BufferPlan, lazy: Lazy) -> CountTiles:
        buffer = cls(plan)
        anchor, entry = lazy
        if entry is not None:
            index = entry[0] // plan.hop_ms
            buffer.tiles[index] = 1
            buffer.order.append(index)
            buffer.raw.append(entry)
            buffer.running = [1] * len(plan.windows)
        buffer.anchor = anchor
        return buffer

    def step(self, entry: Entry, passes: bool, out: dict[str, Any]) -> None:
        t = entry[0]
        hop = self.plan.hop_ms
        order, tiles, running, starts = self.order, self.tiles, self.running, self.starts
        if passes:
            index = t // hop
            if order and order[-1] == index:
                tiles[index] += 1
            else:  # in order: the newest tile
                tiles[index] = 1
                order.append(index)
            self.raw.append(entry)
        for i, window in enumerate(self.plan.windows):
            first_tile = (t - window.window_ms) // hop
            pos, total = starts[i], running[i]
            while pos < len(order) and order[pos] < first_tile:
                total -= tiles[order[pos]]
                pos += 1
            starts[i] = pos
            running[i] = total = total + passes
            for output in window.outputs:
                out[output.name] = total
        self.anchor = t

    def compute(self, entry: Entry, passes: bool, floor_ms: int | None,
                out: dict[str, Any]) -> None:
        t = entry[0]
        hop = self.plan.hop_ms
        own = t // hop
        order, tiles = self.order, self.tiles
        for window in self.plan.windows:
            first_tile = (t - window.window_ms) // hop
            if floor_ms is None:
                last_whole = own - 1
            else:
                first_tile = max(first_tile, (floor_ms - window.window_ms) // hop)
                last_whole = own
            lo = bisect_left(order, first_tile)
            hi = bisect_right(order, last_whole)
            total = sum(tiles[index] for index in order[lo:hi]) + passes
            if floor_ms is None:  # the entries of its own tile up to its time
                total += (bisect_right(self.raw, (t, _INF))
                          - bisect_right(self.raw, (own * hop - 1, _INF)))
            for output in window.outputs:
                out[output.name] = total

    def insert(self, entry: Entry) -> None:
        t = entry[0]
        hop = self.plan.hop_ms
        index = t // hop
        tiles = self.tiles
        created = index not in tiles
        tiles[index] = tiles.get(index, 0) + 1
        if created:
            insort(self.order, index)
        pos_new = bisect_left(self.order, index)
        self.raw.insert(bisect_right(self.raw, (entry[0], entry[1])), entry)  # by (t, LSN)
        for i, window in enumerate(self.plan.windows):
            if created and pos_new < self.starts[i]:
                self.starts[i] += 1
            if index >= (self.anchor - window.window_ms) // hop:
                self.running[i] += 1

    @property
    def retained(self) -> int:
        return len(self.raw) + len(self.tiles) * len(self.plan.windows[0].agg_types)

    def dump(self) -> dict[str, Any]:
        """The general buffer's saved form (a `CountAgg` per count)."""
        plan = self.plan

        def counted(n: int) -> list[list[CountAgg]]:
            parts: list[list[CountAgg]] = plan.fresh_parts()  # type: ignore[assignment]
            for aggs in parts:
                for agg in aggs:
                    agg.n = n
            return parts

        running = counted(0)
        for aggs, total in zip(running, self.running, strict=True):
            for agg in aggs:
                agg.n = total
        return {"raw": list(self.raw), "anchor": self.anchor,
                "tiles": {index: counted(n) for index, n in self.tiles.items()},
                "order": list(self.order), "starts": list(self.starts),
                "running": running}

    @classmethod
    def load(cls, plan: BufferPlan, data: dict[str, Any]) -> CountTiles:
        buffer = cls(plan)
        buffer.raw = list(data["raw"])
        buffer.anchor = data["anchor"]
        buffer.tiles = {index: parts[0][0].n for index, parts in data["tiles"].items()}
        buffer.order = list(data["order"])
        buffer.starts = list(data["starts"])
        buffer.running = [aggs[0].n for aggs in data["running"]]
        return buffer
