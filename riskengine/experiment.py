"""Champion and challengers: the arms of a scene's live experiment.

A scene has one champion ruleset (the live one) and, optionally, an experiment: any
number of challenger rulesets, each named, each in one of two modes.

- ``decide``: the challenger answers for its share of the traffic. Shares are given in
  percent in `split` (the champion's share included; they add up to 100) and an event
  goes to an arm by a stable hash of one entity field (`key`, e.g. ``pay_account``) and
  a `salt`: blake2b-64 of ``salt \\x1f value``, modulo 10,000 basis points. So an account
  keeps its arm across restarts, workers and runtimes, and a new salt deals the accounts
  afresh. An event without a value in `key` goes to the champion.
- ``shadow``: the challenger sees all traffic and is recorded, never answered.

Every arm decides every event, on the same features, pattern values, model scores and
lists (computed once): the answering arm gives the decision; every other arm's result
(the champion's too, when a challenger answers) is carried in `Decision.arms` and logged
beside it, so the comparison (riskengine/batch/metrics.py) sees each arm on every event.

    experiment:
      key: pay_account
      salt: "2026-12"
      split: {champion: 70, strict: 15, loose: 15}
      challengers:
        strict: {mode: decide, rules: [...], policy: {review_at: 40, reject_at: 70}}
        loose: {mode: decide, rules: [...]}
        ml_watch: {mode: shadow, rules: [...]}

A challenger without a `policy` uses the champion's. The experiment is versioned by the
content hash of its spec (``"x"`` + 12 hex digits), like rulesets.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from riskengine.exceptions import ConfigError, RiskEngineError
from riskengine.rules.ruleset import Outcome, Policy, Ruleset

if TYPE_CHECKING:
    from riskengine.lists import Lists
    from riskengine.rules.expr import ExprNames

__all__ = [
    "ARM_MODES",
    "BUCKETS",
    "CHAMPION",
    "ArmOutcome",
    "ArmSpec",
    "Experiment",
    "ExperimentSpec",
    "arm_bucket",
    "parse_experiment",
]

CHAMPION = "champion"
"""The name of the live ruleset's arm."""
ARM_MODES = ("decide", "shadow")
BUCKETS = 10_000
"""Traffic is dealt in basis points: a share has at most two decimals."""
MAX_ARMS = 20
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
_SPEC_KEYS = ("key", "salt", "split", "challengers")
_ARM_KEYS = ("mode", "rules", "policy", "ruleset_version")


