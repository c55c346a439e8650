"""Load-time plan of a scene's features for the Redis entity script.

Features keyed by the same fields B share one *entity* per key value (the seed's fork).
Inside an entity, features that share a filter, kind and hop form a *group* (one bit of
an entry's mask); a group's features are arranged by window; each function reads a
*stat item* of the group (exact sums, a distinct set, an extreme or an edge value of a
target *slot*). The plan is rendered as a Lua table in the scene's function library;
the entity's function builds its closures from it once per server, at its first call
(scripts/entity.lua), so the per-event path passes only values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from riskengine.features.dsl import FeatureSpec
from riskengine.state.redis.codec import RedisStateError

MAX_GROUPS = 31
"""Entry masks are 32-bit integers in the script (Lua's `bit` library)."""
ITEM_OF = {"sum": "q", "avg": "q", "stddev": "q", "count_distinct": "d", "min": "mn",
           "max": "mx", "first": "fi", "last": "la"}


@dataclass(frozen=True, slots=True)
class Output:
    name: str
    func: str
    item: int  # 1-based index into the group's items; 0 for count


@dataclass(frozen=True, slots=True)
class Window:
    window_ms: int
    outputs: tuple[Output, ...]


@dataclass(frozen=True, slots=True)
class Group:
    """Features of one entity sharing a filter, a kind and a hop: one bit of the mask."""

    kind: str  # history | window
    where: str | None
    hop_ms: int  # 0 for history
    bit: int
    windows: tuple[Window, ...]  # ascending
    items: tuple[tuple[str, int, bool], ...]  # (item kind, 1-based slot, squares needed)

    @property
    def max_window_ms(self) -> int:
        return self.windows[-1].window_ms

    @property
    def reach_ms(self) -> int:
        """How far back from an event's time its windows can read: W, or W + H tiled."""
        return self.max_window_ms + self.hop_ms


@dataclass(frozen=True, slots=True)
class Slot:
    """One value of a stored entry: a target field's micro-units q (`quantized`: what
    sum/avg/stddev read), or its value text R (what min/max/first/last read), followed by
    its distinct key when count_distinct reads it (`distinct`) and the key differs."""

    field: str
    quantized: bool
    distinct: bool


@dataclass(frozen=True, slots=True)
class EntityPlan:
    """All features keyed by `by`: what one entity stores and what its script returns."""

    by: tuple[str, ...]
    groups: tuple[Group, ...]
    slots: tuple[Slot, ...]
    outputs: tuple[Output, ...]  # in the order the script returns them
    lateness_ms: int
    signature: str

    @property
    def reach_ms(self) -> int:
        """Rmax(B): the largest reach of the features keyed by B (docs/semantics.md),
        what forgetting, trimming and the TTL go by."""
        return max(g.reach_ms for g in self.groups)

    @property
    def masked(self) -> bool:
        return len(self.groups) > 1

    @property
    def stride(self) -> int:
        return 1 + int(self.masked) + len(self.slots)

    def lua(self, guard_depth: int, scene_window_ms: int, sweep: int, running_from: int,
            page_entries: int) -> str:
        """The plan as a Lua table constructor."""
        groups = []
        tiled = 0
        for g in self.groups:
            tiled += g.kind == "window"
            items = ", ".join(f"{{'{kind}', {slot}, {_lua_bool(sq)}}}"
                              for kind, slot, sq in g.items)
            windows = []
            for w in g.windows:
                outs = ", ".join(
                    f"{{{1 + self.outputs.index(o)}, '{o.func}', {o.item}}}" for o in w.outputs)
                windows.append(f"{{w = {w.window_ms}, outs = {{{outs}}}}}")
            groups.append(
                f"{{tiled = {_lua_bool(g.kind == 'window')}, ti = {tiled}, bit = {g.bit}, "
                f"hop = {g.hop_ms}, "
                f"wmax = {g.max_window_ms}, items = {{{items}}}, "
                f"wins = {{{', '.join(windows)}}}}}")
        return (f"{{L = {self.lateness_ms}, RMAX = {self.reach_ms}, "
                f"STRIDE = {self.stride}, MASKED = {_lua_bool(self.masked)}, "
                f"NSLOT = {len(self.slots)}, "
                f"QSLOT = {{{', '.join(_lua_bool(s.quantized) for s in self.slots)}}}, "
                f"NOUT = {len(self.outputs)}, "
                f"DEPTH = {guard_depth}, NTILED = {tiled}, "
                f"IDLE = {max(self.reach_ms, scene_window_ms)}, "
                f"SWEEP = {sweep}, RUNMIN = {running_from}, CHUNK = {page_entries}, "
                f"G = {{{', '.join(groups)}}}}}")


def _lua_bool(flag: bool) -> str:
    return "true" if flag else "false"


def build_entity_plans(specs: Sequence[FeatureSpec], lateness_ms: int) -> tuple[EntityPlan, ...]:
    """Group a scene's features by key fields, then by (kind, where, hop), then by window."""
    by_key: dict[tuple[str, ...], list[FeatureSpec]] = {}
    for spec in specs:
        by_key.setdefault(spec.by, []).append(spec)
    return tuple(_entity_plan(by, members, lateness_ms) for by, members in by_key.items())


def _slot_key(spec: FeatureSpec) -> tuple[str, bool]:
    """The slot a (non-count) feature reads: its target's micro-units or its value text."""
    return spec.target, ITEM_OF[spec.func] == "q"


def _entity_plan(by: tuple[str, ...], members: list[FeatureSpec], lateness_ms: int
                 ) -> EntityPlan:
    # A target gets a micro-units slot when sum/avg/stddev read it and a value-text slot
    # when min/max/first/last/count_distinct do: only what is read is stored.
    slot_of: dict[tuple[str, bool], int] = {}
    distinct: set[str] = set()
    for spec in members:
        if spec.func == "count":
            continue
        slot_of.setdefault(_slot_key(spec), len(slot_of) + 1)
        if spec.func == "count_distinct":
            distinct.add(spec.target)
    slots = tuple(Slot(f, q, not q and f in distinct) for f, q in slot_of)

    grouped: dict[tuple[str, str | None, int], list[FeatureSpec]] = {}
    for spec in members:
        hop = spec.hop_ms if spec.kind == "window" else 0
        grouped.setdefault((spec.kind, spec.where, hop), []).append(spec)
    if len(grouped) > MAX_GROUPS:
        raise RedisStateError(
            f"features keyed by {'+'.join(by)}: {len(grouped)} distinct (kind, where, hop) "
            f"combinations; the Redis state supports at most {MAX_GROUPS} per key")

    outputs: dict[str, Output] = {}
    groups = []
    for index, ((kind, where, hop), specs) in enumerate(grouped.items()):
        items: list[tuple[str, int, bool]] = []
        for spec in specs:
            if spec.func == "count":
                continue
            item = (ITEM_OF[spec.func], slot_of[_slot_key(spec)])
            found = next((i for i, (k, s, _) in enumerate(items) if (k, s) == item), None)
            squares = spec.func == "stddev"
            if found is None:
                items.append((*item, squares))
            elif squares:
                items[found] = (*item, True)
        windows: dict[int, list[Output]] = {}
        for spec in specs:
            item_index = 0
            if spec.func != "count":
                key = (ITEM_OF[spec.func], slot_of[_slot_key(spec)])
                item_index = 1 + next(i for i, (k, s, _) in enumerate(items) if (k, s) == key)
            out = Output(spec.name, spec.func, item_index)
            outputs[spec.name] = out
            windows.setdefault(spec.window_ms, []).append(out)
        groups.append(Group(
            kind=kind, where=where, hop_ms=hop, bit=1 << index,
            windows=tuple(Window(w, tuple(windows[w])) for w in sorted(windows)),
            items=tuple(items)))
    # outputs in the scene's order of features
    ordered = tuple(outputs[spec.name] for spec in members)
    signature = "|".join(sorted(spec.signature for spec in members))
    digest = hashlib.blake2b(signature.encode(), digest_size=4).hexdigest()
    return EntityPlan(by=by, groups=tuple(groups), slots=slots, outputs=ordered,
                      lateness_ms=lateness_ms, signature=digest)
