"""Aggregators: small exact accumulators with `add`, `evict`, `result` (and `merge`).

Every entry is a tuple `(time_ms, lsn, *slots)`; an aggregator reads one slot. Numeric
slots of sum/avg/stddev hold micro-units (`quantize`), so sums are Python integers and
never drift however many additions and evictions they see. `merge`/`unmerge` combine
partial aggregates (tiles of the `window` kind, Spark partials).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

SCALE = 1_000_000

Entry = tuple[Any, ...]


def quantize(value: float | int | None) -> int | None:
    """Micro-units of a number: ``round(value * 1_000_000)``; None stays None.

    >>> quantize(0.1) + quantize(0.2) == quantize(0.3)
    True
    """
    if value is None:
        return None
    return round(value * SCALE)


class Aggregator:
    """Base class. `slot` is the index of the entry field this aggregator reads."""

    __slots__ = ("slot",)
    func: ClassVar[str] = ""
    quantized: ClassVar[bool] = False
    ordered: ClassVar[bool] = False  # result depends on entry order: rebuilt on out-of-order
    invertible: ClassVar[bool] = True  # `unmerge` is supported

    def __init__(self, slot: int) -> None:
        self.slot = slot

    def add(self, entry: Entry) -> None:
        raise NotImplementedError

    def evict(self, entry: Entry) -> None:
        raise NotImplementedError

    def result(self) -> Any:
        raise NotImplementedError

    def merge(self, other: Any) -> None:
        raise NotImplementedError

    def unmerge(self, other: Any) -> None:
        raise NotImplementedError

    def fresh(self) -> Aggregator:
        return type(self)(self.slot)

    def rebuild(self, entries: Iterable[Entry]) -> None:
        """Recompute from scratch over `entries` (in (time, lsn) order)."""
        self.__init__(self.slot)  # type: ignore[misc]
        for entry in entries:
            self.add(entry)


class CountAgg(Aggregator):
    """Counts events (null targets included); used for tiles, a window count is free."""

    __slots__ = ("n",)
    func = "count"

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.n = 0

    def add(self, entry: Entry) -> None:
        self.n += 1

    def evict(self, entry: Entry) -> None:
        self.n -= 1

    def result(self) -> int:
        return self.n

    def merge(self, other: Any) -> None:
        self.n += other.n

    def unmerge(self, other: Any) -> None:
        self.n -= other.n


class SumAgg(Aggregator):
    """Exact sum of non-null values, in micro-units."""

    __slots__ = ("k", "s")
    func = "sum"
    quantized = True

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.k = 0
        self.s = 0

    def add(self, entry: Entry) -> None:
        v = entry[self.slot]
        if v is not None:
            self.k += 1
            self.s += v

    def evict(self, entry: Entry) -> None:
        v = entry[self.slot]
        if v is not None:
            self.k -= 1
            self.s -= v

    def result(self) -> float | None:
        return self.s / SCALE if self.k else None

    def merge(self, other: Any) -> None:
        self.k += other.k
        self.s += other.s

    def unmerge(self, other: Any) -> None:
        self.k -= other.k
        self.s -= other.s


class AvgAgg(SumAgg):
    """Exact mean: one correctly rounded division of integers."""

    __slots__ = ()
    func = "avg"

    def result(self) -> float | None:
        return self.s / (self.k * SCALE) if self.k else None


class StddevAgg(Aggregator):
    """Population standard deviation from exact integer moments."""

    __slots__ = ("k", "s", "s2")
    func = "stddev"
    quantized = True

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.k = 0
        self.s = 0
        self.s2 = 0

    def add(self, entry: Entry) -> None:
        v = entry[self.slot]
        if v is not None:
            self.k += 1
            self.s += v
            self.s2 += v * v

    def evict(self, entry: Entry) -> None:
        v = entry[self.slot]
        if v is not None:
            self.k -= 1
            self.s -= v
            self.s2 -= v * v

    def result(self) -> float | None:
        k = self.k
        if not k:
            return None
        return math.sqrt(k * self.s2 - self.s * self.s) / (k * SCALE)

    def merge(self, other: Any) -> None:
        self.k += other.k
        self.s += other.s
        self.s2 += other.s2

    def unmerge(self, other: Any) -> None:
        self.k -= other.k
        self.s -= other.s
        self.s2 -= other.s2


class DistinctAgg(Aggregator):
    """Exact count of distinct non-null values: a value → occurrences counter."""

    __slots__ = ("counts",)
    func = "count_distinct"

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.counts: dict[Any, int] = {}

    def add(self, entry: Entry) -> None:
        v = entry[self.slot]
        if v is not None:
            counts = self.counts
            counts[v] = counts.get(v, 0) + 1

    def evict(self, entry: Entry) -> None:
        v = entry[self.slot]
        if v is not None:
            counts = self.counts
            left = counts[v] - 1
            if left:
                counts[v] = left
            else:
                del counts[v]

    def result(self) -> int | None:
        return len(self.counts) or None

    def merge(self, other: Any) -> None:
        counts = self.counts
        for v, n in other.counts.items():
            counts[v] = counts.get(v, 0) + n

    def unmerge(self, other: Any) -> None:
        counts = self.counts
        for v, n in other.counts.items():
            left = counts[v] - n
            if left:
                counts[v] = left
            else:
                del counts[v]


class _ExtremeAgg(Aggregator):
    """Min or max over a sliding window: a monotonic queue of entries.

    A list, not a deque: the queue is short (it only holds entries no later entry
    dominates) and an empty deque costs over 500 bytes, once per key.
    """

    __slots__ = ("dq",)
    ordered = True
    invertible = False

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.dq: list[Entry] = []

    def _dominates(self, a: Any, b: Any) -> bool:
        raise NotImplementedError

    def add(self, entry: Entry) -> None:
        v = entry[self.slot]
        if v is None:
            return
        dq = self.dq
        slot = self.slot
        while dq and not self._dominates(dq[-1][slot], v):
            dq.pop()
        dq.append(entry)

    def evict(self, entry: Entry) -> None:
        dq = self.dq
        if dq and dq[0] is entry:
            del dq[0]

    def result(self) -> Any:
        return self.dq[0][self.slot] if self.dq else None

    def merge(self, other: Any) -> None:
        mine, theirs = self.result(), other.result()
        if theirs is not None and (mine is None or not self._dominates(mine, theirs)):
            self.dq = [other.dq[0]]


class MinAgg(_ExtremeAgg):
    __slots__ = ()
    func = "min"

    def _dominates(self, a: Any, b: Any) -> bool:
        return bool(a < b)


class MaxAgg(_ExtremeAgg):
    __slots__ = ()
    func = "max"

    def _dominates(self, a: Any, b: Any) -> bool:
        return bool(a > b)


class _EdgeAgg(Aggregator):
    """First or last non-null value by (time, LSN): keeps the non-null entries in order."""

    __slots__ = ("dq",)
    ordered = True
    invertible = False

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.dq: deque[Entry] = deque()

    def add(self, entry: Entry) -> None:
        if entry[self.slot] is not None:
            self.dq.append(entry)

    def evict(self, entry: Entry) -> None:
        dq = self.dq
        if dq and dq[0] is entry:
            dq.popleft()

    def merge(self, other: Any) -> None:
        if not other.dq:
            return
        mine = [self.dq[0], self.dq[-1]] if self.dq else []
        candidates = [*mine, other.dq[0], other.dq[-1]]
        candidates.sort(key=lambda e: (e[0], e[1]))
        self.dq = deque([candidates[0], candidates[-1]])


class FirstAgg(_EdgeAgg):
    __slots__ = ()
    func = "first"

    def result(self) -> Any:
        return self.dq[0][self.slot] if self.dq else None


class LastAgg(_EdgeAgg):
    __slots__ = ()
    func = "last"

    def result(self) -> Any:
        return self.dq[-1][self.slot] if self.dq else None


AGGREGATORS: dict[str, type[Aggregator]] = {
    cls.func: cls
    for cls in (CountAgg, SumAgg, AvgAgg, StddevAgg, DistinctAgg, MinAgg, MaxAgg, FirstAgg,
                LastAgg)
}


def aggregate(func: str, slot: int, entries: Sequence[Entry]) -> Any:
    """Value of `func` over `entries` in one pass (the out-of-order and late-event path)."""
    if func == "count":
        return len(entries)
    agg = AGGREGATORS[func](slot)
    for entry in entries:
        agg.add(entry)
    return agg.result()
