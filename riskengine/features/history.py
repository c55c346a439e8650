"""Exact sliding windows over one key's shared buffer of entries (the `history` kind).

Entries are kept sorted by (time, LSN). Each window keeps a pointer to its first entry
and running aggregators over `(anchor − W, anchor]`, where `anchor` is the latest time
that advanced the buffer. In-order events (time ≥ anchor) slide the pointers and read the
running values; an out-of-order or late event is computed from the entries directly and
inserted in place. Entries older than `maxts − L − Wmax` can serve no event and are dropped.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from riskengine.features.aggregators import Aggregator, Entry, aggregate
from riskengine.features.plan import BufferPlan

_INF = float("inf")
_COMPACT_AT = 8


class HistoryBuffer:
    __slots__ = ("aggs", "anchor", "entries", "head", "plan", "ptrs")

    def __init__(self, plan: BufferPlan) -> None:
        self.plan = plan
        self.entries: list[Entry] = []
        self.head = 0
        self.anchor = -1 << 62
        self.ptrs = [0] * len(plan.windows)
        self.aggs: list[list[Aggregator]] = [w.new_aggregators() for w in plan.windows]

    def step(self, entry: Entry, passes: bool, out: dict[str, Any]) -> None:
        """In-order, stored event (time ≥ anchor): slide, read, then append `entry`."""
        t = entry[0]
        entries = self.entries
        n = len(entries)
        ptrs = self.ptrs
        all_aggs = self.aggs
        for i, window in enumerate(self.plan.windows):
            lo = t - window.window_ms
            p = ptrs[i]
            aggs = all_aggs[i]
            if p < n and entries[p][0] <= lo:
                if aggs:
                    while p < n and entries[p][0] <= lo:
                        old = entries[p]
                        for agg in aggs:
                            agg.evict(old)
                        p += 1
                else:
                    p = bisect_right(entries, (lo, _INF), p, n)
                ptrs[i] = p
            if passes:
                for agg in aggs:
                    agg.add(entry)
                count = n - p + 1
            else:
                count = n - p
            for output in window.outputs:
                out[output.name] = count if output.agg_index < 0 else \
                    aggs[output.agg_index].result()
        if passes:
            entries.append(entry)
        self.anchor = t

    def compute(self, entry: Entry, passes: bool, floor_ms: int | None,
                out: dict[str, Any]) -> None:
        """Values for an out-of-order or late event, read from the entries themselves.

        `floor_ms` (late events only) is `maxts − L`: entries at or before
        `floor_ms − W` are outside what the engine retains and are left out.
        """
        t = entry[0]
        entries = self.entries
        head = self.head
        end = bisect_right(entries, (t, _INF), head)
        for window in self.plan.windows:
            lo = t - window.window_ms
            if floor_ms is not None:
                lo = max(lo, floor_ms - window.window_ms)
            start = bisect_right(entries, (lo, _INF), head, end)
            members = entries[start:end]
            if passes:
                members.append(entry)
            for output in window.outputs:
                out[output.name] = aggregate(output.func, output.slot, members)

    def insert(self, entry: Entry) -> None:
        """Store an out-of-order event (time < anchor) at its (time, LSN) place."""
        t = entry[0]
        entries = self.entries
        pos = bisect_right(entries, (t, entry[1]), self.head)
        entries.insert(pos, entry)
        for i, window in enumerate(self.plan.windows):
            if t > self.anchor - window.window_ms:
                for agg in self.aggs[i]:
                    if agg.ordered:
                        agg.rebuild(entries[self.ptrs[i]:])
                    else:
                        agg.add(entry)
            else:
                self.ptrs[i] += 1

    def trim(self, horizon: int, maxts: int, lateness_ms: int) -> None:
        """Drop entries at or before `horizon` (= maxts − L − Wmax of the key)."""
        entries = self.entries
        head = self.head
        n = len(entries)
        while head < n and entries[head][0] <= horizon:
            head += 1
        self.head = head
        if head >= _COMPACT_AT and head * 2 > n:
            self.compact()

    def compact(self) -> None:
        """Free the dropped entries in front of `head` (amortised O(1) per entry)."""
        head = self.head
        del self.entries[:head]
        self.ptrs = [p - head for p in self.ptrs]
        self.head = 0

    @property
    def retained(self) -> int:
        return len(self.entries) - self.head

    def dump(self) -> list[Entry]:
        return self.entries[self.head:]

    @classmethod
    def load(cls, plan: BufferPlan, entries: list[Entry], anchor: int) -> HistoryBuffer:
        """Rebuild a buffer from its retained entries: same state as before the dump."""
        buffer = cls(plan)
        buffer.entries = list(entries)
        buffer.anchor = anchor
        for i, window in enumerate(plan.windows):
            lo = anchor - window.window_ms
            p = bisect_right(buffer.entries, (lo, _INF))
            buffer.ptrs[i] = p
            for agg in buffer.aggs[i]:
                for old in buffer.entries[p:]:
                    agg.add(old)
        return buffer
