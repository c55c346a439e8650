"""Load-time preparation of a scene's features: the seed's fork, done once.

Features are grouped by their key fields (`KeyPlan`: one entity state per key value),
then by filter and kind (`BufferPlan`: one shared buffer of entries), then by window
(`WindowPlan`: one eviction pointer). The per-event path only walks these tuples.

The state of one key value (an *entity*) is one flat list laid out by its `KeyPlan`:
``[maxts, key, <buffer 0>, <buffer 1>, ...]``. A `history` buffer is
``anchor, head, entries`` then, per window, its eviction pointer and the running state of
its aggregators: sum/avg ``k, s``; stddev ``k, s, s2``; count_distinct a value → count
dict; min/max/first/last an aggregator object. A `window` buffer is one `TiledBuffer`.
When the last buffer is a `history` one, its entries are not a list of their own but the
tail of the entity list itself (from slot `KeyPlan.width` on; its `entries` slot stays
None, and its head and pointers are indexes into the entity). A fresh entity of the
usual plans is therefore one list, built in one go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from riskengine.features.aggregators import AGGREGATORS, Aggregator, quantize
from riskengine.features.dsl import NUMERIC_FUNCTIONS, FeatureSpec

Predicate = Callable[[dict[str, Any], dict[str, Any], Any], Any]


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """One feature output: its name, function and the entry slot it reads."""

    name: str
    func: str
    slot: int
    agg_index: int  # index into the window's aggregators; -1 for a free count


MAXTS = 0
"""Entity slot of the newest stored time of the key."""
KEY = 1
"""Entity slot of its own key (eviction buckets hold entities, see `features.keytable`)."""
PARTIAL = 2
"""Entity slot: for a key started afresh while `max_entities` had evicted a key still in
its horizon, until when its events may miss that key's events (they are marked
degraded); NEVER otherwise (see `features.keytable`)."""
HEADER = 3
ANCHOR, HEAD, ENTRIES = 0, 1, 2
"""Slots of a `history` buffer, relative to its offset in the entity."""
INLINE_WIDTH = {"sum": 2, "avg": 2, "stddev": 3, "count_distinct": 1}
"""Aggregators kept as plain values in the entity; the others are objects (one slot)."""


def state_width(func: str) -> int:
    return INLINE_WIDTH.get(func, 1)


@dataclass(frozen=True, slots=True)
class WindowPlan:
    window_ms: int
    outputs: tuple[OutputPlan, ...]
    agg_types: tuple[tuple[type[Aggregator], int], ...]  # (class, slot)
    ptr_at: int = 0  # slot of the eviction pointer, relative to the buffer (history kind)
    agg_at: tuple[int, ...] = ()  # slot of each aggregator's state, relative to the buffer


@dataclass(frozen=True, slots=True)
class BufferPlan:
    """Features of one key that share a filter and kind, hence one buffer of entries."""

    signature: str
    kind: str  # history | window
    hop_ms: int
    where: str | None
    predicate: Predicate | None
    slots: tuple[tuple[str, bool], ...]  # (field, quantized) for entry slots 2..
    windows: tuple[WindowPlan, ...]
    max_window_ms: int
    output_names: tuple[str, ...]
    width: int = 1  # entity slots taken by this buffer
    fresh_parts: Callable[[], list[list[Aggregator]]] = dataclasses.field(
        default=list, compare=False, repr=False)
    """Fresh aggregators of every window (`window` kind: a tile's partials, the running
    totals), made by one compiled list display."""

    def make_entry(self, event: dict[str, Any], lsn: int) -> tuple[Any, ...]:
        values: list[Any] = [event["timestamp"], lsn]
        for field, quantized in self.slots:
            value = event.get(field)
            values.append(quantize(value) if quantized else value)
        return tuple(values)


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """All features keyed by the same fields: one entity state per key value."""

    by: tuple[str, ...]
    buffers: tuple[BufferPlan, ...]
    max_window_ms: int
    output_names: tuple[str, ...]
    reach_ms: int = 0
    """Rmax(B): how far back a window of this key can reach, W for the history kind and
    W + H for the tiled kind (docs/semantics.md); a key idle for L + reach is dropped."""
    offsets: tuple[int, ...] = ()  # entity slot where each buffer starts
    width: int = HEADER  # entity slots before the inline entries (if any)

    @property
    def inline_entries(self) -> bool:
        """Whether the last buffer keeps its entries at the tail of the entity."""
        return bool(self.buffers) and self.buffers[-1].kind == "history"


def build_key_plans(
    specs: Sequence[FeatureSpec],
    compile_where: Callable[[FeatureSpec], Predicate],
) -> tuple[KeyPlan, ...]:
    """Group feature specs into key, buffer and window plans."""
    by_key: dict[tuple[str, ...], dict[tuple[str, str | None, int], list[FeatureSpec]]] = {}
    for spec in specs:
        hop = spec.hop_ms if spec.kind == "window" else 0
        group = by_key.setdefault(spec.by, {})
        group.setdefault((spec.kind, spec.where, hop), []).append(spec)
    plans = []
    for by, groups in by_key.items():
        buffers = tuple(
            _buffer_plan(by, kind, where, hop, members, compile_where)
            for (kind, where, hop), members in groups.items()
        )
        offsets = []
        at = HEADER
        for buffer in buffers:
            offsets.append(at)
            at += buffer.width
        plans.append(KeyPlan(
            by=by,
            buffers=buffers,
            max_window_ms=max(b.max_window_ms for b in buffers),
            output_names=tuple(n for b in buffers for n in b.output_names),
            reach_ms=max(b.max_window_ms + b.hop_ms for b in buffers),
            offsets=tuple(offsets),
            width=at,
        ))
    return tuple(plans)


def _buffer_plan(by: tuple[str, ...], kind: str, where: str | None, hop: int,
                 members: list[FeatureSpec],
                 compile_where: Callable[[FeatureSpec], Predicate]) -> BufferPlan:
    slot_index: dict[tuple[str, bool], int] = {}
    for spec in members:
        if spec.func != "count":
            key = (spec.target, spec.func in NUMERIC_FUNCTIONS and _quantized(spec.func))
            slot_index.setdefault(key, len(slot_index) + 2)
    windows: dict[int, list[FeatureSpec]] = {}
    for spec in members:
        windows.setdefault(spec.window_ms, []).append(spec)
    window_plans = []
    at = ENTRIES + 1
    for window_ms in sorted(windows):
        outputs = []
        agg_types: list[tuple[type[Aggregator], int]] = []
        for spec in windows[window_ms]:
            if spec.func == "count" and kind == "history":
                outputs.append(OutputPlan(spec.name, "count", 0, -1))
                continue
            slot = 0 if spec.func == "count" else slot_index[
                (spec.target, spec.func in NUMERIC_FUNCTIONS and _quantized(spec.func))]
            agg_types.append((AGGREGATORS[spec.func], slot))
            outputs.append(OutputPlan(spec.name, spec.func, slot, len(agg_types) - 1))
        ptr_at = at
        agg_at = []
        at += 1
        for cls, _ in agg_types:
            agg_at.append(at)
            at += state_width(cls.func)
        window_plans.append(WindowPlan(window_ms, tuple(outputs), tuple(agg_types), ptr_at,
                                       tuple(agg_at)))
    predicate = compile_where(members[0]) if where is not None else None
    signature = "|".join(sorted(spec.signature for spec in members))
    return BufferPlan(
        signature=f"{kind}:{'+'.join(by)}:{signature}",
        kind=kind,
        hop_ms=hop,
        where=where,
        predicate=predicate,
        slots=tuple(sorted(slot_index, key=slot_index.__getitem__)),
        windows=tuple(window_plans),
        max_window_ms=max(windows),
        output_names=tuple(o.name for w in window_plans for o in w.outputs),
        width=at if kind == "history" else 1,
        fresh_parts=_parts_factory(window_plans) if kind == "window" else list,
    )


def _parts_factory(windows: Sequence[WindowPlan]) -> Callable[[], list[list[Aggregator]]]:
    """``lambda: [[Agg(slot), …] per window]`` for `windows`, compiled once."""
    env: dict[str, Any] = {}
    rows = []
    for i, window in enumerate(windows):
        items = []
        for m, (cls, slot) in enumerate(window.agg_types):
            env[f"c{i}_{m}"] = cls
            items.append(f"c{i}_{m}({slot})")
        rows.append("[" + ", ".join(items) + "]")
    factory: Callable[[], list[list[Aggregator]]] = eval(
        "lambda: [" + ", ".join(rows) + "]", env)
    return factory


def _quantized(func: str) -> bool:
    return func in ("sum", "avg", "stddev")
