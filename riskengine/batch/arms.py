"""Every arm's decision of one event: the engine once, the other rulesets on its features.

The live arm is the engine's own decision: validation, idempotency, features, patterns,
lists and the live ruleset, through `SceneRuntime.decide`, the one decision path of every
runtime. Every other arm is a `Ruleset`'s `outcome` (its rules and its policy, generated
into the one function `decide` calls for the live ruleset) on the same parsed event, the
same feature and pattern values and the same lists. So the arms differ by their rules
and policy alone, and the state sees each event once, as it would live.

Any runner gets the per-event results here and feeds them to `ArmComparison`
(riskengine/batch/metrics.py): the local one (riskengine/batch/backtest.py) through
`ArmDecider`; one that has the engine's decisions already (a partitioned replay decides
in its own join step) through `RulesetArms` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from riskengine.batch.metrics import ArmResult
from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.lists import Lists
from riskengine.rules.ruleset import Outcome, Ruleset

__all__ = ["CANDIDATE", "LIVE", "ArmDecider", "RulesetArms", "arm_of_decision",
           "arm_of_outcome"]

LIVE = "live"
CANDIDATE = "candidate"


def arm_of_decision(decision: Decision) -> ArmResult:
    return ArmResult(decision.decision, decision.score,
                     tuple(h.rule_id for h in decision.hits),
                     tuple(h.rule_id for h in decision.shadow_hits), decision.rule_errors)


def arm_of_outcome(outcome: Outcome) -> ArmResult:
    action, score, hits, shadow_hits, errors = outcome
    return ArmResult(action, score, tuple(h.rule_id for h in hits),
                     tuple(h.rule_id for h in shadow_hits), errors)


class RulesetArms:
    """The arms beside live: each of `rulesets` (arm name → ruleset) decides an event on
    the features and lists of its live decision."""

    def __init__(self, rulesets: Mapping[str, Ruleset], lists: Lists,
                 live: str = LIVE) -> None:
        if live in rulesets:
            raise ValueError(f"arm name {live!r} is the live arm's")
        self.live = live
        self.rulesets = dict(rulesets)
        self.lists = lists
        self._outcomes = tuple((name, ruleset.outcome) for name, ruleset in rulesets.items())

    def of(self, event: Mapping[str, Any], decision: Decision) -> dict[str, ArmResult]:
        """Every arm's result for `event` (as the scene's parser returned it), the live
        one being `decision`, the engine's."""
        arms = {self.live: arm_of_decision(decision)}
        features, lists = decision.features, self.lists
        for name, outcome in self._outcomes:
            arms[name] = arm_of_outcome(outcome(event, features, lists))
        return arms


class ArmDecider:
    """Decides events of `scene` on `engine` (the live arm, named `live`) and on each of
    `rulesets` (arm name → ruleset) with the live arm's features."""

    def __init__(self, engine: Engine, scene: str, rulesets: Mapping[str, Ruleset],
                 live: str = LIVE) -> None:
        runtime = engine.scene(scene)  # UnknownSceneError before anything runs
        self.engine = engine
        self.scene = scene
        self.others = RulesetArms(rulesets, engine.lists, live)
        self.live = live
        self.arms = (live, *self.others.rulesets)
        self.parse = runtime.parse

    def versions(self) -> dict[str, str]:
        """Each arm's ruleset version (the live one as it is now)."""
        return {self.live: self.engine.ruleset(self.scene).version,
                **{name: ruleset.version for name, ruleset in self.others.rulesets.items()}}

    def rules(self) -> dict[str, dict[str, str]]:
        """Each arm's rules: ``{arm: {rule_id: mode}}`` (for `ArmComparison`)."""
        live = self.engine.ruleset(self.scene)
        return {arm: {rule.id: rule.mode for rule in ruleset.rules}
                for arm, ruleset in ((self.live, live), *self.others.rulesets.items())}

    def decide(self, event: Mapping[str, Any]) -> tuple[Decision, dict[str, ArmResult]]:
        """The engine's decision of `event` and every arm's result. Raises what
        `Engine.evaluate` raises for an event it refuses (nothing changes then)."""
        parsed = self.parse(event)
        (decision,) = self.engine.decide_parsed(self.scene, [parsed])
        return decision, self.others.of(parsed, decision)
