"""A scene as deciding needs it, prepared once from its config — whatever holds the state.

`SceneRuntime` holds what the config fixes: the event parser, the list checks, the
compiled `where` filters and sequence patterns, the feature names, and the `Lineup` that
is live: the champion ruleset, the experiment's challengers (riskengine/experiment.py)
and the model scorers. Its `decide` is the one decision path of every runtime: an event
whose feature and pattern values the state backend computed (riskengine/state/) becomes
a `Decision` through the model scores, the list checks, the arms' rulesets and the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from time import perf_counter
from typing import Any, Protocol

from riskengine.config import SceneConfig
from riskengine.decision import Decision
from riskengine.events import EventParser
from riskengine.exceptions import ConfigError, EventValidationError
from riskengine.experiment import CHAMPION, ArmOutcome, Experiment
from riskengine.features.dsl import NUMERIC_FUNCTIONS, FeatureSpec
from riskengine.features.plan import Predicate
from riskengine.lists import Lists
from riskengine.models import ModelSet
from riskengine.patterns import ScenePatterns
from riskengine.rules.expr import ExprNames, compile_expression
from riskengine.rules.ruleset import Outcome, Ruleset

__all__ = ["MAX_BATCH", "Lineup", "ModelScores", "SceneRuntime", "parse_batch"]

MAX_BATCH = 100_000


class ModelScores(Protocol):
    """The scene's model scorers as deciding sees them (riskengine/models/)."""

    versions: Mapping[str, str]
    """Each model's live version, reported in every decision."""

    def score(self, event: Mapping[str, Any], features: dict[str, Any]) -> None:
        """Put each model's score (None when it failed) in `features` under
        ``model:<name>``."""

    def score_many(self, events: Sequence[Mapping[str, Any]],
                   features: Sequence[dict[str, Any]]) -> None:
        """`score` for each event (and its features), as few model runs as give the
        same numbers."""


@dataclass(frozen=True, slots=True)
class Lineup:
    """What decides a scene's events, swapped as one (one attribute assignment): a
    decision reads it once, so it is made by exactly one champion, experiment and set of
    model versions."""

    ruleset: Ruleset
    experiment: Experiment | None = None
    models: ModelScores | None = None


