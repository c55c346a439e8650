"""Brute-force reference for docs/semantics.md, written from the page alone.

The oracle keeps every accepted event and, for each new one, recomputes every feature
by scanning what it kept.  Nothing here is clever: it is meant to be read next to the
contract, line by line, and to be obviously right.  It is slow on purpose (quadratic in
the events of a key); tests keep their streams to a few thousand events.

Readings of points the contract leaves open are marked ``READING:`` and are listed in
the report that came with this file.

    >>> o = Oracle(["count(acct.history,1m)", "sum(amount#acct.history,1m)"], lateness_ms=0)
    >>> o.feed({"event_id": "a", "timestamp": 0, "acct": "A", "amount": 0.1}).features
    {'count(acct.history,1m)': 1, 'sum(amount#acct.history,1m)': 0.1}
    >>> o.feed({"event_id": "b", "timestamp": 60_000, "acct": "A", "amount": 0.2}).features
    {'count(acct.history,1m)': 1, 'sum(amount#acct.history,1m)': 0.2}
"""

from __future__ import annotations

import ast
import bisect
import math
import operator
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FUNCS",
    "FeatureSpec",
    "Oracle",
    "OracleResult",
    "parse_duration",
    "parse_feature",
    "where_predicate",
]

FUNCS = ("count", "sum", "avg", "min", "max", "count_distinct", "stddev", "first", "last")
NUMERIC_FUNCS = ("sum", "avg", "min", "max", "stddev")
MICRO = 1_000_000

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^([1-9][0-9]*)(ms|s|m|h|d)$")
_DSL = re.compile(
    r"^(?P<func>[A-Za-z_]+)\((?:(?P<target>[^#(),.]+)#)?(?P<by>[^#(),.]+)"
    r"\.(?P<kind>[A-Za-z_]+),(?P<window>[^#(),.]+)\)$"
)


def parse_duration(text: str) -> int:
    """'90s' -> 90000: a positive whole number of ms, s, m, h or d."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"not a duration: {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


# --------------------------------------------------------------------------- where
# A tiny evaluator of the Python-like filter syntax: names are event fields (absent ->
# null), a comparison involving null is false, `and` / `or` / `not` as in Python.

_CMP: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _eval(node: ast.AST, fields: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, fields)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return fields.get(node.id)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_eval(e, fields) for e in node.elts]
    if isinstance(node, ast.BoolOp):
        values = [bool(_eval(v, fields)) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _eval(node.operand, fields)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _eval(node.operand, fields)
        return None if v is None else -v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _eval(node.left, fields), _eval(node.right, fields)
        return None if a is None or b is None else _BIN[type(node.op)](a, b)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, fields)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, fields)
            if left is None or right is None:  # a comparison with null is false
                return False
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    raise ValueError(f"where form not supported by the oracle: {ast.dump(node)}")


def where_predicate(where: str | Callable[[Mapping[str, Any]], bool] | None
                    ) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over the event fields; None means every event passes."""
    if where is None:
        return lambda fields: True
    if callable(where):
        return where
    tree = ast.parse(where, mode="eval")
    return lambda fields: bool(_eval(tree, fields))


# --------------------------------------------------------------------------- features

@dataclass(frozen=True)
class FeatureSpec:
    name: str                 # the output name
    func: str
    target: str | None        # None only for `count` (which ignores it)
    by: tuple[str, ...]
    window: int               # W, ms
    kind: str                 # "history" | "window"
    hop: int | None           # H, ms (kind "window" only)
    where: Callable[[Mapping[str, Any]], bool]


def _canonical(func: str, target: str | None, by: tuple[str, ...], kind: str,
               window_text: str) -> str:
    by_text = "+".join(by)
    if target is None or (len(by) == 1 and target == by[0]):  # no '#': target = by
        return f"{func}({by_text}.{kind},{window_text})"
    return f"{func}({target}#{by_text}.{kind},{window_text})"


