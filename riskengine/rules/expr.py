"""Safe rule expressions: a whitelisted subset of Python compiled once to a plain function.

The source is parsed with `ast`, checked node by node against a whitelist, and turned into
Python source that is compiled a single time, so evaluating a rule costs one function call
with inlined, null-safe fast paths and no tree walking.

Semantics (see also docs/semantics.md, "Rules and decisions"):

- A bare name is a feature when the scene has a feature of that name, else an event field
  (absent field: None). ``event.x`` is always the field, ``features["..."]`` the feature.
- Numbers are int, float and bool. Comparisons (``< <= > >= == !=``, ``in``, ``not in``)
  are False when an operand is None or when the operands are not comparable (a string
  against a number: ``"1" != 1`` is False too); they never raise. So ``not (x > 5)`` is
  True for a null ``x``. ``==``/``!=``/``in`` against a literal None are refused at load:
  write ``x is None`` / ``x is not None``.
- Arithmetic with a None or non-number operand gives None (``+`` also joins two strings);
  division or modulo by zero gives None, as does an overflow. ``min``/``max`` ignore None
  arguments; ``abs``/``len``/``round``/``lower``/``upper`` of None give None;
  ``startswith``/``endswith``/``contains`` are False unless both arguments are strings.
- ``in_list("name", v)`` checks list expiry against ``event["timestamp"]`` (event time).
- ``pattern("p")`` and ``model("m")`` read ``features["pattern:p"]`` / ``features["model:m"]``:
  the engine puts pattern and model results in the features mapping under those keys.
- Limits: 4000 characters, 500 expression nodes, nesting depth 32, integer literals up to
  10**18, string literals up to 1000 characters, ``**`` only with a literal exponent in
  [-8, 8] and never nested.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from riskengine.exceptions import RuleCompileError

if TYPE_CHECKING:
    from riskengine.lists import Lists

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SOURCE_LEN",
    "Compiled",
    "ExprNames",
    "Translation",
    "compile_expression",
    "make_function",
    "model_key",
    "pattern_key",
    "translate_expression",
]

MAX_SOURCE_LEN = 4000
MAX_NODES = 500
MAX_DEPTH = 32
MAX_INT = 10**18
MAX_STR_LEN = 1000
MAX_POWER = 8
MAX_ROUND_DIGITS = 12
MAX_MINMAX_ARGS = 16


@dataclass(frozen=True, slots=True)
class ExprNames:
    """What an expression may refer to besides event fields."""

    features: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    patterns: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    allow_features: bool = True


class Compiled(Protocol):
    """A compiled expression: call it as ``fn(event, features, lists)``.

    It also tells what it reads, so the engine can check or precompute dependencies.
    """

    source: str
    origin: str
    features_read: frozenset[str]
    fields_read: frozenset[str]
    lists_read: frozenset[str]

    def __call__(self, event: Mapping[str, Any], features: Mapping[str, Any],
                 lists: Lists | None = None, /) -> Any: ...


def pattern_key(name: str) -> str:
    """Key under which the engine stores a sequence pattern's result in `features`."""
    return f"pattern:{name}"


def model_key(name: str) -> str:
    """Key under which the engine stores a model's score in `features`."""
    return f"model:{name}"


# --- runtime helpers (globals of every generated function) -----------------------------

_NUM = frozenset({int, float, bool})
_SCALAR = frozenset({str, int, float, bool})


def _comparable(a: object, b: object) -> bool:
    ta, tb = type(a), type(b)
    if ta in _NUM:
        return tb in _NUM
    if ta is str:
        return tb is str
    return a is not None and b is not None and ta is tb


