"""The live comparison of a scene's experiment arms, read back from the decision log.

Every logged decision made under an experiment holds each arm's result for its event:
the answering arm's as the decision itself, every other arm's in ``arms``
(riskengine/experiment.py). `compare_experiments` reads the scene's decisions of a
period in chunks (`DecisionLog.labelled_decisions`, keyset-paged, with each event's
label joined when read), and counts them into one `ArmComparison` (the metrics module
backtests use too) per experiment version, the champion being the baseline: decision
mix, transitions, rule hits, the events each arm answered and their latency, and with
labels precision, recall and money caught and blocked.

Decisions are grouped by the experiment version they carry (the content hash of the
experiment's spec): a new split, salt or challenger makes a new version, and arms are
only compared on events they all decided. Decisions made without an experiment (before
it existed, after it ended) are counted in ``without_experiment`` and compared with
nothing. Within one version the champion may have changed (a ruleset PUT while the
experiment ran): ``ruleset_versions`` lists every ruleset version each arm decided with.
Arms are reported champion first, then by name; memory holds the counters of each
version, never the decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from riskengine.batch.metrics import AMOUNT_FIELD, ArmComparison, ArmResult, amount_of
from riskengine.decisionlog import DecisionLog
from riskengine.experiment import CHAMPION

__all__ = ["ExperimentTally", "arm_results", "compare_experiments"]

SAMPLES = 5


def arm_results(document: Mapping[str, Any]) -> dict[str, ArmResult]:
    """Every arm's result in a logged decision (`Decision.to_dict()`): the answering
    arm's from the decision, the others' from ``arms``."""
    results = {str(document.get("arm", CHAMPION)): ArmResult(
        document["decision"], document["score"],
        tuple(hit["rule_id"] for hit in document["hits"]),
        tuple(hit["rule_id"] for hit in document["shadow_hits"]),
        tuple(document.get("rule_errors", ())))}
    for name, other in (document.get("arms") or {}).items():
        results[name] = ArmResult(other["decision"], other["score"], tuple(other["hits"]),
                                  tuple(other["shadow_hits"]),
                                  tuple(other.get("rule_errors", ())))
    return results


@dataclass
class ExperimentTally:
    """The comparison of one experiment version, and what it saw."""

    version: str
    comparison: ArmComparison
    first_event: int
    last_event: int
    ruleset_versions: dict[str, set[str]] = field(default_factory=dict)
    skipped: int = 0
    """Decisions of this version whose arms differ from its first decision's (none unless
    the log was edited)."""

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "first_event": self.first_event,
                "last_event": self.last_event,
                "ruleset_versions": {arm: sorted(self.ruleset_versions.get(arm, ()))
                                     for arm in self.comparison.arms},
                "skipped": self.skipped, "comparison": self.comparison.to_dict()}


def compare_experiments(log: DecisionLog, scene: str, *, since: int | None = None,
                        until: int | None = None, amount_field: str = AMOUNT_FIELD,
                        samples: int = SAMPLES, chunk_size: int = 1000) -> dict[str, Any]:
    """The comparison of `scene`'s experiment arms over `since <= event time < until`
    (see the module docstring): one entry per experiment version, the latest first."""
    tallies: dict[str, ExperimentTally] = {}
    without = 0
    for row in log.labelled_decisions(scene, since, until, chunk_size=chunk_size):
        document = row.document
        version = document.get("experiment")
        if not version:
            without += 1
            continue
        results = arm_results(document)
        timestamp = int(document["timestamp"])
        tally = tallies.get(version)
        if tally is None:
            arms = [CHAMPION, *sorted(name for name in results if name != CHAMPION)]
            tally = tallies[version] = ExperimentTally(
                version, ArmComparison(arms, baseline=CHAMPION, samples=samples),
                timestamp, timestamp)
        if set(results) != set(tally.comparison.arms):
            tally.skipped += 1
            continue
        tally.last_event = timestamp
        answering = str(document.get("arm", CHAMPION))
        versions = tally.ruleset_versions
        versions.setdefault(answering, set()).add(str(document["ruleset_version"]))
        for name, other in (document.get("arms") or {}).items():
            versions.setdefault(name, set()).add(str(other["version"]))
        label = None if row.label is None else row.label.label
        tally.comparison.add(str(document["event_id"]), timestamp, label, results,
                             amount=amount_of(row.event, amount_field), answered=answering,
                             latency_ms=document.get("latency_ms"))
    ordered = sorted(tallies.values(), key=lambda t: (t.last_event, t.version), reverse=True)
    return {"scene": scene, "since": since, "until": until, "amount_field": amount_field,
            "without_experiment": without,
            "experiments": [tally.to_dict() for tally in ordered]}