def arm_bucket(salt: str, value: object) -> int:
    """The bucket (0 … 9,999) of an entity value under `salt`: the same in every process.

    >>> arm_bucket("2026-12", "acct-1") == arm_bucket("2026-12", "acct-1")
    True
    >>> 0 <= arm_bucket("s", 12345) < BUCKETS
    True
    """
    digest = hashlib.blake2b(f"{salt}\x1f{value}".encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class ArmSpec:
    """One challenger as configured: its rules and policy (None: the champion's)."""

    name: str
    mode: str
    rules: tuple[Mapping[str, Any], ...]
    policy: Mapping[str, Any] | None = None
    ruleset_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode, "rules": [dict(r) for r in self.rules]}
        if self.policy is not None:
            data["policy"] = dict(self.policy)
        if self.ruleset_version is not None:
            data["ruleset_version"] = self.ruleset_version
        return data


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    """An experiment as configured (validated shape; the rules compile in `Experiment`)."""

    key: str
    salt: str
    split: Mapping[str, float]
    challengers: tuple[ArmSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "salt": self.salt, "split": dict(self.split),
                "challengers": {arm.name: arm.to_dict() for arm in self.challengers}}

    @property
    def version(self) -> str:
        """``"x"`` + 12 hex digits of sha256 over the canonical JSON of the spec."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
        return "x" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def parse_experiment(raw: object, scene: str, fields: Sequence[str] = ()
                     ) -> ExperimentSpec | None:
    """Validate an ``experiment:`` mapping (YAML or the admin API's JSON); None for None.

    `fields` are the scene's event fields: `key` must be one of them when given. Raises
    `ConfigError` naming what is wrong: an unknown key, a split that does not add up to
    100, a split naming an unknown arm or leaving out a deciding one, a shadow arm with a
    share, a bad arm name or mode."""
    if raw is None:
        return None
    what = f"scene {scene!r}: experiment"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{what} must be a mapping with key, salt, split and challengers")
    unknown = sorted(str(k) for k in raw if k not in _SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                          f"{', '.join(_SPEC_KEYS)}")
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{what}: `key` must name the event field whose value picks the "
                          "arm (e.g. pay_account)")
    if fields and key not in fields and key != "event_id":
        raise ConfigError(f"{what}: key {key!r} is not a field of the scene's schema "
                          f"({', '.join(fields)})")
    salt = raw.get("salt", "")
    if isinstance(salt, int) and not isinstance(salt, bool):
        salt = str(salt)
    if not isinstance(salt, str) or len(salt) > 200:
        raise ConfigError(f"{what}: `salt` must be a string of at most 200 characters")
    arms_raw = raw.get("challengers") or {}
    if not isinstance(arms_raw, Mapping):
        raise ConfigError(f"{what}: `challengers` must map arm names to "
                          "{mode, rules, policy}")
    if len(arms_raw) > MAX_ARMS:
        raise ConfigError(f"{what}: at most {MAX_ARMS} challengers")
    arms = tuple(_arm(name, body, what) for name, body in arms_raw.items())
    split = _split(raw.get("split"), arms, what)
    return ExperimentSpec(key, salt, split, arms)


def _arm(name: object, raw: object, what: str) -> ArmSpec:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name == CHAMPION:
        raise ConfigError(f"{what}: arm name {name!r:.80} is invalid; use a letter, then up "
                          f"to 63 letters, digits and _ . - (and not {CHAMPION!r})")
    where = f"{what} arm {name!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping with mode, rules and policy")
    unknown = sorted(str(k) for k in raw if k not in _ARM_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(_ARM_KEYS)}")
    mode = raw.get("mode", "decide")
    if mode not in ARM_MODES:
        raise ConfigError(f"{where}: mode {mode!r:.40} is invalid; use decide or shadow")
    rules = raw.get("rules")
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
        raise ConfigError(f"{where}: `rules` must be a list of rules")
    policy = raw.get("policy")
    if policy is not None and not isinstance(policy, Mapping):
        raise ConfigError(f"{where}: `policy` must be a mapping")
    version = raw.get("ruleset_version")
    if version is not None and (not isinstance(version, str) or not version):
        raise ConfigError(f"{where}: ruleset_version must be a non-empty string")
    return ArmSpec(name, mode, tuple(dict(r) for r in rules),
                   None if policy is None else dict(policy), version)


def _split(raw: object, arms: tuple[ArmSpec, ...], what: str) -> dict[str, float]:
    deciding = [arm.name for arm in arms if arm.mode == "decide"]
    if raw is None:
        if deciding:
            raise ConfigError(f"{what}: `split` must give the share of {CHAMPION} and of "
                              f"every deciding arm ({', '.join(deciding)})")
        return {CHAMPION: 100.0}
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{what}: `split` must map arm names to percent shares, e.g. "
                          f"{{{CHAMPION}: 70, strict: 15, loose: 15}}")
    modes = {arm.name: arm.mode for arm in arms}
    split: dict[str, float] = {}
    for name, share in raw.items():
        if name != CHAMPION and name not in modes:
            raise ConfigError(f"{what}: split names unknown arm {name!r:.80}; the arms are "
                              f"{', '.join([CHAMPION, *modes])}")
        if modes.get(name) == "shadow":
            raise ConfigError(f"{what}: arm {name!r} is in shadow mode: it sees all traffic "
                              "and takes no share of the split")
        if isinstance(share, bool) or not isinstance(share, int | float) or \
                not math.isfinite(share) or not 0 <= share <= 100:
            raise ConfigError(f"{what}: the share of {name!r} must be a percentage "
                              f"0..100, not {share!r:.40}")
        if abs(share * 100 - round(share * 100)) > 1e-6:
            raise ConfigError(f"{what}: the share of {name!r} has more than two decimals")
        split[name] = float(share)
    missing = [name for name in (CHAMPION, *deciding) if name not in split]
    if missing:
        raise ConfigError(f"{what}: split leaves out {', '.join(map(repr, missing))}; give "
                          "every deciding arm and the champion a share")
    total = sum(round(share * 100) for share in split.values())
    if total != BUCKETS:
        raise ConfigError(f"{what}: the shares add up to {total / 100:g}, not 100")
    return split


class ArmOutcome(NamedTuple):
    """What an arm that did not answer decided for an event: its name, mode, ruleset
    version and the rules' outcome (a tuple: made per arm per event)."""

    arm: str
    mode: str
    version: str
    outcome: Outcome

    def to_dict(self) -> dict[str, Any]:
        action, score, hits, shadow_hits, errors = self.outcome
        return {"mode": self.mode, "version": self.version, "decision": action,
                "score": score, "hits": [h.rule_id for h in hits],
                "shadow_hits": [h.rule_id for h in shadow_hits], "rule_errors": list(errors)}


_new = tuple.__new__  # an ArmOutcome without the Python-level __new__ (per arm per event)


class Experiment:
    """A compiled experiment (see the module docstring): built once per version, then
    `decide` on every event of the scene."""

    __slots__ = ("_bounds", "_challengers", "_deciders", "by_name", "key", "salt", "spec",
                 "version")

    def __init__(self, spec: ExperimentSpec, rulesets: Mapping[str, Ruleset]) -> None:
        self.spec = spec
        self.version = spec.version
        self.key = spec.key
        self.salt = spec.salt
        self.by_name = dict(rulesets)
        modes = {arm.name: arm.mode for arm in spec.challengers}
        # Deciding arms in split order (champion where it is named), with the upper bound
        # of their buckets; an arm with share 0 gets no bucket.
        bounds: list[int] = []
        deciders: list[str] = []
        total = 0
        for name, share in spec.split.items():
            width = round(share * 100)
            if width:
                total += width
                bounds.append(total)
                deciders.append(name)
        # The champion alone at 100 % needs no hash.
        self._bounds = () if deciders == [CHAMPION] else tuple(bounds)
        self._deciders = tuple(deciders)
        self._challengers = tuple((name, modes[name], ruleset.version, ruleset.outcome)
                                  for name, ruleset in self.by_name.items())

    @classmethod
    def build(cls, spec: ExperimentSpec, scene: str, names: ExprNames,
              champion_policy: Policy) -> Experiment:
        """Compile every challenger's rules; the first error raises (naming the arm) and
        nothing is built."""
        rulesets: dict[str, Ruleset] = {}
        for arm in spec.challengers:
            policy = champion_policy.to_dict() if arm.policy is None else dict(arm.policy)
            try:
                rulesets[arm.name] = Ruleset.build(scene, list(arm.rules), policy, names,
                                                   arm.ruleset_version)
            except RiskEngineError as exc:
                raise type(exc)(f"experiment arm {arm.name!r}: {exc}") from None
        return cls(spec, rulesets)

    @property
    def arms(self) -> tuple[str, ...]:
        """Every arm: the champion, then the challengers in their configured order."""
        return (CHAMPION, *self.by_name)

    def mode(self, arm: str) -> str:
        if arm == CHAMPION:
            return "decide"
        return next(a.mode for a in self.spec.challengers if a.name == arm)

    def assign(self, event: Mapping[str, Any]) -> str:
        """The deciding arm of `event` by its `key` value (the champion without one)."""
        if not self._bounds:
            return CHAMPION
        value = event.get(self.key)
        if value is None:
            return CHAMPION
        bucket = arm_bucket(self.salt, value)
        return self._deciders[bisect.bisect_right(self._bounds, bucket)]

    def decide(self, event: Mapping[str, Any], features: Mapping[str, Any], lists: Lists,
               champion: Ruleset) -> tuple[str, Ruleset, Outcome, tuple[ArmOutcome, ...]]:
        """The answering arm, its ruleset and outcome, and every other arm's result."""
        answer = champion.outcome(event, features, lists)
        answering = self.assign(event) if self._bounds else CHAMPION
        if answering == CHAMPION:
            return CHAMPION, champion, answer, tuple([
                _new(ArmOutcome, (name, mode, version, outcome(event, features, lists)))
                for name, mode, version, outcome in self._challengers])
        others = [_new(ArmOutcome, (CHAMPION, "decide", champion.version, answer))]
        for name, mode, version, outcome in self._challengers:
            result = outcome(event, features, lists)
            if name == answering:
                answer = result
            else:
                others.append(_new(ArmOutcome, (name, mode, version, result)))
        return answering, self.by_name[answering], answer, tuple(others)

    def without(self, arm: str) -> ExperimentSpec | None:
        """The spec with `arm` gone (it was promoted): its share goes to the champion;
        None when no challenger is left."""
        rest = tuple(a for a in self.spec.challengers if a.name != arm)
        if not rest:
            return None
        split = {name: share for name, share in self.spec.split.items() if name != arm}
        split[CHAMPION] = split.get(CHAMPION, 0.0) + self.spec.split.get(arm, 0.0)
        return ExperimentSpec(self.key, self.salt, split, rest)

    def __repr__(self) -> str:
        return f"Experiment(version={self.version!r}, arms={self.arms!r})"
