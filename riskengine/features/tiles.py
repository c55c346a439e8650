"""Tiled windows (the `window` kind) for long horizons: one partial aggregate per tile.

A tile is `floor(t/H)`. The window of an event at t is `[floor((t − W)/H)·H, t]`.
Invertible functions (count, sum, avg, stddev, count_distinct) keep a running total over
the tiles in the window; min/max/first/last merge the window's tiles when read. Raw
entries are kept only for the tiles an accepted out-of-order event can still fall in
(`≥ floor((maxts − L)/H)`), so such an event sees exactly the events up to its own time.

A key's buffer starts *lazy*: until a second event touches it, the entity slot holds
``(anchor, entry)`` — the time of its one in-order event and that event's entry (None
when it did not pass the filter) — instead of a `TiledBuffer`, which is built from it
(`TiledBuffer.first`) on the next touch. Most keys of a long tiled window over a pair of
fields (payer and receiver) see one event in a while, and a tuple costs a fraction of a
buffer's dict, lists and aggregators to make and to keep.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Any

from riskengine.features.aggregators import Aggregator, Entry
from riskengine.features.plan import BufferPlan

_INF = float("inf")
NO_ANCHOR = -1 << 62
"""The anchor of a buffer that no event has touched."""
Lazy = tuple[int, "Entry | None"]
"""A buffer touched by one in-order event: (its time, its entry or None)."""
UNTOUCHED: Lazy = (NO_ANCHOR, None)


class TiledBuffer:
    __slots__ = ("anchor", "order", "plan", "raw", "running", "starts", "tiles")

    def __init__(self, plan: BufferPlan) -> None:
        self.plan = plan
        self.tiles: dict[int, list[list[Aggregator]]] = {}  # tile → per window → aggs
        self.order: list[int] = []  # tile indexes, sorted
        self.raw: list[Entry] = []  # entries of the recent tiles, sorted by (time, lsn)
        self.anchor = NO_ANCHOR
        self.starts = [0] * len(plan.windows)  # position in `order` of each window's 1st tile
        self.running: list[list[Aggregator]] = plan.fresh_parts()

    @classmethod
    def first(cls, plan: BufferPlan, lazy: Lazy) -> TiledBuffer:
        """The buffer that a lazy one stands for: `step` of its one event (which has
        nothing to slide: it is the only one)."""
        buffer = cls(plan)
        anchor, entry = lazy
        if entry is not None:
            tile = buffer.new_tile(entry[0] // plan.hop_ms)
            buffer.raw.append(entry)
            for running, parts in zip(buffer.running, tile, strict=True):
                for agg, part in zip(running, parts, strict=True):
                    part.add(entry)
                    if agg.invertible:
                        agg.add(entry)
        buffer.anchor = anchor
        return buffer

    def new_tile(self, index: int) -> list[list[Aggregator]]:
        """Open tile `index`, newer than every tile held (an in-order event's)."""
        tile = self.tiles[index] = self.plan.fresh_parts()
        self.order.append(index)
        return tile

    def _fresh(self, window_index: int) -> list[Aggregator]:
        window = self.plan.windows[window_index]
        return [cls(slot) for cls, slot in window.agg_types]

    def _tile(self, index: int) -> list[list[Aggregator]]:
        tile = self.tiles.get(index)
        if tile is None:
            tile = [self._fresh(i) for i in range(len(self.plan.windows))]
            self.tiles[index] = tile
            insort(self.order, index)
        return tile

    def step(self, entry: Entry, passes: bool, out: dict[str, Any]) -> None:
        """In-order, stored event: slide each window to its first tile, add, read."""
        t = entry[0]
        hop = self.plan.hop_ms
        order = self.order
        if passes:
            index = t // hop
            found = self.tiles.get(index)
            tile = self.new_tile(index) if found is None else found  # new: the newest
            self.raw.append(entry)
        for i, window in enumerate(self.plan.windows):
            first_tile = (t - window.window_ms) // hop
            pos = self.starts[i]
            running = self.running[i]
            while pos < len(order) and order[pos] < first_tile:
                for agg, part in zip(running, self.tiles[order[pos]][i], strict=True):
                    if agg.invertible:
                        agg.unmerge(part)
                pos += 1
            self.starts[i] = pos
            if passes:
                for agg, part in zip(running, tile[i], strict=True):
                    part.add(entry)
                    if agg.invertible:
                        agg.add(entry)
            self._read(i, running, pos, out)
        self.anchor = t

    def _read(self, i: int, running: list[Aggregator], pos: int, out: dict[str, Any]) -> None:
        window = self.plan.windows[i]
        merged: list[Aggregator] | None = None
        for output in window.outputs:
            agg = running[output.agg_index]
            if agg.invertible:
                out[output.name] = agg.result()
                continue
            if merged is None:
                merged = self._fresh(i)
                for index in self.order[pos:]:
                    for acc, part in zip(merged, self.tiles[index][i], strict=True):
                        if not acc.invertible:
                            acc.merge(part)
            out[output.name] = merged[output.agg_index].result()

    def compute(self, entry: Entry, passes: bool, floor_ms: int | None,
                out: dict[str, Any]) -> None:
        """Out-of-order or late event: merge complete tiles, plus raw entries of its tile."""
        t = entry[0]
        hop = self.plan.hop_ms
        own = t // hop
        for i, window in enumerate(self.plan.windows):
            first_tile = (t - window.window_ms) // hop
            accs = self._fresh(i)
            if floor_ms is None:
                last_whole = own - 1
            else:
                first_tile = max(first_tile, (floor_ms - window.window_ms) // hop)
                last_whole = own
            lo = bisect_left(self.order, first_tile)
            hi = bisect_right(self.order, last_whole)
            for index in self.order[lo:hi]:
                for acc, part in zip(accs, self.tiles[index][i], strict=True):
                    acc.merge(part)
            if floor_ms is None:
                start = bisect_right(self.raw, (own * hop - 1, _INF))
                end = bisect_right(self.raw, (t, _INF))
                for old in self.raw[start:end]:
                    for acc in accs:
                        acc.add(old)
            if passes:  # a late event's whole tile may hold later entries
                for acc in accs:
                    _add_anywhere(acc, entry)
            for output in window.outputs:
                out[output.name] = accs[output.agg_index].result()

    def insert(self, entry: Entry) -> None:
        """Store an out-of-order event in its tile (and the running totals it belongs to)."""
        t = entry[0]
        hop = self.plan.hop_ms
        index = t // hop
        before = len(self.order)
        tile = self._tile(index)
        created = len(self.order) != before
        pos_new = bisect_left(self.order, index)
        self.raw.insert(bisect_right(self.raw, (entry[0], entry[1])), entry)  # by (t, LSN)
        for i, window in enumerate(self.plan.windows):
            first_tile = (self.anchor - window.window_ms) // hop
            if created and pos_new < self.starts[i]:
                self.starts[i] += 1
            for agg, part in zip(self.running[i], tile[i], strict=True):
                _add_anywhere(part, entry)  # the tile may hold later entries
                if agg.invertible and index >= first_tile:
                    agg.add(entry)

    def trim(self, horizon: int, maxts: int, lateness_ms: int) -> None:
        """Drop tiles before `floor(horizon/H)` and raw entries before the open tiles."""
        hop = self.plan.hop_ms
        keep_from = horizon // hop
        order = self.order
        drop = bisect_left(order, keep_from)
        if drop:
            for index in order[:drop]:
                del self.tiles[index]
            del order[:drop]
            self.starts = [max(0, s - drop) for s in self.starts]
        raw_from = ((maxts - lateness_ms) // hop) * hop
        cut = bisect_left(self.raw, (raw_from,))
        if cut:
            del self.raw[:cut]

    @property
    def retained(self) -> int:
        return len(self.raw) + sum(len(t[0]) for t in self.tiles.values())

    def dump(self) -> dict[str, Any]:
        """Picklable state (aggregators are plain slotted objects)."""
        return {"raw": list(self.raw), "anchor": self.anchor, "tiles": dict(self.tiles),
                "order": list(self.order), "starts": list(self.starts),
                "running": self.running}

    @classmethod
    def load(cls, plan: BufferPlan, data: dict[str, Any]) -> TiledBuffer:
        buffer = cls(plan)
        buffer.raw = list(data["raw"])
        buffer.anchor = data["anchor"]
        buffer.tiles = dict(data["tiles"])
        buffer.order = list(data["order"])
        buffer.starts = list(data["starts"])
        buffer.running = data["running"]
        return buffer


def _add_anywhere(acc: Aggregator, entry: Entry) -> None:
    """Add `entry` to `acc`, which may hold later entries (by time, LSN): an aggregator
    whose result depends on the order (first, last) merges it in, in order."""
    if acc.ordered:
        own = acc.fresh()
        own.add(entry)
        acc.merge(own)
    else:
        acc.add(entry)
