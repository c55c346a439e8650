"""Aggregators: small exact accumulators with `add`, `evict`, `result` (and `merge`).

Every entry is a tuple `(time_ms, lsn, *slots)`; an aggregator reads one slot. Numeric
slots of sum/avg/stddev hold micro-units (`quantize`), so sums are Python integers and
never drift however many additions and evictions they see. `merge`/`unmerge` combine
partial aggregates (tiles of the `window` kind, Spark partials).
"""

from __future__ import annotations

import ast
import math
import re
import textwrap
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast, overload

SCALE = 1_000_000

Entry = tuple[Any, ...]


@overload
def quantize(value: None) -> None: ...
@overload
def quantize(value: float | int) -> int: ...
def quantize(value: float | int | None) -> int | None:
    """Micro-units of a number: ``q(v) = round(v * 1_000_000)``; None stays None.

    The contract's one definition of q (docs/semantics.md, "Exact arithmetic"): the
    engine's entries and the values sent to the Redis state are quantised by it.

    >>> quantize(0.1) + quantize(0.2) == quantize(0.3)
    True
    """
    if value is None:
        return None
    return round(value * SCALE)


# -- the running aggregates, each defined once --------------------------------------------
#
# sum, avg, stddev and count_distinct keep a running state of a few plain values (exact
# integer moments in micro-units; a value → occurrences dict) that an event adds to and an
# eviction takes from. Each is written here once, as source text over its state names and
# a non-null value `v`: every form the engine runs is derived from it — the aggregator
# classes below (tiles, out-of-order reads), the entity-slot operations of exact windows
# (`features.history`), the generated in-order fast path (`features.fastpath`) and the
# Redis decoders (`FINISH`, on the moments a Redis function returns).


@dataclass(frozen=True, slots=True)
class Running:
    """One running aggregate: state names with their fresh values, the statements that add
    and evict a non-null value `v`, and the expression of its result."""

    func: str
    state: tuple[str, ...]
    fresh: tuple[str, ...]
    add: str
    evict: str
    result: str

    def fresh_values(self) -> list[Any]:
        """The state's fresh values (a new dict for count_distinct)."""
        return [ast.literal_eval(text) for text in self.fresh]

    def source(self, text: str, names: Mapping[str, str]) -> str:
        """`text` (add, evict or result) with the state names replaced by `names`."""
        return re.sub(r"\b(" + "|".join(self.state) + r")\b",
                      lambda m: names[m.group(1)], text)


_MOMENTS_ADD, _MOMENTS_EVICT = "k += 1\ns += v", "k -= 1\ns -= v"
RUNNING: dict[str, Running] = {r.func: r for r in (
    Running("sum", ("k", "s"), ("0", "0"), _MOMENTS_ADD, _MOMENTS_EVICT,
            f"s / {SCALE} if k else None"),
    Running("avg", ("k", "s"), ("0", "0"), _MOMENTS_ADD, _MOMENTS_EVICT,
            f"s / (k * {SCALE}) if k else None"),
    Running("stddev", ("k", "s", "q"), ("0", "0", "0"),
            _MOMENTS_ADD + "\nq += v * v", _MOMENTS_EVICT + "\nq -= v * v",
            f"sqrt(k * q - s * s) / (k * {SCALE}) if k else None"),
    Running("count_distinct", ("d",), ("{}",), "d[v] = d.get(v, 0) + 1",
            "left = d[v] - 1\nif left:\n    d[v] = left\nelse:\n    del d[v]",
            "len(d) or None"),
)}
"""The running aggregates by function name (count needs no state: it is the window's
length)."""

_ENV: dict[str, Any] = {"sqrt": math.sqrt}


def _compile(source: str, name: str) -> Any:
    namespace = dict(_ENV)
    exec(compile(source, f"<aggregate {name}>", "exec"), namespace)
    return namespace[name]


FINISH: dict[str, Callable[..., Any]] = {
    func: _compile(f"def finish({', '.join(r.state)}):\n    return {r.result}\n", "finish")
    for func, r in RUNNING.items()}
