"""The in-order fast path of a scene, generated as straight-line Python at load time.

For an event that is not late (`t ≥ G − L`) and not starting a key while evictions for
size may have left a partial window (almost every event in production), the generated
function slides the windows, updates the running aggregates and reads the values with no
per-feature dispatch: entity slots are constant indexes, sums and distinct counters are
inlined, other aggregators are called directly. A key that holds a later event than this
one (out of order there) is stored by the general path's step for one key
(`SceneFeatures.store_out_of_order`); the event's other keys stay on the fast path.
A key seen for the first time (or again after it was forgotten) gets its entity as one
list display with the event already in it. The function returns None *before changing
any state* when the event needs the general path (`SceneFeatures.compute_general`): late,
or a key in a partial zone. Both paths implement docs/semantics.md and are checked against
tests/oracle.py.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any, cast

from riskengine.features.aggregators import RUNNING, quantize
from riskengine.features.history import COMPACT_AT, NEVER, HistoryOps
from riskengine.features.keytable import KeyTable
from riskengine.features.plan import (
    ANCHOR,
    ENTRIES,
    HEAD,
    KEY,
    MAXTS,
    PARTIAL,
    BufferPlan,
    KeyPlan,
)
from riskengine.features.tilecounts import CountTiles, counts_only
from riskengine.features.tiles import TiledBuffer

FastPath = Callable[[dict[str, Any], int], "dict[str, Any] | None"]


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1
        self.reads: dict[str, str] = {}
        """Event field → the local it is read into once, at the top (`read`)."""
        self.quantized: dict[str, str] = {}

    def read(self, field: str, quantized: bool = False) -> str:
        """The local holding the event's `field` (its micro-units when `quantized`)."""
        name = self.reads.get(field)
        if name is None:
            name = self.reads[field] = f"x{len(self.reads)}"
        if not quantized:
            return name
        q = self.quantized.get(field)
        if q is None:
            q = self.quantized[field] = f"q{len(self.quantized)}"
        return q

    def reads_source(self) -> list[str]:
        """The statements reading every field `read` named, once per event."""
        lines = [f"    {name} = event.get({field!r})" for field, name in self.reads.items()]
        lines += [f"    {q} = quantize({self.reads[field]})"
                  for field, q in self.quantized.items()]
        return lines

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def indent(self) -> None:
        self.depth += 1

    def dedent(self) -> None:
        self.depth -= 1