def parse_feature(spec: str | Mapping[str, Any] | FeatureSpec) -> FeatureSpec:
    """The seed DSL `func(target#by1+by2.kind,window)` or the YAML mapping."""
    if isinstance(spec, FeatureSpec):
        return spec
    if isinstance(spec, str):
        m = _DSL.match(spec.strip())
        if m is None:
            raise ValueError(f"not a feature: {spec!r}")
        by = tuple(m.group("by").split("+"))
        target = m.group("target")
        if target is None:  # no '#': target = by
            target = by[0] if len(by) == 1 else None
        d: dict[str, Any] = {"func": m.group("func"), "target": target, "by": list(by),
                             "kind": m.group("kind"), "window": m.group("window")}
    else:
        d = dict(spec)
    func = d["func"]
    if func not in FUNCS:
        raise ValueError(f"unknown function {func!r}")
    by_raw = d["by"]
    by = (by_raw,) if isinstance(by_raw, str) else tuple(by_raw)
    target = d.get("target")
    if target is None and len(by) == 1:
        target = by[0]
    if target is None and func != "count":
        raise ValueError(f"{func} needs a target")
    kind = d.get("kind") or "history"
    if kind not in ("history", "window"):
        raise ValueError(f"unknown kind {kind!r}")
    window_text = str(d["window"])
    window = parse_duration(window_text)
    hop = None
    if kind == "window":
        hop = parse_duration(str(d.get("hop") or "1h"))
        if hop > window:
            raise ValueError("hop must be <= window")
    name = d.get("name") or _canonical(func, target, by, kind, window_text)
    return FeatureSpec(name=name, func=func, target=target, by=by, window=window,
                       kind=kind, hop=hop, where=where_predicate(d.get("where")))


# --------------------------------------------------------------------------- oracle

@dataclass
class Record:
    """One accepted event as the oracle keeps it."""
    lsn: int
    t: int
    event_id: str
    fields: dict[str, Any]
    late: bool
    keys: dict[tuple[str, ...], tuple[Any, ...] | None]   # B -> key value (None: null key)
    passes: dict[str, bool]                               # feature name -> where passed


@dataclass(frozen=True)
class OracleResult:
    features: dict[str, Any]
    late: bool
    duplicate: bool = False
    lsn: int | None = None


@dataclass
class _Remembered:
    t: int
    result: OracleResult


def q(v: int | float) -> int:
    """Quantise to micro-units: Python's round of the product, half to even."""
    return round(v * MICRO)


def aggregate(func: str, members: list[tuple[int, int, Any]]) -> Any:
    """members: (t, lsn, target value) of every event in the set (value may be None)."""
    if func == "count":
        return len(members)
    present = [(t, lsn, v) for (t, lsn, v) in members if v is not None]
    if not present:
        return None
    values = [v for (_, _, v) in present]
    if func == "sum":
        return sum(q(v) for v in values) / MICRO
    if func == "avg":
        return sum(q(v) for v in values) / (len(values) * MICRO)
    if func == "stddev":
        k = len(values)
        s = sum(q(v) for v in values)
        s2 = sum(q(v) * q(v) for v in values)
        return math.sqrt(k * s2 - s * s) / (k * MICRO)
    if func == "min":
        return min(values)
    if func == "max":
        return max(values)
    if func == "count_distinct":
        distinct: list[Any] = []
        for v in values:
            if not any(v == d for d in distinct):   # Python equality
                distinct.append(v)
        return len(distinct)
    if func == "first":
        return min(present, key=lambda m: (m[0], m[1]))[2]
    if func == "last":
        return max(present, key=lambda m: (m[0], m[1]))[2]
    raise AssertionError(func)