def _safe(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if not _comparable(a, b):
            return False
        try:
            return bool(op(a, b))
        except (TypeError, ValueError):
            return False
    return compare


_lt = _safe(lambda a, b: a < b)
_le = _safe(lambda a, b: a <= b)
_gt = _safe(lambda a, b: a > b)
_ge = _safe(lambda a, b: a >= b)
_eq = _safe(lambda a, b: a == b)
_ne = _safe(lambda a, b: a != b)


def _contains_op(a: Any, b: Any, negate: bool) -> bool:
    if a is None or b is None:
        return False
    tb = type(b)
    if tb is str:
        return type(a) is str and (a not in b if negate else a in b)
    if tb in (list, tuple, dict, set, frozenset):
        try:
            return a not in b if negate else a in b
        except TypeError:
            return False
    return False


def _in(a: Any, b: Any) -> bool:
    return _contains_op(a, b, False)


def _not_in(a: Any, b: Any) -> bool:
    return _contains_op(a, b, True)


def _add(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta in _NUM and tb in _NUM:
        try:
            return a + b
        except ArithmeticError:
            return None
    if ta is str and tb is str:
        return a + b
    return None


def _arith(op: Callable[[Any, Any], Any], zero_is_none: bool) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if type(a) not in _NUM or type(b) not in _NUM or (zero_is_none and not b):
            return None
        try:
            result = op(a, b)
        except ArithmeticError:
            return None
        return result if type(result) in _NUM else None
    return apply


_sub = _arith(lambda a, b: a - b, False)
_mul = _arith(lambda a, b: a * b, False)
_div = _arith(lambda a, b: a / b, True)
_floordiv = _arith(lambda a, b: a // b, True)
_mod = _arith(lambda a, b: a % b, True)
_pow = _arith(lambda a, b: a**b, False)


def _abs(a: Any) -> Any:
    return abs(a) if type(a) in _NUM else None


def _len(a: Any) -> int | None:
    return len(a) if type(a) in (str, list, tuple, dict) else None


def _round(a: Any, digits: int | None = None) -> Any:
    if type(a) not in _NUM:
        return None
    try:
        return round(a) if digits is None else round(a, digits)
    except (ArithmeticError, ValueError):
        return None


def _extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
    def choose(*args: Any) -> Any:
        present = [a for a in args if a is not None]
        if not present:
            return None
        first = type(present[0])
        if first in _NUM:
            ok = all(type(a) in _NUM for a in present)
        else:
            ok = first is str and all(type(a) is str for a in present)
        return pick(present) if ok else None
    return choose


_min = _extreme(min)
_max = _extreme(max)


def _lower(s: Any) -> str | None:
    return s.lower() if type(s) is str else None


def _upper(s: Any) -> str | None:
    return s.upper() if type(s) is str else None


def _startswith(s: Any, p: Any) -> bool:
    return type(s) is str and type(p) is str and s.startswith(p)


def _endswith(s: Any, p: Any) -> bool:
    return type(s) is str and type(p) is str and s.endswith(p)


def _contains(s: Any, p: Any) -> bool:
    return type(s) is str and type(p) is str and p in s


_HELPERS: dict[str, Any] = {
    "_type": type, "_NUM": _NUM, "_SCALAR": _SCALAR, "_str": str,
    "_lt": _lt, "_le": _le, "_gt": _gt, "_ge": _ge, "_eq": _eq, "_ne": _ne,
    "_in": _in, "_not_in": _not_in,
    "_add": _add, "_sub": _sub, "_mul": _mul, "_div": _div, "_floordiv": _floordiv,
    "_mod": _mod, "_pow": _pow,
    "_abs": _abs, "_len": _len, "_round": _round, "_min": _min, "_max": _max,
    "_lower": _lower, "_upper": _upper,
    "_startswith": _startswith, "_endswith": _endswith, "_contains": _contains,
}

# Function name -> (helper, min args, max args).
_FUNCTIONS: dict[str, tuple[str, int, int]] = {
    "abs": ("_abs", 1, 1), "len": ("_len", 1, 1), "round": ("_round", 1, 2),
    "min": ("_min", 2, MAX_MINMAX_ARGS), "max": ("_max", 2, MAX_MINMAX_ARGS),
    "lower": ("_lower", 1, 1), "upper": ("_upper", 1, 1),
    "startswith": ("_startswith", 2, 2), "endswith": ("_endswith", 2, 2),
    "contains": ("_contains", 2, 2),
}
_SPECIAL_FUNCTIONS = ("in_list", "pattern", "model")
_ALLOWED_FUNCTIONS = ", ".join(sorted([*_FUNCTIONS, *_SPECIAL_FUNCTIONS]))

_CMP_SYMBOL: dict[type[ast.cmpop], str] = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}
_CMP_HELPER: dict[type[ast.cmpop], str] = {
    ast.Lt: "_lt", ast.LtE: "_le", ast.Gt: "_gt", ast.GtE: "_ge", ast.Eq: "_eq",
    ast.NotEq: "_ne", ast.In: "_in", ast.NotIn: "_not_in",
}
_BIN_SYMBOL: dict[type[ast.operator], str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
    ast.Mod: "%", ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
    ast.LShift: "<<", ast.RShift: ">>", ast.MatMult: "@",
}
_BIN_HELPER: dict[type[ast.operator], str] = {
    ast.Add: "_add", ast.Sub: "_sub", ast.Mult: "_mul", ast.Div: "_div",
    ast.FloorDiv: "_floordiv", ast.Mod: "_mod", ast.Pow: "_pow",
}
_REFUSED_NODES: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.JoinedStr: "f-strings are not allowed; compare the parts instead",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignment (:=) is not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Slice: "slices are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}
_RESERVED = frozenset({"event", "features"})
_NEWLINE = re.compile(r"\r\n|\r|\n")

_Operand = tuple[str, Any]  # ("const", value) | ("code", source) | ("tmp", name)


@dataclass(frozen=True, slots=True)
class Translation:
    """A checked expression as Python source over ``event``, ``features`` and ``lists``.

    `namespace` holds the helpers and constants the code refers to; temporaries and
    constants carry `prefix`, so several translations can share one generated function.
    """

    source: str
    origin: str
    code: str
    namespace: Mapping[str, Any]
    features_read: frozenset[str]
    fields_read: frozenset[str]
    lists_read: frozenset[str]


def translate_expression(source: str, *, names: ExprNames, origin: str,
                         prefix: str = "") -> Translation:
    """Check `source` against the whitelist and translate it to Python source.

    Raises RuleCompileError (with ``rule_id=origin``, line and 1-based column) for anything
    outside the whitelist, unknown features or lists, and sources over the size limits.
    """
    return _Compiler(source, names, origin, prefix).translate()


def make_function(text: str, name: str, namespace: Mapping[str, Any], filename: str) -> Any:
    """Compile generated module text once and return its function `name`.

    The function's globals are `namespace` with no builtins, so generated code can reach
    nothing but what was put there.
    """
    scope: dict[str, Any] = {**namespace, "__builtins__": {}}
    exec(compile(text, filename, "exec"), scope)
    return scope[name]


def compile_expression(source: str, *, names: ExprNames, origin: str) -> Compiled:
    """Check `source` and compile it once to ``fn(event, features, lists=None)``.

    Raises RuleCompileError as `translate_expression` does.
    """
    tr = translate_expression(source, names=names, origin=origin)
    text = f"def expr(event, features, lists=None):\n    return {tr.code}\n"
    fn = make_function(text, "expr", tr.namespace, f"<expr {origin}>")
    fn.source = source
    fn.origin = origin
    fn.generated = tr.code
    fn.features_read = tr.features_read
    fn.fields_read = tr.fields_read
    fn.lists_read = tr.lists_read
    compiled: Compiled = fn
    return compiled


class _Compiler:
    def __init__(self, source: str, names: ExprNames, origin: str, prefix: str) -> None:
        self.source = source
        self.prefix = prefix
        self.names = names
        self.origin = origin
        self.lines = _NEWLINE.split(source) if isinstance(source, str) else [""]
        self.bound: dict[str, Any] = {}
        self.helpers_used: set[str] = {"_type", "_NUM", "_str", "_SCALAR"}
        self.tmp_count = 0
        self.features_read: set[str] = set()
        self.fields_read: set[str] = set()
        self.lists_read: set[str] = set()

    # --- errors and positions ------------------------------------------------------------

    def fail(self, message: str, line: int = 1, column: int = 1) -> RuleCompileError:
        return RuleCompileError(message, rule_id=self.origin, line=line, column=column)

    def fail_at(self, node: ast.AST, message: str) -> RuleCompileError:
        line = getattr(node, "lineno", 1)
        offset = getattr(node, "col_offset", 0) - (1 if line == 1 else 0)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        column = len(text.encode("utf-8")[:max(offset, 0)].decode("utf-8", "ignore")) + 1
        return self.fail(message, line, column)

    def position(self, index: int) -> tuple[int, int]:
        before = self.source[:index]
        line_starts = [m.end() for m in _NEWLINE.finditer(before)]
        start = line_starts[-1] if line_starts else 0
        return len(line_starts) + 1, index - start + 1

    # --- pre-parse checks ----------------------------------------------------------------

    def precheck(self) -> None:
        if not isinstance(self.source, str):
            raise self.fail(f"the expression must be a string, not {type(self.source).__name__}")
        if not self.source.strip():
            raise self.fail("the expression is empty; write a condition such as `amount > 100`")
        if len(self.source) > MAX_SOURCE_LEN:
            raise self.fail(f"the expression is {len(self.source)} characters long, over the "
                            f"limit of {MAX_SOURCE_LEN}; split it into several rules or move "
                            "parts into features", *self.position(MAX_SOURCE_LEN))
        self.scan_brackets()

    def scan_brackets(self) -> None:
        """Refuse deep or unbalanced brackets before `ast.parse` sees them."""
        src = self.source
        stack: list[int] = []
        i, n = 0, len(src)
        while i < n:
            ch = src[i]
            if ch in "\"'":
                quote = src[i:i + 3] if src[i:i + 3] in ('"""', "'''") else ch
                i += len(quote)
                while i < n and not src.startswith(quote, i):
                    i += 2 if src[i] == "\\" else 1
                i += len(quote)
                continue
            if ch == "#":
                while i < n and src[i] not in "\r\n":
                    i += 1
                continue
            if ch in "([{":
                stack.append(i)
                if len(stack) > MAX_DEPTH:
                    raise self.fail(f"brackets nested more than {MAX_DEPTH} deep; simplify "
                                    "the expression", *self.position(i))
            elif ch in ")]}":
                if not stack:
                    raise self.fail(f"unmatched {ch!r}; remove it or add the opening "
                                    "bracket", *self.position(i))
                stack.pop()
            i += 1
        if stack:
            raise self.fail(f"{src[stack[-1]]!r} is never closed; add the closing bracket",
                            *self.position(stack[-1]))

    def parse(self) -> ast.expr:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse("(" + self.source + "\n)", mode="eval")
        except SyntaxError as exc:
            line = exc.lineno or 1
            column = (exc.offset or 1) - (1 if line == 1 else 0)
            if line > len(self.lines):
                line, column = len(self.lines), len(self.lines[-1]) + 1
            raise self.fail(f"syntax error: {exc.msg}; rules use Python expression syntax, "
                            "e.g. `amount > 100 and country in ('NG', 'RU')`",
                            line, max(column, 1)) from None
        except (RecursionError, MemoryError, ValueError, OverflowError):
            raise self.fail(f"the expression is too deeply nested (limit {MAX_DEPTH}); "
                            "simplify it") from None
        body = tree.body
        count = 0
        stack: list[tuple[ast.AST, int]] = [(body, 1)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, ast.expr):
                count += 1
                if count > MAX_NODES:
                    raise self.fail_at(node, f"the expression has more than {MAX_NODES} "
                                       "parts; split it into several rules or features")
                if depth > MAX_DEPTH:
                    raise self.fail_at(node, f"the expression is nested more than "
                                       f"{MAX_DEPTH} levels deep; simplify it")
                depth += 1
            stack.extend((child, depth) for child in ast.iter_child_nodes(node))
        return body

    # --- code generation -----------------------------------------------------------------

    def translate(self) -> Translation:
        self.precheck()
        code = self.expr(self.parse())
        namespace = {name: _HELPERS[name] for name in self.helpers_used}
        namespace.update(self.bound)
        return Translation(self.source, self.origin, code, namespace,
                           frozenset(self.features_read), frozenset(self.fields_read),
                           frozenset(self.lists_read))

    def tmp(self) -> str:
        self.tmp_count += 1
        return f"_v{self.prefix}{self.tmp_count}"

    def helper(self, name: str) -> str:
        self.helpers_used.add(name)
        return name

    def bind(self, value: object) -> str:
        name = f"_k{self.prefix}{len(self.bound)}"
        self.bound[name] = value
        return name

    def constant(self, node: ast.expr) -> tuple[bool, Any]:
        """(True, value) for a literal, folding a sign on a number; else (False, None)."""
        if isinstance(node, ast.Constant):
            return True, self.check_constant(node)
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd)
                and isinstance(node.operand, ast.Constant)):
            value = self.check_constant(node.operand)
            if type(value) in (int, float):
                return True, -value if isinstance(node.op, ast.USub) else value
        return False, None

    def check_constant(self, node: ast.Constant) -> Any:
        value = node.value
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self.fail_at(node, f"integer {value} is too large (limit 10**18)")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail_at(node, "number is too large to be a float")
            return value
        if isinstance(value, str):
            if len(value) > MAX_STR_LEN:
                raise self.fail_at(node, f"string of {len(value)} characters is over the "
                                   f"limit of {MAX_STR_LEN}; put long value sets in a list")
            return value
        raise self.fail_at(node, f"{type(value).__name__} literals are not allowed; use "
                           "numbers, strings, True, False or None")

    def literal(self, value: Any) -> str:
        return repr(value)

    def expr(self, node: ast.expr) -> str:
        is_const, value = self.constant(node)
        if is_const:
            return self.literal(value)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, ast.BoolOp):
            op = " and " if isinstance(node.op, ast.And) else " or "
            return "(" + op.join(self.expr(v) for v in node.values) + ")"
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.IfExp):
            return (f"({self.expr(node.body)} if {self.expr(node.test)} "
                    f"else {self.expr(node.orelse)})")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            raise self.fail_at(node, "list and tuple literals are only allowed on the right "
                               "of `in` / `not in`, e.g. `country in ('NG', 'RU')`")
        message = _REFUSED_NODES.get(type(node), f"{type(node).__name__} is not allowed")
        raise self.fail_at(node, message)

    def check_identifier(self, node: ast.AST, ident: str) -> None:
        if "__" in ident:
            raise self.fail_at(node, f"names containing '__' are not allowed ({ident!r})")

    def name(self, node: ast.Name) -> str:
        ident = node.id
        self.check_identifier(node, ident)
        if self.names.allow_features and ident in self.names.features:
            self.features_read.add(ident)
            return f"features.get({ident!r})"
        if ident in _RESERVED:
            raise self.fail_at(node, f"{ident!r} cannot be used on its own; write "
                               "`event.<field>` or `features[\"<feature name>\"]`")
        if ident in _FUNCTIONS or ident in _SPECIAL_FUNCTIONS:
            raise self.fail_at(node, f"{ident!r} is a function; call it, e.g. {ident}(...)")
        self.fields_read.add(ident)
        return f"event.get({ident!r})"

    def attribute(self, node: ast.Attribute) -> str:
        self.check_identifier(node, node.attr)
        target = node.value
        if isinstance(target, ast.Name) and target.id == "event":
            self.fields_read.add(node.attr)
            return f"event.get({node.attr!r})"
        raise self.fail_at(node, "attribute access is only allowed as `event.<field>`; "
                           f"`.{node.attr}` cannot be used here")

    def subscript(self, node: ast.Subscript) -> str:
        target, key = node.value, node.slice
        if not (isinstance(target, ast.Name) and target.id == "features"):
            raise self.fail_at(node, "indexing is only allowed as features[\"<feature "
                               "name>\"]; use event.<field> for fields")
        if not self.names.allow_features:
            raise self.fail_at(node, "this expression sees only event fields, not features")
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise self.fail_at(node, "features[...] needs a string literal naming a feature, "
                               "e.g. features[\"count(pay_account.history,1h)\"]")
        return self.feature(key, key.value)

    def feature(self, node: ast.AST, name: str) -> str:
        if name not in self.names.features:
            hint = self.suggest(name, self.names.features)
            raise self.fail_at(node, f"unknown feature {name!r}{hint}")
        self.features_read.add(name)
        return f"features.get({name!r})"

    def suggest(self, name: str, known: frozenset[str]) -> str:
        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)
        if close:
            return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        if known:
            return "; known: " + ", ".join(repr(k) for k in sorted(known)[:10])
        return "; none are declared in this scene"

    def unary(self, node: ast.UnaryOp) -> str:
        if isinstance(node.op, ast.Not):
            return f"(not {self.expr(node.operand)})"
        if isinstance(node.op, ast.Invert):
            raise self.fail_at(node, "operator '~' is not allowed; use `not` for logic")
        tmp = self.tmp()
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        return (f"({sign}{tmp} if _type({tmp} := {self.expr(node.operand)}) in _NUM "
                "else None)")

    def binop(self, node: ast.BinOp) -> str:
        op = type(node.op)
        if op not in _BIN_HELPER:
            raise self.fail_at(node, f"operator {_BIN_SYMBOL.get(op, '?')!r} is not allowed; "
                               "use + - * / // % ** on numbers and `and`/`or`/`not` for logic")
        if op is ast.Pow:
            return self.power(node)
        left, right = self.operand(node.left), self.operand(node.right)
        if op in (ast.Div, ast.FloorDiv, ast.Mod):
            return f"{self.helper(_BIN_HELPER[op])}({self.code(left)}, {self.code(right)})"
        symbol = _BIN_SYMBOL[op]
        slow = "None" if op is not ast.Add else None
        return self.guarded(left, right, symbol, self.helper(_BIN_HELPER[op]), slow)

    def power(self, node: ast.BinOp) -> str:
        is_const, exponent = self.constant(node.right)
        if not is_const or type(exponent) not in (int, float) or abs(exponent) > MAX_POWER:
            raise self.fail_at(node.right, f"the exponent of ** must be a number literal "
                               f"between -{MAX_POWER} and {MAX_POWER}")
        base = node.left
        while isinstance(base, ast.UnaryOp):
            base = base.operand
        if isinstance(base, ast.BinOp) and isinstance(base.op, ast.Pow):
            raise self.fail_at(node, "nested powers (a ** b ** c) are not allowed")
        return f"{self.helper('_pow')}({self.expr(node.left)}, {self.literal(exponent)})"

    def operand(self, node: ast.expr) -> _Operand:
        is_const, value = self.constant(node)
        if is_const:
            return ("const", value)
        return ("code", self.expr(node))

    def code(self, operand: _Operand) -> str:
        kind, payload = operand
        return self.literal(payload) if kind == "const" else str(payload)

    def capture(self, operand: _Operand) -> tuple[str, str]:
        """(code that evaluates and stores the operand, name to read it again)."""
        kind, payload = operand
        if kind == "tmp":
            return payload, payload
        if kind == "const":
            literal = self.literal(payload)
            return literal, literal
        tmp = self.tmp()
        return f"{tmp} := {payload}", tmp

    def guarded(self, left: _Operand, right: _Operand, symbol: str, helper: str,
                slow: str | None) -> str:
        """``left symbol right`` when both are numbers, else `slow` (or the helper call)."""
        lnum = left[0] == "const" and type(left[1]) in _NUM
        rnum = right[0] == "const" and type(right[1]) in _NUM
        lset, lget = self.capture(left)
        rset, rget = self.capture(right)
        fallback = slow if slow is not None else f"{helper}({lget}, {rget})"
        if lnum and rnum:
            return f"{helper}({lget}, {rget})"
        if rnum:
            return f"({lget} {symbol} {rget} if _type({lset}) in _NUM else {fallback})"
        if lnum:
            return f"({lget} {symbol} {rget} if _type({rset}) in _NUM else {fallback})"
        return (f"({lget} {symbol} {rget} if (_type({lset}) in _NUM) & "
                f"(_type({rset}) in _NUM) else {fallback})")

    def compare(self, node: ast.Compare) -> str:
        parts: list[str] = []
        if isinstance(node.left, ast.Tuple | ast.List | ast.Set):
            raise self.fail_at(node.left, "a list literal cannot be compared; write "
                               "`x in (...)`")
        left: _Operand = self.operand(node.left)
        for index, (op, right_node) in enumerate(zip(node.ops, node.comparators, strict=True)):
            last = index == len(node.ops) - 1
            code, left = self.compare_one(node, op, left, right_node, last)
            parts.append(code)
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def compare_one(self, node: ast.Compare, op: ast.cmpop, left: _Operand,
                    right_node: ast.expr, last: bool) -> tuple[str, _Operand]:
        kind = type(op)
        symbol = _CMP_SYMBOL[kind]
        if kind in (ast.In, ast.NotIn) and isinstance(right_node, ast.Tuple | ast.List | ast.Set):
            if not last:
                raise self.fail_at(right_node, "a list literal must be the last operand of "
                                   "a chained comparison")
            return self.member_of_literal(left, right_node, symbol), ("const", None)
        if isinstance(right_node, ast.Tuple | ast.List | ast.Set):
            raise self.fail_at(right_node, f"a list literal can only follow `in` / `not in`, "
                               f"not {symbol!r}")
        right = self.operand(right_node)
        if kind in (ast.Is, ast.IsNot):
            return self.identity(node, kind, left, right), right
        if (left[0] == "const" and left[1] is None) or (right[0] == "const" and right[1] is None):
            raise self.fail_at(node, f"comparing with None by {symbol!r} is always false "
                               "(null semantics); write `x is None` or `x is not None`")
        if kind in (ast.In, ast.NotIn):
            if right[0] == "const" and type(right[1]) is str:
                lset, lget = self.capture(left)
                return (f"(_type({lset}) is _str and {lget} {symbol} {self.code(right)})",
                        right)
            if right[0] == "const":
                raise self.fail_at(right_node, f"the right of {symbol!r} must be a string, "
                                   "a list literal or a field, not a number")
            lset, _ = self.capture(left)
            rset, rget = self.capture(right)
            return f"{self.helper(_CMP_HELPER[kind])}({lset}, {rset})", ("tmp", rget)
        return self.ordered(kind, symbol, left, right)

    def ordered(self, kind: type[ast.cmpop], symbol: str, left: _Operand,
                right: _Operand) -> tuple[str, _Operand]:
        helper = self.helper(_CMP_HELPER[kind])
        lconst, rconst = left[0] == "const", right[0] == "const"
        lset, lget = self.capture(left)
        rset, rget = self.capture(right)
        after: _Operand = right if right[0] != "code" else ("tmp", rget)
        if lconst and rconst:
            return f"{helper}({lget}, {rget})", after
        if rconst:
            guard = "in _NUM" if type(right[1]) in _NUM else "is _str"
            return f"(_type({lset}) {guard} and {lget} {symbol} {rget})", after
        if lconst:
            guard = "in _NUM" if type(left[1]) in _NUM else "is _str"
            return f"(_type({rset}) {guard} and {lget} {symbol} {rget})", after
        return (f"({lget} {symbol} {rget} if (_type({lset}) in _NUM) & "
                f"(_type({rset}) in _NUM) else {helper}({lget}, {rget}))", after)

    def identity(self, node: ast.Compare, kind: type[ast.cmpop], left: _Operand,
                 right: _Operand) -> str:
        symbol = _CMP_SYMBOL[kind]
        if right[0] == "const" and right[1] is None:
            other = left
        elif left[0] == "const" and left[1] is None:
            other = right
        else:
            raise self.fail_at(node, f"{symbol!r} only compares with None; use == or != for "
                               "values")
        if other[0] == "const":
            return repr((other[1] is None) == (kind is ast.Is))
        return f"({self.code(other)} {symbol} None)"

    def member_of_literal(self, left: _Operand, node: ast.Tuple | ast.List | ast.Set,
                          symbol: str) -> str:
        values = []
        for element in node.elts:
            is_const, value = self.constant(element)
            if not is_const:
                raise self.fail_at(element, "a list after `in` may hold only literals; use "
                                   "`a == x or a == y` for fields")
            if value is None:
                raise self.fail_at(element, "None in a list never matches (null semantics); "
                                   "write `x is None` separately")
            values.append(value)
        lset, lget = self.capture(left)
        return f"(_type({lset}) in _SCALAR and {lget} {symbol} {self.bind(frozenset(values))})"

    def call(self, node: ast.Call) -> str:
        func = node.func
        if not isinstance(func, ast.Name):
            raise self.fail_at(node, "only the allowed functions can be called, by name: "
                               f"{_ALLOWED_FUNCTIONS}")
        self.check_identifier(func, func.id)
        fname = func.id
        if fname not in _FUNCTIONS and fname not in _SPECIAL_FUNCTIONS:
            raise self.fail_at(node, f"function {fname!r} is not allowed; allowed functions: "
                               f"{_ALLOWED_FUNCTIONS}")
        if node.keywords:
            raise self.fail_at(node.keywords[0], f"{fname}() takes no keyword arguments")
        args = node.args
        for arg in args:
            if isinstance(arg, ast.Starred):
                raise self.fail_at(arg, "starred arguments are not allowed")
        if fname == "in_list":
            return self.in_list(node, args)
        if fname in ("pattern", "model"):
            return self.named_result(node, fname, args)
        helper, low, high = _FUNCTIONS[fname]
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise self.fail_at(node, f"{fname}() takes {wanted} arguments, got {len(args)}")
        if fname == "round" and len(args) == 2:
            is_const, digits = self.constant(args[1])
            if not is_const or type(digits) is not int or abs(digits) > MAX_ROUND_DIGITS:
                raise self.fail_at(args[1], "round()'s digits must be an integer literal "
                                   f"between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}")
        return f"{self.helper(helper)}({', '.join(self.expr(a) for a in args)})"

    def literal_name(self, node: ast.Call, fname: str,
                     args: list[ast.expr]) -> tuple[ast.expr, str]:
        if not (args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)):
            raise self.fail_at(node, f"{fname}() needs the name as a string literal first, "
                               f"e.g. {fname}(\"name\"{', value' if fname == 'in_list' else ''})")
        return args[0], args[0].value

    def in_list(self, node: ast.Call, args: list[ast.expr]) -> str:
        name_node, name = self.literal_name(node, "in_list", args)
        if len(args) != 2:
            raise self.fail_at(node, "in_list() takes 2 arguments: the list name and the "
                               "value, e.g. in_list(\"blocked_ips\", ip)")
        if name not in self.names.lists:
            raise self.fail_at(name_node, f"unknown list {name!r}"
                               f"{self.suggest(name, self.names.lists)}; declare it under "
                               "`lists:`")
        self.lists_read.add(name)
        return f"lists.contains({name!r}, {self.expr(args[1])}, event.get('timestamp'))"

    def named_result(self, node: ast.Call, fname: str, args: list[ast.expr]) -> str:
        name_node, name = self.literal_name(node, fname, args)
        if len(args) != 1:
            raise self.fail_at(node, f"{fname}() takes 1 argument, the {fname} name")
        known = self.names.patterns if fname == "pattern" else self.names.models
        if not self.names.allow_features:
            raise self.fail_at(node, f"{fname}() cannot be used here: this expression sees "
                               "only event fields")
        if not known:
            raise self.fail_at(name_node, f"unknown {fname} {name!r}: this scene declares no "
                               f"{fname}s; declare it under `{fname}s:` in the scene")
        if name not in known:
            raise self.fail_at(name_node, f"unknown {fname} {name!r}{self.suggest(name, known)}")
        key = pattern_key(name) if fname == "pattern" else model_key(name)
        self.features_read.add(key)
        return f"features.get({key!r})"
