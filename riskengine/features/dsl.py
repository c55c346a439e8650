"""Feature definitions: the seed DSL `func(target#by.kind,window)` and the YAML form.

Both become a frozen `FeatureSpec`. A bad definition raises `FeatureDefinitionError` with
the feature text and the position of the problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from riskengine.durations import parse_duration
from riskengine.exceptions import ConfigError, FeatureDefinitionError

FUNCTIONS = ("count", "sum", "avg", "min", "max", "count_distinct", "stddev", "first", "last")
NUMERIC_FUNCTIONS = frozenset({"sum", "avg", "min", "max", "stddev"})
KINDS = ("history", "window")
DEFAULT_HOP_MS = 3_600_000
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DSL = re.compile(
    r"\s*(?P<func>[A-Za-z_]+)\s*\(\s*(?P<key>[^,()]*?)\s*,\s*(?P<window>[^,()]*?)\s*\)\s*\Z"
)
_YAML_KEYS = frozenset({"name", "func", "target", "by", "window", "kind", "where", "hop"})


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature: `func` over `target`, keyed by the `by` fields, over `window` ms."""

    name: str
    func: str
    target: str
    by: tuple[str, ...]
    window_ms: int
    window_text: str
    kind: str = "history"
    where: str | None = None
    hop_ms: int = DEFAULT_HOP_MS

    @property
    def canonical(self) -> str:
        """The DSL string of this definition (the default output name)."""
        by = "+".join(self.by)
        key = by if self.target == self.by[0] else f"{self.target}#{by}"
        return f"{self.func}({key}.{self.kind},{self.window_text})"

    @property
    def signature(self) -> str:
        """Everything that defines the stored state; a change starts the state afresh."""
        return (f"{self.canonical}|where={self.where or ''}|"
                f"hop={self.hop_ms if self.kind == 'window' else 0}")


def parse_feature(definition: object) -> FeatureSpec:
    """Parse a DSL string or a YAML mapping into a `FeatureSpec`.

    >>> parse_feature("sum(amount#rcv_account.history,1h)").by
    ('rcv_account',)
    >>> parse_feature("count(pay_account.history,1h)").name
    'count(pay_account.history,1h)'
    """
    if isinstance(definition, str):
        return parse_dsl(definition)
    if isinstance(definition, Mapping):
        return _parse_mapping(definition)
    raise FeatureDefinitionError(
        f"a feature is a DSL string like 'count(pay_account.history,1h)' or a mapping with "
        f"func/target/by/window, got {type(definition).__name__}")


def parse_dsl(text: str) -> FeatureSpec:
    """Parse the seed syntax `func(target#by.kind,window)`; `#` absent means target = by."""
    if len(text) > 300:
        raise FeatureDefinitionError(f"feature {text[:40]!r}...: longer than 300 characters")
    match = _DSL.match(text)
    if match is None:
        raise FeatureDefinitionError(
            f"feature {text!r}: expected func(target#by.kind,window), "
            f"e.g. sum(amount#rcv_account.history,1h){_first_bad(text)}")
    func = match.group("func")
    _check_func(func, text, match.start("func"))
    key = match.group("key")
    key_at = match.start("key")
    if "." not in key:
        raise _error(text, key_at + len(key),
                     "the key needs a kind suffix: .history (exact) or .window (tiled)")
    body, _, kind = key.rpartition(".")
    kind_at = key_at + len(body) + 1
    if kind not in KINDS:
        raise _error(text, kind_at, f"unknown kind {kind!r}; use history or window")
    if body.count("#") > 1:
        raise _error(text, key_at + body.index("#", body.index("#") + 1), "more than one '#'")
    target, hash_sign, by_text = body.partition("#")
    by_at = key_at + (len(target) + 1 if hash_sign else 0)
    if not hash_sign:
        by_text = target
    by = tuple(part.strip() for part in by_text.split("+"))
    for field in by:
        if not _FIELD.match(field):
            raise _error(text, by_at, f"{field!r} is not a field name")
    target = target.strip() if hash_sign else by[0]
    if not _FIELD.match(target):
        raise _error(text, key_at, f"{target!r} is not a field name")
    window_text = match.group("window")
    try:
        window_ms = parse_duration(window_text, what=f"feature {text!r} window")
    except ConfigError as exc:
        raise _error(text, match.start("window"), str(exc).split(": ", 1)[-1]) from None
    spec = FeatureSpec(name=text.strip(), func=func, target=target, by=by, window_ms=window_ms,
                       window_text=window_text, kind=kind)
    _check_window(spec, text)
    return spec