@dataclass
class Oracle:
    """Feed events in arrival order; each answer is the contract's decision features."""

    features_in: Iterable[str | Mapping[str, Any] | FeatureSpec]
    lateness_ms: int
    idempotency_max: int = 1_000_000
    models: Mapping[str, Any] = field(default_factory=dict)
    """A scene's ``models:`` (README, Models); their files are read against `base_dir`."""
    base_dir: str = "."

    features: list[FeatureSpec] = field(init=False)
    records: list[Record] = field(init=False, default_factory=list)
    # (B, key) -> the events stored on that key: accepted, not late, passed the `where`
    # of at least one feature keyed by B.  Kept sorted by (time, LSN) so that a window is
    # a slice.  Nothing is ever forgotten here: the contract's values do not depend on it.
    by_key: dict[tuple[tuple[str, ...], tuple[Any, ...]], list[Record]] = field(
        init=False, default_factory=dict)
    idle_touches: int = field(init=False, default=0)
    remembered: OrderedDict[str, _Remembered] = field(init=False, default_factory=OrderedDict)
    G: int | None = field(init=False, default=None)
    next_lsn: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.features = [parse_feature(f) for f in self.features_in]
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names: {names}")
        self.key_sets: list[tuple[str, ...]] = list(dict.fromkeys(f.by for f in self.features))
        self.features_by = {b: [f for f in self.features if f.by == b] for b in self.key_sets}
        self.rmax_by = {b: max(f.window + (f.hop or 0) for f in fs)
                        for b, fs in self.features_by.items()}
        self.wmax_scene = max(f.window for f in self.features)
        self.scorers = [ModelOracle(name, spec, self.base_dir)
                        for name, spec in self.models.items()]

    @classmethod
    def from_scene(cls, scene: Mapping[str, Any], **kw: Any) -> Oracle:
        """From a scene mapping of the project config (`lateness`, `features`, `models`)."""
        return cls(scene["features"], parse_duration(str(scene.get("lateness", "5m"))),
                   models=scene.get("models") or {}, **kw)

    # ---- the contract's definitions

    @staticmethod
    def key_of(fields: Mapping[str, Any], by: tuple[str, ...]) -> tuple[Any, ...] | None:
        values = tuple(fields.get(b) for b in by)
        return None if any(v is None for v in values) else values

    def window_candidates(self, by: tuple[str, ...], key: tuple[Any, ...], t: int
                          ) -> list[Record]:
        """Stored events of key with a time that some feature keyed by B could cover at t.

        Only narrows the scan (a superset of every window); each feature applies its own
        exact conditions afterwards.
        """
        lo = min(self._window_start(f, t) for f in self.features_by[by])
        stored = self.by_key.get((by, key), [])
        i = bisect.bisect_left(stored, lo, key=lambda x: x.t)
        # a late event on a tiled feature also covers the rest of its own tile
        hi = max(t if f.kind == "history" else (t // f.hop + 1) * f.hop - 1
                 for f in self.features_by[by])
        return [x for x in stored[i:] if x.t <= hi]

    # ---- one event

    def feed(self, event: Mapping[str, Any]) -> OracleResult:
        fields = dict(event)
        event_id = fields["event_id"]
        t = fields["timestamp"]
        if not isinstance(event_id, str) or type(t) is not int:
            raise TypeError("the oracle takes string ids and int millisecond timestamps")

        # Idempotency: a remembered id returns the first decision and changes nothing.
        # READING: "remembered while its event time is > G - L - Wmax(scene)" is checked
        # with G as it stands when the duplicate arrives.
        seen = self.remembered.get(event_id)
        if seen is not None:
            if self.G is None or seen.t > self.G - self.lateness_ms - self.wmax_scene:
                r = seen.result
                return OracleResult(dict(r.features), r.late, duplicate=True, lsn=r.lsn)
            del self.remembered[event_id]

        n = self.next_lsn
        self.next_lsn += 1
        keys = {b: self.key_of(fields, b) for b in self.key_sets}

        # Lateness: t < G - L, G taken before e (the scene clock of docs/semantics.md).
        G = self.G
        late = G is not None and t < G - self.lateness_ms

        # Coverage only (no value depends on it): e touches a key that a runtime may have
        # dropped, its newest stored event at or before G - L - Rmax(B).
        for b, key in keys.items():
            stored = self.by_key.get((b, key)) if key is not None else None
            if G is not None and stored and \
                    stored[-1].t <= G - self.lateness_ms - self.rmax_by[b]:
                self.idle_touches += 1

        passes = {f.name: f.where(fields) for f in self.features}
        values: dict[str, Any] = {}
        for b, key in keys.items():
            if key is None:  # a null key field: the feature is null
                for f in self.features_by[b]:
                    values[f.name] = None
                continue
            candidates = self.window_candidates(b, key, t)
            for f in self.features_by[b]:
                members = []
                for x in candidates:
                    inside = self._in_window(f, x.t, t, late)
                    if not (x.passes[f.name] and x.lsn < n and inside):
                        continue
                    if late and G is not None and not self._above_floor(f, x.t, G):
                        continue
                    members.append((x.t, x.lsn, self._target(f, x.fields)))
                if passes[f.name]:
                    members.append((t, n, self._target(f, fields)))
                values[f.name] = aggregate(f.func, members)
        values = {f.name: values[f.name] for f in self.features}
        for scorer in self.scorers:
            values[scorer.key] = scorer.score(fields, values)

        rec = Record(lsn=n, t=t, event_id=event_id, fields=fields, late=late, keys=keys,
                     passes=passes)
        self.records.append(rec)
        if not late:
            for b, key in keys.items():
                if key is not None and any(passes[f.name] for f in self.features_by[b]):
                    bisect.insort(self.by_key.setdefault((b, key), []), rec,
                                  key=lambda x: (x.t, x.lsn))
            # READING: G counts every accepted event that is not late, also one stored on
            # no key (all key fields null, or every filter failed).
            self.G = t if G is None else max(G, t)

        result = OracleResult(values, late, duplicate=False, lsn=n)
        self.remembered[event_id] = _Remembered(t, result)
        while len(self.remembered) > self.idempotency_max:
            self.remembered.popitem(last=False)
        return OracleResult(dict(values), late, duplicate=False, lsn=n)

    # ---- the window conditions

    @staticmethod
    def _target(f: FeatureSpec, fields: Mapping[str, Any]) -> Any:
        if f.func == "count":
            return True  # count ignores its target and counts the event
        assert f.target is not None
        return fields.get(f.target)

    @staticmethod
    def _window_start(f: FeatureSpec, t: int) -> int:
        """The earliest time f's window can cover at t (inclusive)."""
        if f.kind == "history":
            return t - f.window + 1
        assert f.hop is not None
        return ((t - f.window) // f.hop) * f.hop

    @staticmethod
    def _in_window(f: FeatureSpec, tx: int, t: int, late: bool) -> bool:
        if f.kind == "history":
            return t - f.window < tx <= t
        assert f.hop is not None
        if late:  # whole tiles: the engine keeps only per-tile partial aggregates
            return (t - f.window) // f.hop <= tx // f.hop <= t // f.hop
        return ((t - f.window) // f.hop) * f.hop <= tx <= t

    def _above_floor(self, f: FeatureSpec, tx: int, G: int) -> bool:
        """The late event's floor: t(x) > G − L − W (tiled: whole tiles from
        floor((G − L − W)/H))."""
        if f.kind == "history":
            return tx > G - self.lateness_ms - f.window
        assert f.hop is not None
        return tx // f.hop >= (G - self.lateness_ms - f.window) // f.hop


class ModelOracle:
    """A model's score as the README's Models section says it: the inputs in order, each a
    feature's value or else the event field's, NaN when missing or not a number, one
    float32 row; class 1's probability of a ``[N, 2]`` output, or a regressor's first
    value; None when that is not a finite number. Runs onnxruntime on the file itself."""

    def __init__(self, name: str, spec: Mapping[str, Any], base_dir: str) -> None:
        import os

        import numpy as np
        import onnxruntime

        self.key = f"model:{name}"
        self.inputs = list(spec["inputs"])
        self.output = spec.get("output", "probability")
        self.session = onnxruntime.InferenceSession(
            os.path.join(base_dir, spec["uri"]), providers=["CPUExecutionProvider"])
        self.np = np

    def score(self, fields: Mapping[str, Any], features: Mapping[str, Any]) -> float | None:
        row = []
        for name in self.inputs:
            v = features[name] if name in features else fields.get(name)
            row.append(float(v) if type(v) in (int, float, bool) else math.nan)
        outputs = self.session.run(None, {self.session.get_inputs()[0].name:
                                          self.np.array([row], dtype=self.np.float32)})
        value = float(outputs[-1][0][1] if self.output == "probability"
                      else outputs[0].reshape(-1)[0])
        return value if math.isfinite(value) else None
