"""A scene as deciding needs it, prepared once from its config — whatever holds the state.

`SceneRuntime` holds what the config fixes: the event parser, the list checks, the
compiled `where` filters and sequence patterns, the live ruleset, the feature names. Its
`decide` is the one decision path of every runtime: an event whose feature and pattern
values the state backend computed (riskengine/state/) becomes a `Decision` through the
list checks, the ruleset and the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Any

from riskengine.config import SceneConfig
from riskengine.decision import Decision
from riskengine.events import EventParser
from riskengine.exceptions import ConfigError, EventValidationError
from riskengine.features.dsl import NUMERIC_FUNCTIONS, FeatureSpec
from riskengine.features.plan import Predicate
from riskengine.lists import Lists
from riskengine.patterns import ScenePatterns
from riskengine.rules.expr import ExprNames, compile_expression
from riskengine.rules.ruleset import Outcome, Ruleset

__all__ = ["MAX_BATCH", "SceneRuntime", "parse_batch"]

MAX_BATCH = 100_000


class SceneRuntime:
    """Everything one scene needs per event that its config fixes (see the module
    docstring); the ruleset is swapped in one assignment (`Engine.activate_ruleset`)."""

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
            models=frozenset(),
            allow_features=True,
        )
        self.where_names = ExprNames(features=frozenset(), lists=list_names,
                                     patterns=frozenset(), models=frozenset(),
                                     allow_features=False)
        self.patterns = ScenePatterns(config.patterns, config.lateness_ms, self.where_names)
        self.feature_names = (*(s.name for s in config.features), *self.patterns.keys)
        self.ruleset = Ruleset.build(config.name, list(config.rules), dict(config.policy),
                                     self.names, config.ruleset_version)
        self.max_window_ms = max((s.window_ms for s in config.features), default=0)
        self.idempotency_horizon_ms = config.lateness_ms + self.max_window_ms
        self.idempotency_max = config.idempotency_max

    def compile_where(self, spec: FeatureSpec) -> Predicate:
        """A feature's `where` filter, compiled against the scene's lists."""
        return compile_expression(spec.where or "True", names=self.where_names,
                                  origin=f"feature {spec.name!r} where")

    def list_hits(self, lists: Lists, event: dict[str, Any], t: int) -> tuple[str, ...]:
        return tuple(name for name, field in self.list_checks
                     if lists.contains(name, event.get(field), t))

    def decide(self, event: dict[str, Any], lsn: int, features: dict[str, Any], late: bool,
               degraded: bool, lists: Lists, started: float) -> tuple[Decision, Outcome]:
        """The decision of an event whose features (and pattern values) are computed:
        list checks, the live ruleset, the policy; with the rules' outcome (shared by
        the remembered record). Every runtime's one decision path; `started` is the
        `perf_counter()` the event's latency counts from."""
        t = event["timestamp"]
        list_hits = self.list_hits(lists, event, t) if self.list_checks else ()
        ruleset = self.ruleset
        outcome = ruleset.outcome(event, features, lists)
        action, score, hits, shadow_hits, errors = outcome
        return Decision(  # positional: this is the per-event path
            event["event_id"], self.name, action, score, hits, shadow_hits, features,
            list_hits, ruleset.version, late, degraded, (perf_counter() - started) * 1000.0,
            lsn, t, errors), outcome


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
