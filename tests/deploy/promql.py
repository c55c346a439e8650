"""Enough of PromQL to know which metrics an expression reads.

`selectors(expr)` lists each vector selector as (metric name, label names it matches on);
label matchers, range and subquery brackets, strings, numbers, durations, Grafana
variables (``$__rate_interval``, ``$scene``) and the label lists of ``by``, ``without``,
``on``, ``ignoring``, ``group_left`` and ``group_right`` are skipped. A name followed by
``(`` must be a PromQL function or aggregation; unbalanced brackets, an unknown function
or a character PromQL does not have raise `PromQLError`.

    >>> selectors('sum by (le) (rate(x_bucket{scene=~"$scene"}[5m])) / on (a) y > 2')
    [('x_bucket', ('scene',)), ('y', ())]
"""

from __future__ import annotations

import re

AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
FUNCTIONS = AGGREGATIONS | frozenset({
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta",
    "deriv", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "ln", "log2", "log10", "minute", "month", "predict_linear", "rate", "resets", "round",
    "scalar", "sgn", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt",
    "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time",
    "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
    "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan",
    "tanh", "deg", "rad", "pi", "start", "end"})
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left",
                                 "group_right"})
OPERATOR_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
CLOSING = {"(": ")", "{": "}", "[": "]"}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<variable>\$\{?\w+(?::\w+)?\}?)
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>=~|!~|==|!=|>=|<=|[(){}\[\],=<>+\-*/%^@:])
""", re.VERBOSE)

Token = tuple[str, str]


class PromQLError(ValueError):
    pass


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        if match is None:
            raise PromQLError(f"unexpected {expr[at]!r} at {at} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
        at = match.end()
    return tokens


def _close(tokens: list[Token], at: int) -> int:
    """The index of the bracket closing the one at `at`."""
    stack = [CLOSING[tokens[at][1]]]
    for i in range(at + 1, len(tokens)):
        text = tokens[i][1]
        if tokens[i][0] != "punct":
            continue
        if text in CLOSING:
            stack.append(CLOSING[text])
        elif text in (")", "}", "]"):
            if text != stack.pop():
                raise PromQLError(f"mismatched {text!r}")
            if not stack:
                return i
    raise PromQLError(f"unclosed {tokens[at][1]!r}")


def _matcher_labels(tokens: list[Token]) -> tuple[str, ...]:
    """The label names of ``{a="x", b=~"y"}`` (the tokens between the braces)."""
    labels = []
    for i, (kind, text) in enumerate(tokens):
        if kind == "name" and i + 1 < len(tokens) and tokens[i + 1][1] in ("=", "!=", "=~", "!~"):
            labels.append(text)
    return tuple(labels)


def selectors(expr: str) -> list[tuple[str, tuple[str, ...]]]:
    tokens = tokenize(expr)
    found: list[tuple[str, tuple[str, ...]]] = []
    depth = 0
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "punct" and text in ("{", "["):
            i = _close(tokens, i) + 1
            continue
        if kind == "punct" and text == "(":
            depth += 1
        elif kind == "punct" and text == ")":
            depth -= 1
            if depth < 0:
                raise PromQLError(f"unbalanced ')' in {expr!r}")
        elif kind == "name":
            if text in LABEL_LIST_KEYWORDS:
                if following == "(":
                    i = _close(tokens, i + 1) + 1
                    continue
            elif text in OPERATOR_WORDS:
                pass
            elif following == "(" or (text in AGGREGATIONS and following in ("by", "without")):
                if text not in FUNCTIONS:
                    raise PromQLError(f"unknown function {text!r} in {expr!r}")
            else:
                labels: tuple[str, ...] = ()
                if following == "{":
                    end = _close(tokens, i + 1)
                    labels = _matcher_labels(tokens[i + 2:end])
                    i = end
                found.append((text, labels))
        i += 1
    if depth != 0:
        raise PromQLError(f"unbalanced '(' in {expr!r}")
    return found


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(expr)}