def build_fast_path(scene: Any) -> FastPath:
    """Generate and compile the fast path of a `SceneFeatures`."""
    names = list(scene.template)
    index_of = {name: i for i, name in enumerate(names)}
    lateness = scene.lateness_ms
    w = _Writer()
    env: dict[str, Any] = {"scene": scene, "lists": scene.lists, "EMPTY": {},
                           "bisect_left": bisect_left, "bisect_right": bisect_right,
                           "INF": float("inf"), "NEVER": NEVER,
                           "sqrt": math.sqrt, "quantize": quantize}
    w("t = event['timestamp']")
    w("gmax = scene.global_max")
    w(f"if t < gmax - {lateness}:")
    w("    return None  # late: the general path")
    reads_at = len(w.lines)  # the event's fields are read here, once (see _Writer.read)
    # Phase 1: keys, forgetting and order checks. Nothing is changed here except
    # forgetting idle keys, which the general path would do identically.
    for k, (table, plan) in enumerate(zip(scene.tables, scene.plans, strict=True)):
        env[f"ents{k}"] = table.entities
        env[f"tab{k}"] = table
        _key_expr(w, k, plan)
        w(f"o{k} = False")
        w(f"if k{k} is not None:")
        w.indent()
        w(f"s{k} = ents{k}.get(k{k})")
        w(f"if s{k} is not None:")
        w.indent()
        w(f"if s{k}[{MAXTS}] <= gmax - {table.idle_ms}:")
        w(f"    del ents{k}[k{k}]")
        w(f"    s{k}[{KEY}] = None  # no longer its key's: its bucket will drop it")
        w(f"    s{k} = None")
        w(f"    if t + {lateness} < tab{k}.partial_until:")
        w("        return None  # may be a key evicted for size: marked on that path")
        anchors = " or ".join(
            f"t < s{k}[{at + ANCHOR}]" if b.kind == "history" else
            f"t < (s{k}[{at}][0] if s{k}[{at}].__class__ is tuple else s{k}[{at}].anchor)"
            for b, at in zip(plan.buffers, plan.offsets, strict=True))
        w(f"elif t + {lateness} < s{k}[{PARTIAL}]:")
        w("    return None  # a key started in a partial zone: marked on that path")
        w("else:")
        w(f"    o{k} = {anchors}  # out of order here: stored as the general path does")
        w.dedent()
        w(f"elif t + {lateness} < tab{k}.partial_until:")
        w("    return None  # may be a key evicted for size: marked on that path")
        w.dedent()
    # Phase 2: update and read.
    w("g = t if t > gmax else gmax")
    for k, (table, plan) in enumerate(zip(scene.tables, scene.plans, strict=True)):
        env[f"buckets{k}"] = table.buckets
        horizon = table.idle_ms
        w(f"if k{k} is not None:")
        w.indent()
        w(f"if s{k} is None:")
        w.indent()
        _fresh(w, env, k, table, index_of, lateness)
        w.dedent()
        w(f"elif o{k}:")
        w("    " + ", ".join(f"f{index_of[n]}" for n in plan.output_names)
          + f", = scene.store_out_of_order({k}, s{k}, event, lsn)")
        w("else:")
        w.indent()
        # A buffer without a filter stores every event: then the key always does.
        always = any(b.predicate is None for b in plan.buffers)
        if not always:
            w("stored = False")
        for j, (bplan, at) in enumerate(zip(plan.buffers, plan.offsets, strict=True)):
            _passes(w, env, k, j, bplan)
            if bplan.kind == "history":
                ops = cast(HistoryOps, table.ops[j])
                env[f"ops{k}_{j}"] = ops
                _history_step(w, k, j, bplan, at, ops, index_of, horizon, always)
            else:
                _tiled_step(w, env, f"s{k}[{at}]", f"{k}_{j}", bplan, index_of)
                if not always:
                    w("if passes:")
                    w("    stored = True")
        if not always:
            w("if stored:")
            w.indent()
        w(f"if t > s{k}[{MAXTS}]:")
        w(f"    s{k}[{MAXTS}] = t")
        for bplan, at in zip(plan.buffers, plan.offsets, strict=True):
            if bplan.kind != "history":
                _tiled_trim(w, f"s{k}[{at}]", bplan, horizon, lateness)
        if not always:
            w.dedent()
        w.dedent()
        w.dedent()
        w("else:")
        w("    " + " = ".join(f"f{index_of[n]}" for n in plan.output_names) + " = None")
    w("if t > gmax:")
    w("    scene.global_max = t")
    w("    if t >= scene.sweep_at:")
    w("        scene.sweep()")
    w("return {" + ", ".join(f"{n!r}: f{i}" for i, n in enumerate(names)) + "}")
    w.lines[reads_at:reads_at] = w.reads_source()
    source = "def fast(event, lsn):\n" + "\n".join(w.lines) + "\n"
    code = compile(source, f"<fast path of scene {scene!r}>", "exec")
    exec(code, env)
    fast: FastPath = env["fast"]
    fast.__doc__ = source  # kept for debugging: print(scene.fast.__doc__)
    return fast


def _key_expr(w: _Writer, k: int, plan: KeyPlan) -> None:
    if len(plan.by) == 1:
        w(f"k{k} = {w.read(plan.by[0])}")
        return
    parts = ", ".join(w.read(f) for f in plan.by)
    w(f"k{k} = ({parts},)")
    w(f"if None in k{k}:")
    w(f"    k{k} = None")


def _passes(w: _Writer, env: dict[str, Any], k: int, j: int, bplan: BufferPlan,
            var: str = "passes") -> None:
    if bplan.predicate is not None:
        env[f"pred{k}_{j}"] = bplan.predicate
        w(f"{var} = bool(pred{k}_{j}(event, EMPTY, lists))")
    elif bplan.kind != "history":
        w(f"{var} = True")


