"""The answer for one event (DESIGN.md §2), and its JSON-ready form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from riskengine.rules.ruleset import Hit

if TYPE_CHECKING:
    from riskengine.experiment import ArmOutcome


@dataclass(slots=True)
class Decision:
    """`decision` is accept, review or reject; `hits` are the active rules that fired.

    `late`: the event was more than the scene's lateness behind its clock (scored over
    what is kept, stored nowhere; docs/semantics.md). `degraded`: the decision was not
    made on the whole state — either the scene's fallback because the shared state did
    not answer (`fallback`: no features, LSN 0, nothing stored), or an event that started
    a key afresh while `max_entities` had evicted a key still inside its horizon (its
    windows may miss that key's events; it is stored and logged as usual).
    """

    event_id: str
    scene: str
    decision: str
    score: float
    hits: tuple[Hit, ...]
    shadow_hits: tuple[Hit, ...]
    features: dict[str, Any]
    list_hits: tuple[str, ...]
    ruleset_version: str
    late: bool
    degraded: bool
    latency_ms: float
    lsn: int
    timestamp: int
    rule_errors: tuple[str, ...] = ()
    duplicate: bool = False
    """The event id was decided before: this is that decision, and nothing changed (no
    state, no clock, no decision-log row)."""
    arm: str = "champion"
    """The experiment arm that answered (riskengine/experiment.py); `ruleset_version` is
    that arm's."""
    arms: tuple[ArmOutcome, ...] = ()
    """Every other arm's result for this event (shadow arms, the champion when a
    challenger answered); empty without an experiment and for a duplicate."""
    models: Mapping[str, str] = field(default_factory=dict)
    """The version of each model scored for this decision (scores are in `features`
    under ``model:<name>``)."""
    experiment: str | None = None
    """The version of the scene's experiment that decided (``"x"`` + 12 hex digits), None
    without one (and for a duplicate): the live comparison groups decisions by it."""

    @property
    def fallback(self) -> bool:
        """The scene's fallback decision: the shared state was not reached (LSN 0)."""
        return self.degraded and self.lsn == 0

    @property
    def hit_ids(self) -> list[str]:
        return [h.rule_id for h in self.hits]

    def to_json(self) -> bytes:
        """`to_dict()` as compact JSON (from `json_fields`, without its copies)."""
        return orjson.dumps(self.json_fields())

    def json_fields(self) -> dict[str, Any]:
        """The keys and values of `to_dict()`, sharing the decision's own features, models
        and tuples (orjson writes a tuple as a list): to encode at once, not to keep or
        change. Cheaper than `to_dict()` and than encoding the dataclass itself."""
        # most decisions hit nothing: no comprehension (a call each) for empty ones
        return {
            "event_id": self.event_id,
            "scene": self.scene,
            "decision": self.decision,
            "score": self.score,
            "hits": [h.to_dict() for h in self.hits] if self.hits else [],
            "shadow_hits": ([h.to_dict() for h in self.shadow_hits] if self.shadow_hits
                            else []),
            "features": self.features,
            "list_hits": self.list_hits,
            "ruleset_version": self.ruleset_version,
            "late": self.late,
            "degraded": self.degraded,
            "latency_ms": self.latency_ms,
            "lsn": self.lsn,
            "timestamp": self.timestamp,
            "rule_errors": self.rule_errors,
            "duplicate": self.duplicate,
            "arm": self.arm,
            "arms": {a.arm: a.to_dict() for a in self.arms} if self.arms else {},
            "models": self.models if type(self.models) is dict else dict(self.models),
            "experiment": self.experiment,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain types only; hits as objects with rule_id, reason, score, action."""
        fields = self.json_fields()
        fields["features"] = dict(self.features)
        fields["list_hits"] = list(self.list_hits)
        fields["rule_errors"] = list(self.rule_errors)
        fields["models"] = dict(self.models)
        return fields
