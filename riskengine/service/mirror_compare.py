"""The candidate's answer to a mirrored request against the live decision, and the tally.

Per event: the same answer means the same decision (accept, review, reject), scores within
`score_tolerance` of each other (absolute difference), and the same active rule hits (as a
set: the order rules fire in is not compared). Anything else is a mismatch, reported with
both decisions and scores and the rule ids that hit on one side only. Shadow hits, features
and versions are not compared.

A batch is compared event by event, by position. Results are counted per event: a refused
or unreadable batch answer counts every event of the batch as an error, and a batch dropped
from the full queue counts each of its events as dropped.

A duplicate event id (the live answer is the stored decision of its first evaluation) is
compared like any other: the candidate's answer, stored or fresh, against the live stored
decision; both sides' `duplicate` flags are kept in the sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from riskengine.decision import Decision
from riskengine.service.metrics import ServiceMetrics

RESULTS = ("match", "mismatch", "error", "dropped")


class InvalidAnswer(ValueError):
    """The candidate answered 200 with a body that is not a decision (or list of them)."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One event the candidate decided differently."""

    event_id: str
    scene: str
    live_decision: str
    candidate_decision: str
    live_score: float
    candidate_score: float
    only_live: tuple[str, ...]
    only_candidate: tuple[str, ...]
    live_duplicate: bool
    candidate_duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "scene": self.scene,
                "live": {"decision": self.live_decision, "score": self.live_score,
                         "duplicate": self.live_duplicate},
                "candidate": {"decision": self.candidate_decision,
                              "score": self.candidate_score,
                              "duplicate": self.candidate_duplicate},
                "hits_only_live": list(self.only_live),
                "hits_only_candidate": list(self.only_candidate)}


def compare(live: Decision, answer: object, tolerance: float) -> Mismatch | None:
    """None when the candidate's `answer` (one decision's JSON) gives the same answer as
    `live`; else the difference. `InvalidAnswer` when `answer` is not a decision."""
    if not isinstance(answer, Mapping):
        raise InvalidAnswer("a decision is a JSON object")
    decision = answer.get("decision")
    score = answer.get("score")
    hits = answer.get("hits")
    if not isinstance(decision, str):
        raise InvalidAnswer("the decision has no 'decision' string")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidAnswer("the decision has no numeric 'score'")
    if not isinstance(hits, list):
        raise InvalidAnswer("the decision has no 'hits' list")
    candidate_ids: list[str] = []
    for hit in hits:
        rule_id = hit.get("rule_id") if isinstance(hit, Mapping) else None
        if not isinstance(rule_id, str):
            raise InvalidAnswer("a hit has no 'rule_id' string")
        candidate_ids.append(rule_id)
    live_ids = [hit.rule_id for hit in live.hits]
    live_set, candidate_set = set(live_ids), set(candidate_ids)
    if (decision == live.decision and abs(score - live.score) <= tolerance
            and live_set == candidate_set):
        return None
    return Mismatch(
        event_id=live.event_id, scene=live.scene, live_decision=live.decision,
        candidate_decision=decision, live_score=live.score, candidate_score=float(score),
        only_live=tuple(r for r in live_ids if r not in candidate_set),
        only_candidate=tuple(r for r in candidate_ids if r not in live_set),
        live_duplicate=live.duplicate, candidate_duplicate=answer.get("duplicate") is True)


class MirrorTally:
    """Counts per result (in the service's Prometheus metrics too), errors by reason, and
    the latest `samples` mismatches."""

    def __init__(self, metrics: ServiceMetrics, samples: int) -> None:
        self.counts = dict.fromkeys(RESULTS, 0)
        self.errors: dict[str, int] = {}
        self.samples: deque[Mismatch] = deque(maxlen=samples)
        self._metrics = metrics
        self._by_result = {r: metrics.mirror_results.labels(r) for r in RESULTS}

    def count(self, result: str, events: int) -> None:
        self.counts[result] += events
        self._by_result[result].inc(events)

    def error(self, reason: str, events: int) -> None:
        """`events` could not be compared; `reason` is e.g. ``status 503`` or ``timeout``."""
        self.count("error", events)
        self.errors[reason] = self.errors.get(reason, 0) + events
        self._metrics.mirror_errors.labels(reason).inc(events)

    def answered(self, live: Sequence[Decision], answers: Sequence[object],
                 tolerance: float) -> None:
        """Compare a 200 answer's decisions with the live ones; `InvalidAnswer` (nothing
        counted) unless every answer is a decision and there is one per live decision."""
        if len(answers) != len(live):
            raise InvalidAnswer(f"{len(answers)} decisions for {len(live)} events")
        found = [compare(d, a, tolerance) for d, a in zip(live, answers, strict=True)]
        mismatches = [m for m in found if m is not None]
        self.samples.extend(mismatches)
        if mismatches:
            self.count("mismatch", len(mismatches))
        if len(mismatches) < len(found):
            self.count("match", len(found) - len(mismatches))

    def to_dict(self) -> dict[str, Any]:
        """Counts, errors by reason, and the samples newest first."""
        return {"counts": dict(self.counts), "errors": dict(sorted(self.errors.items())),
                "samples": [m.to_dict() for m in reversed(self.samples)]}