def _entry_expr(w: _Writer, bplan: BufferPlan) -> str:
    parts = ["t", "lsn", *(w.read(field, quantized) for field, quantized in bplan.slots)]
    return "(" + ", ".join(parts) + ",)"


def _fresh(w: _Writer, env: dict[str, Any], k: int, table: KeyTable,
           index_of: dict[str, int], lateness: int) -> None:
    """A new key: compute the values of a one-event window, build the entity in one go."""
    plan = table.plan
    parts = [f"t, k{k}, NEVER"]  # MAXTS, KEY, PARTIAL (never here: see phase 1)
    tail = ""
    after: list[str] = []
    any_passes = []
    for j, (bplan, at) in enumerate(zip(plan.buffers, plan.offsets, strict=True)):
        p = "True" if bplan.predicate is None else f"p{j}"
        if bplan.predicate is not None:
            _passes(w, env, k, j, bplan, p)
        any_passes.append(p)
        e = f"e{j}"
        if bplan.kind != "history":  # lazy: (anchor, entry), see features.tiles
            w(f"{e} = {_entry_expr(w, bplan)}" if bplan.predicate is None else
              f"{e} = {_entry_expr(w, bplan)} if {p} else None")
            parts.append(f"(t, {e})")
            _one_event_outputs(w, j, bplan, e, p, index_of)
            continue
        if bplan.predicate is None:
            w(f"{e} = {_entry_expr(w, bplan)}")
        else:
            w(f"{e} = {_entry_expr(w, bplan)} if {p} else None")
        values = {}
        for slot in sorted({s for window in bplan.windows for _, s in window.agg_types}):
            values[slot] = f"v{j}_{slot}"
            if bplan.predicate is None:
                w(f"v{j}_{slot} = {e}[{slot}]")
            else:
                w(f"v{j}_{slot} = {e}[{slot}] if {p} else None")
        ops = cast(HistoryOps, table.ops[j])
        origin = ops.origin
        if ops.inline:
            parts.append(f"t, {origin}, None")
            if bplan.predicate is None:
                tail = f", {e}"
            else:
                after.append(f"if {p}: s{k}.append({e})")
        else:
            parts.append(f"t, 0, [{e}]" if bplan.predicate is None else
                         f"t, 0, [{e}] if {p} else []")
        for w_index, window in enumerate(bplan.windows):
            parts.append(str(origin))
            for m, ((cls, slot), rel) in enumerate(zip(window.agg_types, window.agg_at,
                                                       strict=True)):
                running = RUNNING.get(cls.func)
                if running is None:
                    env[f"agg_{cls.__name__}"] = cls
                    parts.append(f"agg_{cls.__name__}({slot})")
                    after.append(f"if {p}: s{k}[{at + rel}].add({e})")
                    continue
                # the state of a one-event window: fresh, then the value added
                a = f"n{j}_{w_index}_{m}"
                names = _names(a, cls.func)
                for name, fresh in zip(running.state, running.fresh, strict=True):
                    w(f"{names[name]} = {fresh}")
                w(f"v = {values[slot]}")
                w("if v is not None:")
                for line in running.source(running.add, names).splitlines():
                    w("    " + line)
                parts.append(", ".join(names[n] for n in running.state))
            for output in window.outputs:
                target = f"f{index_of[output.name]}"
                if output.agg_index < 0:
                    w(f"{target} = 1" if bplan.predicate is None else
                      f"{target} = 1 if {p} else 0")
                elif output.func in RUNNING:
                    w(f"{target} = {_result(f'n{j}_{w_index}_{output.agg_index}', output.func)}")
                else:  # min, max, first, last of one value: the value as it came in
                    w(f"{target} = {values[output.slot]}")
    always = any(b.predicate is None for b in plan.buffers)
    if not always:
        w(f"if {' or '.join(any_passes)}:")
        w.indent()
    w(f"s{k} = [{', '.join(parts)}{tail}]")
    for line in after:
        w(line)
    w(f"ents{k}[k{k}] = s{k}")
    w(f"b = g // {table.bucket_ms}")
    w(f"filed = buckets{k}.get(b)")
    w("if filed is None:")
    w(f"    buckets{k}[b] = [s{k}]")
    w("else:")
    w(f"    filed.append(s{k})")
    w(f"if len(ents{k}) > {table.max_entities}:")
    w(f"    tab{k}.shrink(g)")
    if not always:
        w.dedent()


