"""The in-order fast path of a scene, generated as straight-line Python at load time.

For an event that is not late and not earlier than any buffer it touches (almost every
event in production), the generated function slides the windows, updates the running
aggregates and reads the values with no per-feature dispatch: sums and distinct counters
are inlined, other aggregators are called directly. It returns None *before changing any
state* when the event needs the general path (`SceneFeatures.compute`): late, out of
order. Both paths implement docs/semantics.md and
are checked against tests/oracle.py.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from riskengine.features.plan import BufferPlan, KeyPlan
from riskengine.state.memory import EntityState

FastPath = Callable[[dict[str, Any], int], "dict[str, Any] | None"]
_INLINE = frozenset({"sum", "avg", "count_distinct"})


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
    w = _Writer()
    env: dict[str, Any] = {"EntityState": EntityState, "scene": scene, "lists": scene.lists,
                           "EMPTY": {}, "bisect_right": bisect_right, "INF": float("inf")}
    w("t = event['timestamp']")
    w("gmax = scene.global_max")
    for i in range(len(names)):
        w(f"f{i} = None")
    # Phase 1: keys, forgetting, lateness and order checks. Nothing is changed here except
    # forgetting idle keys, which the general path would do identically.
    for k, (table, plan) in enumerate(zip(scene.tables, scene.plans, strict=True)):
        env[f"ents{k}"] = table.entities
        env[f"kplan{k}"] = plan
        _key_expr(w, k, plan)
        w(f"if k{k} is not None:")
        w.indent()
        w(f"s{k} = ents{k}.get(k{k})")
        w(f"if s{k} is not None:")
        w.indent()
        w(f"mx = s{k}.maxts")
        w(f"if mx <= gmax - {plan.max_window_ms + scene.lateness_ms}:")
        w(f"    del ents{k}[k{k}]")
        w(f"    s{k} = None")
        w(f"elif t < mx - {scene.lateness_ms}:")
        w("    return None")
        anchors = " or ".join(f"t < s{k}.buffers[{j}].anchor" for j in range(len(plan.buffers)))
        w(f"elif {anchors}:")
        w("    return None")
        w.dedent()
        w.dedent()
    # Phase 2: update and read.
    for k, plan in enumerate(scene.plans):
        w(f"if k{k} is not None:")
        w.indent()
        w(f"fresh = s{k} is None")
        w("if fresh:")
        w(f"    s{k} = EntityState(kplan{k})")
        w("stored = False")
        for j, bplan in enumerate(plan.buffers):
            env[f"bplan{k}_{j}"] = bplan
            if bplan.predicate is not None:
                env[f"pred{k}_{j}"] = bplan.predicate
                w(f"passes = bool(pred{k}_{j}(event, EMPTY, lists))")
            else:
                w("passes = True")
            w(f"b = s{k}.buffers[{j}]")
            if bplan.kind == "history":
                _history_step(w, bplan, index_of, plan.max_window_ms + scene.lateness_ms)
            else:
                _tiled_step(w, bplan, index_of, scene.lateness_ms)
        w("if stored:")
        w.indent()
        w(f"if t > s{k}.maxts:")
        w(f"    s{k}.maxts = t")
        for j, bplan in enumerate(plan.buffers):
            if bplan.kind != "history":
                w(f"s{k}.buffers[{j}].trim(t - {plan.max_window_ms + scene.lateness_ms}, t, "
                  f"{scene.lateness_ms})")
        w("if fresh:")
        w(f"    ents{k}[k{k}] = s{k}")
        w("else:")
        w(f"    ents{k}.move_to_end(k{k})")
        w.dedent()
        w("elif not fresh:")
        w(f"    ents{k}.move_to_end(k{k})")
        w.dedent()
    w("if t > gmax:")
    w("    scene.global_max = t")
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


def _entry_expr(bplan: BufferPlan) -> str:
    parts = ["t", "lsn"]
    for field, quantized in bplan.slots:
        if quantized:
            parts.append(f"(None if (v := event.get({field!r})) is None else round(v * 1000000))")
        else:
            parts.append(f"event.get({field!r})")
    return "(" + ", ".join(parts) + ",)"


def _history_step(w: _Writer, bplan: BufferPlan, index_of: dict[str, int],
                  horizon: int) -> None:
    w("entries = b.entries")
    w("n = len(entries)")
    w("ptrs = b.ptrs")
    w("aggs = b.aggs")
    w(f"entry = {_entry_expr(bplan)} if passes else None")
    for i, window in enumerate(bplan.windows):
        agg_names = [f"a{m}" for m in range(len(window.agg_types))]
        if agg_names:
            w(f"{', '.join(agg_names)}, = aggs[{i}]")
        w(f"p = ptrs[{i}]")
        w(f"lo = t - {window.window_ms}")
        w("if p < n and entries[p][0] <= lo:")
        w.indent()
        if agg_names:
            w("while p < n and entries[p][0] <= lo:")
            w.indent()
            w("old = entries[p]")
            for m, (cls, slot) in enumerate(window.agg_types):
                _evict(w, f"a{m}", cls.func, slot)
            w("p += 1")
            w.dedent()
        else:
            w("p = bisect_right(entries, (lo, INF), p, n)")
        w(f"ptrs[{i}] = p")
        w.dedent()
        w("if passes:")
        w.indent()
        for m, (cls, slot) in enumerate(window.agg_types):
            _add(w, f"a{m}", cls.func, slot)
        w("count = n - p + 1")
        w.dedent()
        w("else:")
        w("    count = n - p")
        for output in window.outputs:
            target = f"f{index_of[output.name]}"
            if output.agg_index < 0:
                w(f"{target} = count")
            else:
                w(f"{target} = {_result(f'a{output.agg_index}', output.func)}")
    w("b.anchor = t")
    w("if passes:")
    w.indent()
    w("entries.append(entry)")
    w("stored = True")
    # In the fast path t is the key's new maxts, so the horizon is t − L − Wmax; the entry
    # just appended (time t) stops the scan.
    w("h = b.head")
    w(f"if entries[h][0] <= t - {horizon}:")
    w.indent()
    w(f"horizon = t - {horizon}")
    w("h += 1")
    w("while entries[h][0] <= horizon:")
    w("    h += 1")
    w("b.head = h")
    w("if h > 8 and h * 2 > len(entries):")
    w("    b.compact()")
    w.dedent()
    w.dedent()


def _evict(w: _Writer, agg: str, func: str, slot: int) -> None:
    if func in ("sum", "avg"):
        w(f"v = old[{slot}]")
        w("if v is not None:")
        w(f"    {agg}.k -= 1")
        w(f"    {agg}.s -= v")
    elif func == "count_distinct":
        w(f"v = old[{slot}]")
        w("if v is not None:")
        w(f"    c = {agg}.counts")
        w("    left = c[v] - 1")
        w("    if left:")
        w("        c[v] = left")
        w("    else:")
        w("        del c[v]")
    else:
        w(f"{agg}.evict(old)")


def _add(w: _Writer, agg: str, func: str, slot: int) -> None:
    if func in ("sum", "avg"):
        w(f"v = entry[{slot}]")
        w("if v is not None:")
        w(f"    {agg}.k += 1")
        w(f"    {agg}.s += v")
    elif func == "count_distinct":
        w(f"v = entry[{slot}]")
        w("if v is not None:")
        w(f"    c = {agg}.counts")
        w("    c[v] = c.get(v, 0) + 1")
    else:
        w(f"{agg}.add(entry)")


def _result(agg: str, func: str) -> str:
    if func == "sum":
        return f"({agg}.s / 1000000 if {agg}.k else None)"
    if func == "avg":
        return f"({agg}.s / ({agg}.k * 1000000) if {agg}.k else None)"
    if func == "count_distinct":
        return f"(len({agg}.counts) or None)"
    return f"{agg}.result()"


def _tiled_step(w: _Writer, bplan: BufferPlan, index_of: dict[str, int],
                lateness_ms: int) -> None:
    w(f"entry = {_entry_expr(bplan)} if passes else (t, lsn)")
    w("tmp = {}")
    w("b.step(entry, passes, tmp)")
    for name in bplan.output_names:
        w(f"f{index_of[name]} = tmp[{name!r}]")
    w("if passes:")
    w("    stored = True")