class SceneRuntime:
    """Everything one scene needs per event that its config fixes (see the module
    docstring); the ruleset and the model versions are swapped in one assignment each
    (`Engine.activate_ruleset`, `runtime.models = …`)."""

    def __init__(self, config: SceneConfig, lists: Lists) -> None:
        self.config = config
        self.name = config.name
        numeric = frozenset(s.target for s in config.features if s.func in NUMERIC_FUNCTIONS)
        self.parser = EventParser(config.name, config.schema, numeric)
        self.parse = self.parser.parse
        list_names = frozenset(lists.names())
        for check in config.list_checks:
            if check.list not in list_names:
                raise ConfigError(
                    f"scene {config.name!r}: list check names unknown list {check.list!r}")
        self.list_checks = tuple((c.list, c.field) for c in config.list_checks)
        self.names = ExprNames(
            features=frozenset(s.name for s in config.features),
            lists=list_names,
            patterns=frozenset(p.name for p in config.patterns),
            models=frozenset(m.name for m in config.models),
            allow_features=True,
        )
        self.where_names = ExprNames(features=frozenset(), lists=list_names,
                                     patterns=frozenset(), models=frozenset(),
                                     allow_features=False)
        self.patterns = ScenePatterns(config.patterns, config.lateness_ms, self.where_names)
        computed = (*(s.name for s in config.features), *self.patterns.keys)
        self.feature_names = (*computed, *(m.key for m in config.models))
        """The keys of every decision's features, in order: features, pattern keys, model
        scores (remembered records keep the values in this order)."""
        self.lineup = Lineup(Ruleset.build(config.name, list(config.rules),
                                           dict(config.policy), self.names,
                                           config.ruleset_version),
                             models=(ModelSet.load(config.name, config.models, computed)
                                     if config.models else None))
        if config.experiment is not None:
            self.experiment = Experiment.build(config.experiment, config.name, self.names,
                                               self.ruleset.policy)
        self.max_window_ms = max((s.window_ms for s in config.features), default=0)
        self.idempotency_horizon_ms = config.lateness_ms + self.max_window_ms
        self.idempotency_max = config.idempotency_max

    @property
    def ruleset(self) -> Ruleset:
        """The champion: the live ruleset."""
        return self.lineup.ruleset

    @ruleset.setter
    def ruleset(self, ruleset: Ruleset) -> None:
        self.lineup = replace(self.lineup, ruleset=ruleset)

    @property
    def experiment(self) -> Experiment | None:
        return self.lineup.experiment

    @experiment.setter
    def experiment(self, experiment: Experiment | None) -> None:
        self.lineup = replace(self.lineup, experiment=experiment)

    @property
    def models(self) -> ModelScores | None:
        """The live model versions (None: the scene has no models)."""
        return self.lineup.models

    @models.setter
    def models(self, models: ModelScores | None) -> None:
        self.lineup = replace(self.lineup, models=models)

    def compile_where(self, spec: FeatureSpec) -> Predicate:
        """A feature's `where` filter, compiled against the scene's lists."""
        return compile_expression(spec.where or "True", names=self.where_names,
                                  origin=f"feature {spec.name!r} where")

    def list_hits(self, lists: Lists, event: dict[str, Any], t: int) -> tuple[str, ...]:
        hits: tuple[str, ...] = ()  # a loop, not a generator: most events hit nothing
        contains = lists.contains
        for name, field in self.list_checks:
            if contains(name, event.get(field), t):
                hits += (name,)
        return hits

    def decide(self, event: dict[str, Any], lsn: int, features: dict[str, Any], late: bool,
               degraded: bool, lists: Lists, started: float, scored: Lineup | None = None
               ) -> tuple[Decision, Outcome]:
        """The decision of an event whose features (and pattern values) are computed:
        model scores (added to `features`), list checks, the arms' rulesets and policies;
        with the answering arm's outcome (shared by the remembered record). Every
        runtime's one decision path; `started` is the `perf_counter()` the event's latency
        counts from. `scored`: the lineup whose models scored `features` already (a run
        of events scored at once, `Lineup.models.score_many`); it decides."""
        t = event["timestamp"]
        lineup = self.lineup if scored is None else scored
        models = lineup.models
        if models is not None and scored is None:
            models.score(event, features)
        list_hits = self.list_hits(lists, event, t) if self.list_checks else ()
        experiment = lineup.experiment
        if experiment is None:
            ruleset = lineup.ruleset
            outcome = ruleset.outcome(event, features, lists)
            arm, others = CHAMPION, _NO_ARMS
        else:
            arm, ruleset, outcome, others = experiment.decide(event, features, lists,
                                                              lineup.ruleset)
        action, score, hits, shadow_hits, errors = outcome
        return Decision(  # positional: this is the per-event path
            event["event_id"], self.name, action, score, hits, shadow_hits, features,
            list_hits, ruleset.version, late, degraded, (perf_counter() - started) * 1000.0,
            lsn, t, errors, False, arm, others,
            _NO_MODELS if models is None else models.versions,
            None if experiment is None else experiment.version), outcome


_NO_ARMS: tuple[ArmOutcome, ...] = ()
_NO_MODELS: Mapping[str, str] = {}


def parse_batch(runtime: SceneRuntime, events: Iterable[Mapping[str, Any]]
                ) -> list[dict[str, Any]]:
    """Validate a whole batch first: the first invalid event refuses it, naming its index;
    more than `MAX_BATCH` events are refused."""
    parse = runtime.parser.parse
    parsed = []
    for index, event in enumerate(events):
        if index >= MAX_BATCH:
            raise EventValidationError(f"a batch holds at most {MAX_BATCH} events")
        try:
            parsed.append(parse(event))
        except EventValidationError as exc:
            raise EventValidationError(f"event {index}: {exc}", field=exc.field) from None
    return parsed