def _history_step(w: _Writer, k: int, j: int, bplan: BufferPlan, at: int, ops: HistoryOps,
                  index_of: dict[str, int], horizon: int, always: bool) -> None:
    s = f"s{k}"
    filtered = bplan.predicate is not None
    w(f"entries = {s}" if ops.inline else f"entries = {s}[{at + ENTRIES}]")
    w("n = len(entries)")
    w(f"entry = {_entry_expr(w, bplan)} if passes else None" if filtered else
      f"entry = {_entry_expr(w, bplan)}")
    for window in bplan.windows:
        loads: list[str] = []
        stores: list[str] = []
        aggs = []
        for m, ((cls, slot), rel) in enumerate(zip(window.agg_types, window.agg_at,
                                                   strict=True)):
            a = f"a{m}"
            aggs.append((a, cls.func, slot))
            running = RUNNING.get(cls.func)
            if running is None or cls.func == "count_distinct":
                loads.append(f"{a} = {s}[{at + rel}]")  # an object or a dict: in place
                continue
            local = [f"{a}{n}" for n in running.state]
            held = [f"{s}[{at + rel + i}]" for i in range(len(local))]
            loads.append(f"{', '.join(local)} = {', '.join(held)}")
            stores.append(f"{', '.join(held)} = {', '.join(local)}")
        for line in loads:
            w(line)
        w(f"p = {s}[{at + window.ptr_at}]")
        w(f"lo = t - {window.window_ms}")
        w("if p < n and entries[p][0] <= lo:")
        w.indent()
        if aggs:
            w("while p < n and entries[p][0] <= lo:")
            w.indent()
            w("old = entries[p]")
            for a, func, slot in aggs:
                _evict(w, a, func, slot)
            w("p += 1")
            w.dedent()
        else:
            w("p = bisect_right(entries, (lo, INF), p, n)")
        w(f"{s}[{at + window.ptr_at}] = p")
        w.dedent()
        if filtered:
            w("if passes:")
            w.indent()
        for a, func, slot in aggs:
            _add(w, a, func, slot)
        w("count = n - p + 1")
        if filtered:
            w.dedent()
            w("else:")
            w("    count = n - p")
        for line in stores:
            w(line)
        for output in window.outputs:
            target = f"f{index_of[output.name]}"
            if output.agg_index < 0:
                w(f"{target} = count")
            else:
                w(f"{target} = {_result(f'a{output.agg_index}', output.func)}")
    w(f"{s}[{at + ANCHOR}] = t")
    if filtered:
        w("if passes:")
        w.indent()
    w("entries.append(entry)")
    if not always:
        w("stored = True")
    # In the fast path t is the key's new maxts, so the horizon is t − L − Rmax; the entry
    # just appended (time t) stops the scan.
    w(f"h = {s}[{at + HEAD}]")
    w(f"if entries[h][0] <= t - {horizon}:")
    w.indent()
    w(f"horizon = t - {horizon}")
    w("h += 1")
    w("while entries[h][0] <= horizon:")
    w("    h += 1")
    w(f"{s}[{at + HEAD}] = h")
    origin = ops.origin
    dropped = f"(h - {origin})" if origin else "h"
    w(f"if {dropped} >= {COMPACT_AT} and {dropped} * 2 > len(entries) - {origin}:")
    w(f"    ops{k}_{j}.compact({s})")
    w.dedent()
    if filtered:
        w.dedent()


def _names(a: str, func: str) -> dict[str, str]:
    """The generated code's locals for the running state of aggregate `a`: its dict
    itself (count_distinct), or one local per value (`a0k`, `a0s`, …)."""
    state = RUNNING[func].state
    return {state[0]: a} if func == "count_distinct" else {n: f"{a}{n}" for n in state}