def _parse_mapping(raw: Mapping[object, object]) -> FeatureSpec:
    label = str(raw.get("name") or raw)
    unknown = set(raw) - _YAML_KEYS
    if unknown:
        raise FeatureDefinitionError(
            f"feature {label!r}: unknown keys {sorted(map(str, unknown))}; "
            f"allowed: {', '.join(sorted(_YAML_KEYS))}")
    func = raw.get("func")
    if not isinstance(func, str):
        raise FeatureDefinitionError(f"feature {label!r}: 'func' is required, one of "
                                     f"{', '.join(FUNCTIONS)}")
    _check_func(func, label, None)
    by_raw = raw.get("by")
    by_list = [by_raw] if isinstance(by_raw, str) else by_raw
    if not isinstance(by_list, list) or not by_list or not all(
            isinstance(f, str) and _FIELD.match(f) for f in by_list):
        raise FeatureDefinitionError(
            f"feature {label!r}: 'by' must be a field name or a non-empty list of field names")
    by = tuple(by_list)
    if len(set(by)) != len(by):
        raise FeatureDefinitionError(f"feature {label!r}: 'by' repeats a field")
    target = raw.get("target", by[0] if func == "count" or len(by) == 1 else None)
    if not isinstance(target, str) or not _FIELD.match(target):
        raise FeatureDefinitionError(f"feature {label!r}: 'target' must be a field name")
    window_raw = raw.get("window")
    window_ms = parse_duration(window_raw, what=f"feature {label!r} window")
    window_text = window_raw if isinstance(window_raw, str) else f"{window_ms}ms"
    kind = raw.get("kind", "history")
    if kind not in KINDS:
        raise FeatureDefinitionError(f"feature {label!r}: kind must be history or window")
    where = raw.get("where")
    if where is not None and (not isinstance(where, str) or not where.strip()):
        raise FeatureDefinitionError(f"feature {label!r}: 'where' must be an expression string")
    hop_raw = raw.get("hop")
    if hop_raw is not None and kind != "window":
        raise FeatureDefinitionError(f"feature {label!r}: 'hop' only applies to kind: window")
    hop_ms = parse_duration(hop_raw, what=f"feature {label!r} hop") if hop_raw else DEFAULT_HOP_MS
    spec = FeatureSpec(name="", func=str(func), target=target, by=by, window_ms=window_ms,
                       window_text=window_text.strip(), kind=str(kind), where=where,
                       hop_ms=hop_ms)
    name = raw.get("name")
    if name is None:
        name = spec.canonical
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise FeatureDefinitionError(f"feature {label!r}: 'name' must be a non-empty string")
    spec = FeatureSpec(name=name, func=spec.func, target=spec.target, by=spec.by,
                       window_ms=spec.window_ms, window_text=spec.window_text, kind=spec.kind,
                       where=spec.where, hop_ms=spec.hop_ms)
    _check_window(spec, label)
    return spec


def _check_func(func: str, text: str, at: int | None) -> None:
    if func not in FUNCTIONS:
        message = f"unknown function {func!r}; use one of {', '.join(FUNCTIONS)}"
        if at is None:
            raise FeatureDefinitionError(f"feature {text!r}: {message}")
        raise _error(text, at, message)


def _check_window(spec: FeatureSpec, text: str) -> None:
    if spec.window_ms <= 0:
        raise FeatureDefinitionError(f"feature {text!r}: the window must be positive")
    if spec.window_ms > 400 * 86_400_000:
        raise FeatureDefinitionError(f"feature {text!r}: windows longer than 400d are refused")
    if spec.kind == "window" and not 0 < spec.hop_ms <= spec.window_ms:
        raise FeatureDefinitionError(
            f"feature {text!r}: the hop must be positive and no longer than the window")


def _error(text: str, at: int, message: str) -> FeatureDefinitionError:
    return FeatureDefinitionError(f"feature {text!r} at column {at + 1}: {message}")


def _first_bad(text: str) -> str:
    opens = text.find("(")
    if opens < 0:
        return " (no '(' found)"
    if text.count(",") != 1:
        return f" (expected exactly one ',' between key and window, found {text.count(',')})"
    if not text.rstrip().endswith(")"):
        return " (missing closing ')')"
    return ""
