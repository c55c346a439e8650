"""Exact sliding windows over one key's shared buffer of entries (the `history` kind).

Entries are kept sorted by (time, LSN). Each window keeps a pointer to its first entry
and running aggregates over `(anchor − W, anchor]`, where `anchor` is the latest time
that advanced the buffer. In-order events (time ≥ anchor) slide the pointers and read the
running values; an out-of-order or late event is computed from the entries directly and
inserted in place. Entries at or before `maxts − L − Rmax(B)` can serve no event and are
dropped.

The state is a slice of the entity list (layout in `features.plan`); `HistoryOps` is the
general path's view of one buffer. The generated fast path (`features.fastpath`) inlines
the same in-order step.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from riskengine.features.aggregators import FINISH, RUNNING, Entry, aggregate, slot_operations
from riskengine.features.plan import ANCHOR, ENTRIES, HEAD, BufferPlan

NEVER = -1 << 62
_INF = float("inf")
COMPACT_AT = 8
"""Dropped entries in front of `head` are freed once there are this many and they are
more than half of the list (amortised O(1) per entry)."""

Entity = list[Any]
_Agg = tuple[str, int, int]  # (func, entry slot, absolute entity slot of its state)


_SLOT_OPS = {func: slot_operations(func) for func in RUNNING}


def initial_state(func: str) -> str:
    """Source of the fresh running state of an inlined aggregator ('' for objects)."""
    running = RUNNING.get(func)
    return ", ".join(running.fresh) if running is not None else ""


def agg_add(e: Entity, agg: _Agg, entry: Entry) -> None:
    func, slot, at = agg
    ops = _SLOT_OPS.get(func)
    if ops is None:
        e[at].add(entry)
        return
    v = entry[slot]
    if v is not None:
        ops[0](e, at, v)


def agg_evict(e: Entity, agg: _Agg, entry: Entry) -> None:
    func, slot, at = agg
    ops = _SLOT_OPS.get(func)
    if ops is None:
        e[at].evict(entry)
        return
    v = entry[slot]
    if v is not None:
        ops[1](e, at, v)


def agg_result(e: Entity, func: str, at: int) -> Any:
    running = RUNNING.get(func)
    if running is None:
        return e[at].result()
    return FINISH[func](*e[at:at + len(running.state)])


def agg_clear(e: Entity, func: str, at: int) -> None:
    running = RUNNING.get(func)
    if running is None:
        e[at] = e[at].fresh()
        return
    e[at:at + len(running.state)] = running.fresh_values()


def window_value(func: str, slot: int, members: list[Entry]) -> Any:
    """`aggregate(func, slot, members)` with the running functions' state gathered by
    C-speed loops, then finished by their one definition (`FINISH`)."""
    if func == "count":
        return len(members)
    if func in ("sum", "avg", "stddev"):
        values = [x[slot] for x in members if x[slot] is not None]
        if func == "stddev":
            return FINISH[func](len(values), sum(values), sum(v * v for v in values))
        return FINISH[func](len(values), sum(values))
    if func == "count_distinct":
        distinct = {x[slot] for x in members}
        distinct.discard(None)
        return FINISH[func](distinct)
    return aggregate(func, slot, members)


_DELTA = frozenset(RUNNING)


def _delta_value(e: Entity, func: str, slot: int, at: int, removed: list[Entry],
                 added: list[Entry]) -> Any:
    """The value of the running aggregate at `at` without `removed` and with `added`."""
    if func == "count_distinct":
        counts = e[at]
        delta: dict[Any, int] = {}
        for x in removed:
            v = x[slot]
            if v is not None:
                delta[v] = delta.get(v, 0) - 1
        for x in added:
            v = x[slot]
            if v is not None:
                delta[v] = delta.get(v, 0) + 1
        distinct = len(counts)
        for v, d in delta.items():
            before = counts.get(v, 0)
            distinct += (before + d > 0) - (before > 0)
        return distinct or None
    gone = [x[slot] for x in removed if x[slot] is not None]
    new = [x[slot] for x in added if x[slot] is not None]
    k = e[at] - len(gone) + len(new)
    total = e[at + 1] - sum(gone) + sum(new)
    if func != "stddev":
        return FINISH[func](k, total)
    squares = e[at + 2] - sum(v * v for v in gone) + sum(v * v for v in new)
    return FINISH[func](k, total, squares)


class HistoryOps:
    """Operations on one `history` buffer of an entity, at entity slot `base`.

    With `inline_from` set, the entries are the entity's own slots from that index on
    (see `features.plan`); head and pointers are then indexes into the entity. `origin`
    is the index of the first entry either way.
    """

    __slots__ = ("anchor_at", "entries_at", "head_at", "inline", "origin", "plan", "windows")

    def __init__(self, plan: BufferPlan, base: int, inline_from: int | None = None) -> None:
        self.plan = plan
        self.anchor_at = base + ANCHOR
        self.head_at = base + HEAD
        self.entries_at = base + ENTRIES
        self.inline = inline_from is not None
        self.origin = 0 if inline_from is None else inline_from
        self.windows = tuple(
            (window.window_ms, base + window.ptr_at,
             tuple((cls.func, slot, base + at)
                   for (cls, slot), at in zip(window.agg_types, window.agg_at, strict=True)),
             tuple((o.name, o.func, o.slot,
                    -1 if o.agg_index < 0 else base + window.agg_at[o.agg_index])
                   for o in window.outputs))
            for window in plan.windows)

    def init_source(self, env: dict[str, Any], prefix: str) -> str:
        """Source of this buffer's fresh slots (objects it needs are put in `env`)."""
        origin = str(self.origin)
        parts = ["NEVER", origin, "None" if self.inline else "[]"]
        for w, window in enumerate(self.plan.windows):
            parts.append(origin)
            for a, (cls, slot) in enumerate(window.agg_types):
                inline = initial_state(cls.func)
                if inline:
                    parts.append(inline)
                else:
                    env[f"{prefix}agg{w}_{a}"] = cls
                    parts.append(f"{prefix}agg{w}_{a}({slot})")
        env["NEVER"] = NEVER
        return ", ".join(parts)

    def anchor(self, e: Entity) -> int:
        return e[self.anchor_at]  # type: ignore[no-any-return]

    def entries(self, e: Entity) -> list[Entry]:
        return e if self.inline else e[self.entries_at]

    def step(self, e: Entity, entry: Entry, passes: bool, out: dict[str, Any]) -> None:
        """In-order event (time ≥ anchor): slide, read, then append `entry` if it passes."""
        t = entry[0]
        entries = self.entries(e)
        n = len(entries)
        for window_ms, ptr_at, aggs, outputs in self.windows:
            lo = t - window_ms
            p = e[ptr_at]
            if p < n and entries[p][0] <= lo:
                if aggs:
                    while p < n and entries[p][0] <= lo:
                        old = entries[p]
                        for agg in aggs:
                            agg_evict(e, agg, old)
                        p += 1
                else:
                    p = bisect_right(entries, (lo, _INF), p, n)
                e[ptr_at] = p
            if passes:
                for agg in aggs:
                    agg_add(e, agg, entry)
                count = n - p + 1
            else:
                count = n - p
            for name, func, _, at in outputs:
                out[name] = count if at < 0 else agg_result(e, func, at)
        if passes:
            entries.append(entry)
        e[self.anchor_at] = t

    def compute(self, e: Entity, entry: Entry, passes: bool, floor_ms: int | None,
                out: dict[str, Any]) -> None:
        """Values for an out-of-order or late event, read from the entries themselves.

        `floor_ms` (late events only) is `G − L`: entries at or before
        `floor_ms − W` are outside what the engine retains and are left out.
        An out-of-order event close to the anchor (the usual case) is instead read off the
        running state, corrected by the few entries between the two windows.
        """
        t = entry[0]
        entries = self.entries(e)
        head = e[self.head_at]
        end = bisect_right(entries, (t, _INF), head)
        n = len(entries)
        for window_ms, ptr_at, aggs, outputs in self.windows:
            lo = t - window_ms
            if floor_ms is not None:
                lo = max(lo, floor_ms - window_ms)
            start = bisect_right(entries, (lo, _INF), head, end)
            if floor_ms is None:
                # The running state covers entries[ptr:n] = (anchor − W, anchor]; the
                # window of t is that minus entries[end:n] plus entries[start:ptr].
                ptr = e[ptr_at]
                if start <= ptr <= end and (n - end) + (ptr - start) < end - start and \
                        all(func in _DELTA for func, _, _ in aggs):
                    removed = entries[end:]
                    added = entries[start:ptr]
                    if passes:
                        added.append(entry)
                    for name, func, slot, at in outputs:
                        out[name] = end - start + passes if at < 0 else \
                            _delta_value(e, func, slot, at, removed, added)
                    continue
            members = entries[start:end]
            if passes:
                members.append(entry)
            for name, func, slot, _ in outputs:
                out[name] = window_value(func, slot, members)

    def insert(self, e: Entity, entry: Entry) -> None:
        """Store an out-of-order event (time < anchor) at its (time, LSN) place."""
        t = entry[0]
        entries = self.entries(e)
        pos = bisect_right(entries, (t, entry[1]), e[self.head_at])
        entries.insert(pos, entry)
        anchor = e[self.anchor_at]
        for window_ms, ptr_at, aggs, _ in self.windows:
            if t > anchor - window_ms:
                for agg in aggs:
                    func, _, at = agg
                    if func in ("min", "max", "first", "last"):  # order matters: rebuild
                        e[at].rebuild(entries[e[ptr_at]:])
                    else:
                        agg_add(e, agg, entry)
            else:
                e[ptr_at] += 1

    def trim(self, e: Entity, horizon: int, maxts: int, lateness_ms: int) -> None:
        """Drop entries at or before `horizon` (= maxts − L − Rmax(B) of the key)."""
        entries = self.entries(e)
        head = e[self.head_at]
        n = len(entries)
        while head < n and entries[head][0] <= horizon:
            head += 1
        e[self.head_at] = head
        dropped = head - self.origin
        if dropped >= COMPACT_AT and dropped * 2 > n - self.origin:
            self.compact(e)

    def compact(self, e: Entity) -> None:
        """Free the dropped entries in front of `head`."""
        head = e[self.head_at]
        origin = self.origin
        del self.entries(e)[origin:head]
        dropped = head - origin
        for _, ptr_at, _, _ in self.windows:
            e[ptr_at] -= dropped
        e[self.head_at] = origin

    def retained(self, e: Entity) -> int:
        return len(self.entries(e)) - int(e[self.head_at])

    def dump(self, e: Entity) -> tuple[str, list[Entry], int]:
        return ("history", self.entries(e)[e[self.head_at]:], e[self.anchor_at])

    def load(self, e: Entity, saved: tuple[Any, ...]) -> None:
        """Rebuild this buffer of a fresh entity from its dump: same state as before."""
        origin = self.origin
        if self.inline:
            del e[origin:]
            e.extend(saved[1])
            entries = e
        else:
            entries = e[self.entries_at] = list(saved[1])
        anchor = saved[2]
        e[self.anchor_at] = anchor
        e[self.head_at] = origin
        for window_ms, ptr_at, aggs, _ in self.windows:
            p = bisect_right(entries, (anchor - window_ms, _INF), origin)
            e[ptr_at] = p
            for agg in aggs:
                agg_clear(e, agg[0], agg[2])
                for old in entries[p:]:
                    agg_add(e, agg, old)