def _running_step(w: _Writer, a: str, func: str, slot: int, entry: str, kind: str) -> None:
    running = RUNNING.get(func)
    if running is None:
        w(f"{a}.{kind}({entry})")
        return
    w(f"v = {entry}[{slot}]")
    w("if v is not None:")
    text = running.add if kind == "add" else running.evict
    for line in running.source(text, _names(a, func)).splitlines():
        w("    " + line)


def _evict(w: _Writer, a: str, func: str, slot: int) -> None:
    _running_step(w, a, func, slot, "old", "evict")


def _add(w: _Writer, a: str, func: str, slot: int) -> None:
    _running_step(w, a, func, slot, "entry", "add")


def _result(a: str, func: str) -> str:
    running = RUNNING.get(func)
    if running is None:
        return f"{a}.result()"
    return f"({running.source(running.result, _names(a, func))})"


def _one_event_outputs(w: _Writer, j: int, bplan: BufferPlan, e: str, p: str,
                       index_of: dict[str, int]) -> None:
    """The values of a tiled buffer's windows over one event (a key's first): each
    window holds just it (or nothing, when it fails the filter `p`)."""
    filtered = bplan.predicate is not None
    for w_index, window in enumerate(bplan.windows):
        for output in window.outputs:
            target = f"f{index_of[output.name]}"
            value = f"{e}[{output.slot}]"
            if filtered:
                value = f"({value} if {p} else None)"
            if output.func == "count":
                w(f"{target} = 1 if {p} else 0" if filtered else f"{target} = 1")
                continue
            running = RUNNING.get(output.func)
            if running is None:  # min, max, first, last of one value: the value
                w(f"{target} = {value}")
                continue
            names = _names(f"o{j}_{w_index}_{output.agg_index}", output.func)
            for name, fresh in zip(running.state, running.fresh, strict=True):
                w(f"{names[name]} = {fresh}")
            w(f"v = {value}")
            w("if v is not None:")
            for line in running.source(running.add, names).splitlines():
                w("    " + line)
            w(f"{target} = ({running.source(running.result, names)})")


def _inlined(bplan: BufferPlan) -> bool:
    """Whether a tiled buffer's in-order step is generated inline: every aggregate of it
    is kept as a running total (count and the running aggregates)."""
    return all(cls.func == "count" or cls.func in RUNNING
               for window in bplan.windows for cls, _ in window.agg_types)


def _agg_source(func: str, kind: str, obj: str, other: str = "") -> str:
    """Statements on the aggregator object `obj` (a `CountAgg` or a running class):
    ``add`` of the entry's value `v` (non-null), or ``unmerge`` of the tile part
    `other`; or the expression of its ``result``."""
    if func == "count":
        return {"add": f"{obj}.n += 1", "unmerge": f"{obj}.n -= {other}.n",
                "result": f"{obj}.n"}[kind]
    running = RUNNING[func]
    names = {n: f"{obj}.{n}" for n in running.state}
    if kind == "add":
        return running.source(running.add, names)
    if kind == "result":
        return running.source(running.result, names)
    if func == "count_distinct":
        return f"{obj}.unmerge({other})"
    return "\n".join(f"{obj}.{n} -= {other}.{n}" for n in running.state)


