"""The in-order fast path of a scene, generated as straight-line Python at load time.

For an event that is not late (`t ≥ G − L`), not earlier than any buffer it touches and
not starting a key while evictions for size may have left a partial window (almost every
event in production), the generated function slides the windows, updates the running
aggregates and reads the values with no per-feature dispatch: entity slots are constant
indexes, sums and distinct counters are inlined, other aggregators are called directly.
A key seen for the first time (or again after it was forgotten) gets its entity as one
list display with the event already in it. The function returns None *before changing
any state* when the event needs the general path (`SceneFeatures.compute_general`): late,
out of order. Both paths implement docs/semantics.md and are checked against
tests/oracle.py.
"""

from __future__ import annotations

import math
from bisect import bisect_right
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
from riskengine.features.tiles import TiledBuffer

FastPath = Callable[[dict[str, Any], int], "dict[str, Any] | None"]


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1

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
                           "bisect_right": bisect_right, "INF": float("inf"), "NEVER": NEVER,
                           "TiledBuffer": TiledBuffer, "sqrt": math.sqrt, "quantize": quantize}
    w("t = event['timestamp']")
    w("gmax = scene.global_max")
    w(f"if t < gmax - {lateness}:")
    w("    return None  # late: the general path")
    # Phase 1: keys, forgetting and order checks. Nothing is changed here except
    # forgetting idle keys, which the general path would do identically.
    for k, (table, plan) in enumerate(zip(scene.tables, scene.plans, strict=True)):
        env[f"ents{k}"] = table.entities
        env[f"tab{k}"] = table
        _key_expr(w, k, plan)
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
            f"t < s{k}[{at + ANCHOR}]" if b.kind == "history" else f"t < s{k}[{at}].anchor"
            for b, at in zip(plan.buffers, plan.offsets, strict=True))
        w(f"elif {anchors} or t + {lateness} < s{k}[{PARTIAL}]:")
        w("    return None  # out of order, or a key started in a partial zone")
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
                _tiled_step(w, f"s{k}[{at}]", bplan, index_of)
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
                w(f"s{k}[{at}].trim(t - {horizon}, t, {lateness})")
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
    source = "def fast(event, lsn):\n" + "\n".join(w.lines) + "\n"
    code = compile(source, f"<fast path of scene {scene!r}>", "exec")
    exec(code, env)
    fast: FastPath = env["fast"]
    fast.__doc__ = source  # kept for debugging: print(scene.fast.__doc__)
    return fast


def _key_expr(w: _Writer, k: int, plan: KeyPlan) -> None:
    if len(plan.by) == 1:
        w(f"k{k} = event.get({plan.by[0]!r})")
        return
    parts = ", ".join(f"event.get({f!r})" for f in plan.by)
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


def _entry_expr(bplan: BufferPlan) -> str:
    parts = ["t", "lsn"]
    for field, quantized in bplan.slots:
        if quantized:
            parts.append(f"quantize(event.get({field!r}))")
        else:
            parts.append(f"event.get({field!r})")
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
        if bplan.kind != "history":
            env[f"bplan{k}_{j}"] = bplan
            w(f"tb{j} = TiledBuffer(bplan{k}_{j})")
            _tiled_step(w, f"tb{j}", bplan, index_of, passes=p, entry=e)
            parts.append(f"tb{j}")
            after.append(f"tb{j}.trim(t - {table.idle_ms}, t, {lateness})")
            continue
        if bplan.predicate is None:
            w(f"{e} = {_entry_expr(bplan)}")
        else:
            w(f"{e} = {_entry_expr(bplan)} if {p} else None")
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
    w(f"entry = {_entry_expr(bplan)} if passes else None" if filtered else
      f"entry = {_entry_expr(bplan)}")
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


def _tiled_step(w: _Writer, buffer: str, bplan: BufferPlan, index_of: dict[str, int],
                passes: str = "passes", entry: str = "entry") -> None:
    w(f"{entry} = {_entry_expr(bplan)} if {passes} else (t, lsn)")
    w("tmp = {}")
    w(f"{buffer}.step({entry}, {passes}, tmp)")
    for name in bplan.output_names:
        w(f"f{index_of[name]} = tmp[{name!r}]")


__all__ = ["FastPath", "HistoryOps", "build_fast_path"]