"""The result of a running aggregate from its state values (`FINISH["avg"](k, s)`)."""


def slot_operations(func: str) -> tuple[Callable[[list[Any], int, Any], None],
                                        Callable[[list[Any], int, Any], None]]:
    """(add, evict) of `func` on a state kept in a list from index `at` (an entity):
    ``add(entity, at, v)`` for a non-null value."""
    r = RUNNING[func]
    names = {n: f"e[at + {i}]" for i, n in enumerate(r.state)}
    ops = []
    for kind, text in (("add", r.add), ("evict", r.evict)):
        body = textwrap.indent(r.source(text, names), "    ")
        ops.append(_compile(f"def {kind}(e, at, v):\n{body}\n", kind))
    return ops[0], ops[1]


def _running_class(name: str, func: str, base: type[Aggregator]) -> type[Aggregator]:
    """The aggregator class of a running aggregate: state as attributes, add / evict /
    result derived from its `Running` definition; merge / unmerge combine states."""
    r = RUNNING[func]
    names = {n: f"self.{n}" for n in r.state}
    lines = ["def __init__(self, slot):", "    self.slot = slot",
             *(f"    {names[n]} = {fresh}" for n, fresh in zip(r.state, r.fresh, strict=True))]
    for kind, text in (("add", r.add), ("evict", r.evict)):
        lines += [f"def {kind}(self, entry):", "    v = entry[self.slot]",
                  "    if v is not None:",
                  textwrap.indent(r.source(text, names), "        ")]
    lines += ["def result(self):", f"    return {r.source(r.result, names)}"]
    namespace = dict(_ENV)
    exec(compile("\n".join(lines) + "\n", f"<aggregate {func}>", "exec"), namespace)
    members = {k: namespace[k] for k in ("__init__", "add", "evict", "result")}
    members.update(__slots__=(), func=func, __doc__=base.__doc__)
    return cast("type[Aggregator]", type(name, (base,), members))


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


class _MomentsAgg(Aggregator):
    """Exact integer moments of the non-null values, in micro-units: count `k`, sum `s`
    (and sum of squares `q` for stddev)."""

    __slots__ = ("k", "q", "s")
    quantized = True
    k: int
    s: int
    q: int

    def merge(self, other: Any) -> None:
        self.k += other.k
        self.s += other.s
        if self.func == "stddev":
            self.q += other.q

    def unmerge(self, other: Any) -> None:
        self.k -= other.k
        self.s -= other.s
        if self.func == "stddev":
            self.q -= other.q


class _DistinctAgg(Aggregator):
    """Exact count of distinct non-null values: a value → occurrences dict `d`."""

    __slots__ = ("d",)
    d: dict[Any, int]

    def merge(self, other: Any) -> None:
        d = self.d
        for v, n in other.d.items():
            d[v] = d.get(v, 0) + n

    def unmerge(self, other: Any) -> None:
        d = self.d
        for v, n in other.d.items():
            left = d[v] - n
            if left:
                d[v] = left
            else:
                del d[v]


SumAgg = _running_class("SumAgg", "sum", _MomentsAgg)
AvgAgg = _running_class("AvgAgg", "avg", _MomentsAgg)
StddevAgg = _running_class("StddevAgg", "stddev", _MomentsAgg)
DistinctAgg = _running_class("DistinctAgg", "count_distinct", _DistinctAgg)


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

    def add(self, entry: Entry) -> None:  # `_ExtremeAgg.add`, the comparison inline
        slot = self.slot
        v = entry[slot]
        if v is None:
            return
        dq = self.dq
        while dq and not dq[-1][slot] < v:
            dq.pop()
        dq.append(entry)


class MaxAgg(_ExtremeAgg):
    __slots__ = ()
    func = "max"

    def _dominates(self, a: Any, b: Any) -> bool:
        return bool(a > b)

    def add(self, entry: Entry) -> None:  # `_ExtremeAgg.add`, the comparison inline
        slot = self.slot
        v = entry[slot]
        if v is None:
            return
        dq = self.dq
        while dq and not dq[-1][slot] > v:
            dq.pop()
        dq.append(entry)


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