def _tiled_step(w: _Writer, env: dict[str, Any], slot: str, name: str, bplan: BufferPlan,
                index_of: dict[str, int]) -> None:
    """The in-order step of a key's tiled buffer (built first if it was lazy)."""
    counts = counts_only(bplan)
    env[f"bplan{name}"] = bplan
    env[f"kind{name}"] = CountTiles if counts else TiledBuffer
    w(f"b = {slot}")
    w("if b.__class__ is tuple:")
    w(f"    b = {slot} = kind{name}.first(bplan{name}, b)")
    w(f"entry = {_entry_expr(w, bplan)} if passes else (t, lsn)")
    if counts:
        _count_step(w, bplan, index_of)
        return
    if not _inlined(bplan):
        w("tmp = {}")
        w("b.step(entry, passes, tmp)")
        for name in bplan.output_names:
            w(f"f{index_of[name]} = tmp[{name!r}]")
        return
    hop = bplan.hop_ms
    w("order = b.order")
    w("if passes:")
    w(f"    i = t // {hop}")
    w("    tile = b.tiles[i] if order and order[-1] == i else b.new_tile(i)")
    w("    b.raw.append(entry)")
    w("tiles = b.tiles")
    w("starts = b.starts")
    for i, window in enumerate(bplan.windows):
        aggs = [(m, cls.func, slot) for m, (cls, slot) in enumerate(window.agg_types)]
        w(f"r = b.running[{i}]")
        w(f"pos = starts[{i}]")
        w(f"lo = (t - {window.window_ms}) // {hop}")
        w("if pos < len(order) and order[pos] < lo:")
        w.indent()
        w("while pos < len(order) and order[pos] < lo:")
        w.indent()
        w(f"part = tiles[order[pos]][{i}]")
        for m, func, _ in aggs:
            for line in _agg_source(func, "unmerge", f"r[{m}]", f"part[{m}]").splitlines():
                w(line)
        w("pos += 1")
        w.dedent()
        w(f"starts[{i}] = pos")
        w.dedent()
        w("if passes:")
        w.indent()
        w(f"part = tile[{i}]")
        for m, func, at in aggs:
            for obj in (f"part[{m}]", f"r[{m}]"):
                if func == "count":
                    w(_agg_source(func, "add", obj))
                    continue
                w(f"v = entry[{at}]")
                w("if v is not None:")
                for line in _agg_source(func, "add", obj).splitlines():
                    w("    " + line)
        w.dedent()
        for output in window.outputs:
            w(f"f{index_of[output.name]} = "
              f"({_agg_source(output.func, 'result', f'r[{output.agg_index}]')})")
    w("b.anchor = t")


def _count_step(w: _Writer, bplan: BufferPlan, index_of: dict[str, int]) -> None:
    """`CountTiles.step`, inline: a tile and each window's total are ints."""
    hop = bplan.hop_ms
    w("order = b.order")
    w("if passes:")
    w(f"    i = t // {hop}")
    w("    if order and order[-1] == i:")
    w("        b.tiles[i] += 1")
    w("    else:")
    w("        b.tiles[i] = 1")
    w("        order.append(i)")
    w("    b.raw.append(entry)")
    w("running = b.running")
    w("starts = b.starts")
    for i, window in enumerate(bplan.windows):
        w(f"total = running[{i}]")
        w(f"pos = starts[{i}]")
        w(f"lo = (t - {window.window_ms}) // {hop}")
        w("if pos < len(order) and order[pos] < lo:")
        w("    tiles = b.tiles")
        w("    while pos < len(order) and order[pos] < lo:")
        w("        total -= tiles[order[pos]]")
        w("        pos += 1")
        w(f"    starts[{i}] = pos")
        w("if passes:")
        w("    total += 1")
        w(f"running[{i}] = total")
        for output in window.outputs:
            w(f"f{index_of[output.name]} = total")
    w("b.anchor = t")


def _tiled_trim(w: _Writer, slot: str, bplan: BufferPlan, horizon: int,
                lateness: int) -> None:
    """`TiledBuffer.trim` after an in-order event: raw entries before the open tiles go
    inline (a key with an event every few hops drops one nearly every time), tiles past
    the horizon through the call (about once a hop)."""
    hop = bplan.hop_ms
    w(f"b = {slot}")
    w("if b.__class__ is not tuple:")
    w("    raw = b.raw")
    w(f"    cut = (t - {lateness}) // {hop} * {hop}")
    w("    if raw and raw[0][0] < cut:")
    w("        del raw[:bisect_left(raw, (cut,))]")
    w("    order = b.order")
    w(f"    if order and order[0] < (t - {horizon}) // {hop}:")
    w(f"        b.trim(t - {horizon}, t, {lateness})")


__all__ = ["FastPath", "HistoryOps", "build_fast_path"]
