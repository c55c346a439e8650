"""Rules, the versioned ruleset of a scene, and the decision policy.

A `Ruleset` is built once per version: every rule is validated, and all of them are
generated into one Python function, so `evaluate` is a single call with no config lookups.
The decision is the highest of the policy default, the highest action among active hits
and the threshold the score reaches; shadow rules are reported but never change the
decision or the score.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from riskengine.exceptions import ConfigError, RuleCompileError
from riskengine.rules.expr import ExprNames, Translation, make_function, translate_expression

if TYPE_CHECKING:
    from riskengine.lists import Lists

__all__ = ["ACTIONS", "MAX_RULES", "MODES", "Hit", "Policy", "Rule", "Ruleset", "Verdict",
           "ruleset_from_body"]

ACTIONS = ("accept", "review", "reject")
MODES = ("active", "shadow")
_RANK = {action: rank for rank, action in enumerate(ACTIONS)}
_ID_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
_RULE_KEYS = ("id", "when", "score", "action", "reason", "mode")
_POLICY_KEYS = ("review_at", "reject_at", "default")
_MAX_ID_LEN = 200
_MAX_SCORE = 1e9  # per rule; the scores of the hits add up, so a total stays finite
MAX_RULES = 2000
"""Most rules one ruleset body may hold (the admin API, a candidate file)."""


def _number(value: object, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise ConfigError(f"{what} must be a finite number, not {value!r:.40}")


def _unknown_keys(data: Mapping[Any, Any], allowed: Sequence[str], what: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                          f"{', '.join(allowed)}")


@dataclass(frozen=True)
class Rule:
    """One rule: when `when` holds, add `score` and/or impose `action`."""

    id: str
    when: str
    score: float = 0.0
    action: str | None = None
    reason: str = ""
    mode: str = "active"

    def __post_init__(self) -> None:
        rid = self.id
        if not isinstance(rid, str) or not rid or len(rid) > _MAX_ID_LEN or \
                not _ID_RE.match(rid):
            raise ConfigError(f"rule id {rid!r} is invalid; use 1 to {_MAX_ID_LEN} letters, "
                              "digits and _ . : -")
        what = f"rule {rid!r}"
        if not isinstance(self.when, str) or not self.when.strip():
            raise ConfigError(f"{what}: `when` must be a non-empty expression string")
        score = _number(self.score, f"{what}: score")
        if abs(score) > _MAX_SCORE:
            raise ConfigError(f"{what}: score {score:g} is out of range; use "
                              f"{-_MAX_SCORE:g}..{_MAX_SCORE:g}")
        object.__setattr__(self, "score", score)
        if self.action is not None and self.action not in _RANK:
            raise ConfigError(f"{what}: action {self.action!r} is invalid; use one of "
                              f"{', '.join(ACTIONS)}")
        if not isinstance(self.reason, str):
            raise ConfigError(f"{what}: reason must be a string")
        if self.mode not in MODES:
            raise ConfigError(f"{what}: mode {self.mode!r} is invalid; use active or shadow")
        if self.score == 0 and self.action is None:
            raise ConfigError(f"{what}: give it a non-zero `score`, an `action`, or both")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """Build from a YAML mapping; unknown keys and wrong types are refused."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a rule must be a mapping with id and when, not {data!r:.80}")
        rid = data.get("id")
        what = f"rule {rid!r}" if rid is not None else "a rule without an id"
        _unknown_keys(data, _RULE_KEYS, what)
        for key in ("id", "when"):
            if key not in data:
                raise ConfigError(f"{what}: missing `{key}`")
        reason = data.get("reason", "")
        return cls(id=rid, when=data["when"], score=data.get("score", 0.0),  # type: ignore[arg-type]
                   action=data.get("action"), reason="" if reason is None else reason,
                   mode=data.get("mode", "active"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "when": self.when, "score": self.score, "action": self.action,
                "reason": self.reason, "mode": self.mode}


@dataclass(frozen=True)
class Policy:
    """Score thresholds and the default decision (the floor of every decision)."""

    review_at: float | None = None
    reject_at: float | None = None
    default: str = "accept"

    def __post_init__(self) -> None:
        for key in ("review_at", "reject_at"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _number(value, f"policy {key}"))
        if self.review_at is not None and self.reject_at is not None and \
                self.review_at > self.reject_at:
            raise ConfigError(f"policy: review_at ({self.review_at:g}) must not exceed "
                              f"reject_at ({self.reject_at:g})")
        if self.default not in _RANK:
            raise ConfigError(f"policy: default {self.default!r} is invalid; use one of "
                              f"{', '.join(ACTIONS)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Policy:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError("policy must be a mapping such as {review_at: 50, reject_at: 80}")
        _unknown_keys(data, _POLICY_KEYS, "policy")
        return cls(review_at=data.get("review_at"), reject_at=data.get("reject_at"),
                   default=data.get("default", "accept"))

    def to_dict(self) -> dict[str, Any]:
        return {"review_at": self.review_at, "reject_at": self.reject_at,
                "default": self.default}


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired, as reported in a decision."""

    rule_id: str
    reason: str
    score: float
    action: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "reason": self.reason, "score": self.score,
                "action": self.action}


@dataclass(slots=True)
class Verdict:
    """What the rules decided for one event; `errors` are rule ids that raised (not hit)."""

    decision: str
    score: float
    hits: tuple[Hit, ...]
    shadow_hits: tuple[Hit, ...]
    errors: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "score": self.score,
                "hits": [h.to_dict() for h in self.hits],
                "shadow_hits": [h.to_dict() for h in self.shadow_hits],
                "errors": list(self.errors)}


Outcome = tuple[str, float, tuple[Hit, ...], tuple[Hit, ...], tuple[str, ...]]


class Ruleset:
    """The compiled, versioned rules of one scene with their policy.

    All rules of a version are generated into one Python function (one frame per event,
    each rule in its own ``try`` so a rule that raises only counts as not hit).
    """

    __slots__ = ("features_read", "generated", "outcome", "policy", "rules", "scene", "version")

    def __init__(self, scene: str, rules: tuple[Rule, ...], policy: Policy, version: str,
                 translations: tuple[Translation, ...]) -> None:
        self.scene = scene
        self.rules = rules
        self.policy = policy
        self.version = version
        self.features_read: frozenset[str] = frozenset().union(
            *(t.features_read for t in translations))
        default = _RANK[policy.default]
        quiet = default  # the decision when no rule hits: the policy applied to score 0
        if policy.reject_at is not None and policy.reject_at <= 0.0:
            quiet = 2
        if policy.review_at is not None and default < 1 and quiet < 1 and \
                policy.review_at <= 0.0:
            quiet = 1
        namespace: dict[str, Any] = {"_ACTIONS": ACTIONS, "_Exception": Exception,
                                     "_QUIET": (ACTIONS[quiet], 0.0, (), (), ())}
        lines = ["def outcome(event, features, lists):",
                 "    score = 0.0", f"    rank = {default}",
                 "    hits = ()", "    shadow = ()", "    errors = ()"]
        for index, (rule, tr) in enumerate(zip(rules, translations, strict=True)):
            namespace.update(tr.namespace)
            namespace[f"_hit{index}"] = (Hit(rule.id, rule.reason, rule.score, rule.action),)
            namespace[f"_err{index}"] = (rule.id,)
            lines += ["    try:", f"        if {tr.code}:"]
            if rule.mode == "shadow":
                lines.append(f"            shadow += _hit{index}")
            else:
                lines.append(f"            hits += _hit{index}")
                if rule.score:
                    lines.append(f"            score += {rule.score!r}")
                rank = -1 if rule.action is None else _RANK[rule.action]
                if rank > default:
                    lines.append(f"            if rank < {rank}: rank = {rank}")
            lines += ["    except _Exception:", f"        errors += _err{index}"]
        lines.append("    if not (hits or shadow or errors):")
        lines.append("        return _QUIET")
        if policy.reject_at is not None:
            lines.append(f"    if score >= {policy.reject_at!r}: rank = 2")
        if policy.review_at is not None and default < 1:
            lines.append(f"    if rank < 1 and score >= {policy.review_at!r}: rank = 1")
        lines.append("    return (_ACTIONS[rank], score, hits, shadow, errors)")
        self.generated = "\n".join(lines) + "\n"
        self.outcome: Callable[..., Outcome] = make_function(
            self.generated, "outcome", namespace, f"<ruleset {scene} {version}>")
        """`evaluate` as a plain tuple `(decision, score, hits, shadow_hits, errors)`: the
        engine's per-event call (one frame, no `Verdict` object)."""

    @classmethod
    def build(cls, scene: str, rules: Sequence[Rule | Mapping[str, Any]],
              policy: Policy | Mapping[str, Any] | None, names: ExprNames,
              version: str | None = None) -> Ruleset:
        """Validate and compile every rule; the first error raises and nothing is built."""
        if isinstance(rules, str | bytes | Mapping) or not isinstance(rules, Sequence):
            raise ConfigError(f"scene {scene!r}: rules must be a list of rules")
        built: list[Rule] = []
        seen: set[str] = set()
        for item in rules:
            rule = item if isinstance(item, Rule) else Rule.from_dict(item)
            if rule.id in seen:
                raise RuleCompileError(f"duplicate rule id in scene {scene!r}; give every "
                                       "rule its own id", rule_id=rule.id)
            seen.add(rule.id)
            built.append(rule)
        pol = policy if isinstance(policy, Policy) else Policy.from_dict(policy)
        translations = tuple(
            translate_expression(r.when, names=names, origin=r.id, prefix=f"{i}_")
            for i, r in enumerate(built))
        if version is None:
            version = content_version(built, pol)
        elif not isinstance(version, str) or not version:
            raise ConfigError(f"scene {scene!r}: ruleset version must be a non-empty string")
        return cls(scene, tuple(built), pol, version, translations)

    def evaluate(self, event: Mapping[str, Any], features: Mapping[str, Any],
                 lists: Lists | None) -> Verdict:
        """Run every rule once; a rule that raises counts as not hit and is reported."""
        return Verdict(*self.outcome(event, features, lists))

    def to_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "version": self.version,
                "policy": self.policy.to_dict(), "rules": [r.to_dict() for r in self.rules]}

    def __repr__(self) -> str:
        return f"Ruleset(scene={self.scene!r}, version={self.version!r}, rules={len(self.rules)})"


def ruleset_from_body(scene: str, body: object, names: ExprNames, default_policy: Policy,
                      version: str | None = None) -> Ruleset:
    """Validate a ``{"rules": [...], "policy": {...}}`` body (what the admin API accepts;
    the policy optional, `default_policy` when absent) into a compiled ruleset."""
    if not isinstance(body, Mapping):
        raise ConfigError("a ruleset is a JSON object with 'rules' (a list) and an "
                          "optional 'policy'")
    unknown = set(body) - {"rules", "policy"}
    if unknown:
        raise ConfigError(f"unknown ruleset keys {sorted(map(str, unknown))[:5]}; "
                          "allowed: rules, policy")
    rules = body.get("rules")
    if not isinstance(rules, list):
        raise ConfigError("'rules' must be a list of rules")
    if len(rules) > MAX_RULES:
        raise ConfigError(f"a ruleset holds at most {MAX_RULES} rules")
    policy = body.get("policy", default_policy.to_dict())
    if not isinstance(policy, Mapping):
        raise ConfigError("'policy' must be an object")
    return Ruleset.build(scene, rules, dict(policy), names, version)


def content_version(rules: Sequence[Rule], policy: Policy) -> str:
    """``"r"`` + 12 hex digits of sha256 over the canonical JSON of rules and policy."""
    payload = {"rules": [r.to_dict() for r in rules], "policy": policy.to_dict()}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return "r" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
