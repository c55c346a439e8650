"""Comparison metrics between decision *arms*: rulesets that decided the same events.

An arm is a name (``live``, ``candidate``; later the champion and challengers of a live
experiment) and, per event, an `ArmResult`: the decision, the score, the active and the
shadow rule ids that hit. `ArmComparison` is an accumulator of plain counters: `add` one
event at a time, `merge` partial accumulators (Spark partitions, merged on the driver,
in any order), `to_dict` for JSON. It keeps nothing per event except, for each kind of
transition, the ids of its earliest few events (by time, then id), so a merge gives the
same samples whatever the partitioning.

What it reports, per arm: the decision mix; transitions against the baseline arm
(``accept → review``, …) with counts and sample ids; hits per rule and their change
against the baseline; rule errors; the alert rate (review + reject share) per UTC day.
With labels: an event is *positive* when its label is not ``legit``, an arm *flags* an
event when it decides review or reject, a rule flags an event when it hits (shadow rules
included: measuring them is what shadow mode is for); precision = flagged positives /
flagged labelled events, recall = flagged positives / positives, F1 their harmonic mean
(`Detection`, the one place this maths is written; the replay summary uses it too).
Events without a label are left out of precision and recall.

Money, with labels and an amount per event (the event's ``amount`` field, or another one
the caller reads): per arm the amount *caught* (positives it flagged) and *blocked*
(positives it rejected), and per rule the positives' amount it hit, split the same way by
the arm's decision. Amounts are summed without rounding error (`ExactSum`), so a merge
in any order gives the same figures.

A live experiment also says which arm *answered* each event and how long the decision
took: per arm the events it answered and their latency (`LatencyHistogram`: count, mean
and maximum exact, p50 and p99 within 2.2 %; merging is exact). A backtest has no
answering arm and reports neither.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from riskengine.rules.ruleset import ACTIONS

__all__ = ["AMOUNT_FIELD", "DECISIONS", "FLAGGED", "LEGIT", "ArmComparison", "ArmResult",
           "Detection", "ExactSum", "LatencyHistogram", "amount_of", "is_flagged", "label_order"]

DECISIONS = ACTIONS
FLAGGED = frozenset({"review", "reject"})
"""Decisions that raise an alert (what a fraud team looks at or blocks)."""
LEGIT = "legit"
"""The one label that is not fraud."""
AMOUNT_FIELD = "amount"
"""The event field whose value is the money at stake, unless a caller names another."""

_DAY_MS = 86_400_000


def is_flagged(decision: str) -> bool:
    return decision in FLAGGED


def amount_of(event: Mapping[str, Any], field: str) -> float | None:
    """The event's `field` as a finite number, None when it is absent or not one.

    >>> amount_of({"amount": 12}, "amount"), amount_of({"amount": "12"}, "amount")
    (12.0, None)
    """
    value = event.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class ExactSum:
    """A sum of floats kept as non-overlapping partial sums (Shewchuk's method, the one
    `math.fsum` uses), so its `value` is the correctly rounded sum of everything added or
    merged, in whatever order.

    >>> total = ExactSum()
    >>> for x in (0.1, 0.2, 0.3, 1e16, -1e16):
    ...     total.add(x)
    >>> total.value
    0.6
    """

    __slots__ = ("partials",)

    def __init__(self) -> None:
        self.partials: list[float] = []

    def add(self, x: float) -> None:
        kept = 0
        partials = self.partials
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            low = y - (high - x)  # what the float addition lost
            if low:
                partials[kept] = low
                kept += 1
            x = high
        partials[kept:] = [x]

    def merge(self, other: ExactSum) -> None:
        for x in other.partials:
            self.add(x)

    @property
    def value(self) -> float:
        return math.fsum(self.partials)


class LatencyHistogram:
    """Latencies (ms) in logarithmic buckets, 32 per doubling from 1 µs, so each bucket is
    at most 2.2 % wide. Count, sum, minimum and maximum are exact and `merge` adds the
    counts, so a merged histogram is the one of all the values; a quantile is the upper
    edge of the bucket holding its rank (nearest rank), clamped to [min, max]: within
    2.2 % of the exact one.

    >>> h = LatencyHistogram()
    >>> for ms in (1.0, 2.0, 3.0, 4.0, 100.0):
    ...     h.add(ms)
    >>> h.count, h.mean, h.max, abs(h.quantile(0.5) - 3.0) <= 3.0 * 0.022
    (5, 22.0, 100.0, True)
    """

    __slots__ = ("buckets", "count", "max", "min", "total")
    PER_DOUBLING = 32
    FLOOR_MS = 0.001

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, ms: float) -> None:
        if not math.isfinite(ms):
            return
        ms = max(ms, 0.0)
        index = 0 if ms <= self.FLOOR_MS else math.ceil(
            math.log2(ms / self.FLOOR_MS) * self.PER_DOUBLING)
        self.buckets[index] += 1
        self.count += 1
        self.total += ms
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)

    def merge(self, other: LatencyHistogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                upper: float = self.FLOOR_MS * 2.0 ** (index / self.PER_DOUBLING)
                return min(self.max, max(self.min, upper))
        return self.max

    def to_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "mean": self.mean, "p50": self.quantile(0.5),
                "p99": self.quantile(0.99), "max": self.max if self.count else None}


@dataclass(frozen=True, slots=True)
class Detection:
    """Precision, recall and F1 from three counts; None where a count it divides by is 0.

    >>> Detection.of(true_positives=3, flagged=4, positives=6).to_dict()
    {'precision': 0.75, 'recall': 0.5, 'f1': 0.6}
    """

    precision: float | None
    recall: float | None
    f1: float | None

    @classmethod
    def of(cls, true_positives: int, flagged: int, positives: int) -> Detection:
        precision = true_positives / flagged if flagged else None
        recall = true_positives / positives if positives else None
        f1 = None
        if precision is not None and recall is not None:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(precision, recall, f1)

    def to_dict(self) -> dict[str, float | None]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(frozen=True, slots=True)
class ArmResult:
    """What one arm decided for one event; rule ids as plain strings."""

    decision: str
    score: float
    hits: tuple[str, ...] = ()
    shadow_hits: tuple[str, ...] = ()
    rule_errors: tuple[str, ...] = ()


class ArmComparison:
    """Counters of how arms decided the same events (see the module docstring).

    `arms` are the arm names in report order; `baseline` (default: the first) is the arm
    the others are compared with; `samples` is how many event ids each transition keeps;
    `rules` optionally gives each arm's rules as ``{arm: {rule_id: mode}}``, so rules that
    never hit are reported too.
    """

    def __init__(self, arms: Sequence[str], *, baseline: str | None = None, samples: int = 5,
                 rules: Mapping[str, Mapping[str, str]] | None = None) -> None:
        arms = tuple(arms)
        if not arms or len(set(arms)) != len(arms):
            raise ValueError(f"arms must be distinct names, at least one: {arms!r}")
        baseline = arms[0] if baseline is None else baseline
        if baseline not in arms:
            raise ValueError(f"baseline {baseline!r} is not one of the arms {arms!r}")
        if samples < 0:
            raise ValueError("samples must be 0 or more")
        self.arms = arms
        self.baseline = baseline
        self.samples = samples
        self.others = tuple(arm for arm in arms if arm != baseline)
        self.rules: dict[str, dict[str, str]] = {arm: dict((rules or {}).get(arm, {}))
                                                 for arm in arms}
        self.events = 0
        self.labels: Counter[str] = Counter()
        self.days: Counter[int] = Counter()
        self.decisions: dict[str, Counter[str]] = {arm: Counter() for arm in arms}
        self.day_alerts: dict[str, Counter[int]] = {arm: Counter() for arm in arms}
        self.hits: dict[str, Counter[str]] = {arm: Counter() for arm in arms}
        self.shadow_hits: dict[str, Counter[str]] = {arm: Counter() for arm in arms}
        self.rule_errors: dict[str, Counter[str]] = {arm: Counter() for arm in arms}
        self.label_decisions: dict[str, dict[str, Counter[str]]] = {arm: {} for arm in arms}
        self.rule_labels: dict[str, dict[str, Counter[str]]] = {arm: {} for arm in arms}
        self.transitions: dict[str, Counter[tuple[str, str]]] = {
            arm: Counter() for arm in self.others}
        self.transition_samples: dict[str, dict[tuple[str, str], list[tuple[int, str]]]] = {
            arm: {} for arm in self.others}
        self.answered: Counter[str] = Counter()
        self.latency: dict[str, LatencyHistogram] = {arm: LatencyHistogram() for arm in arms}
        self.positive_amount = ExactSum()
        self.positives_without_amount = 0
        self.caught_amount = {arm: ExactSum() for arm in arms}
        self.blocked_amount = {arm: ExactSum() for arm in arms}
        self.rule_money: dict[str, dict[str, tuple[ExactSum, ExactSum]]] = {
            arm: {} for arm in arms}
        """Per arm and rule: the caught and blocked amounts of the positives it hit."""

    # -- accumulating ---------------------------------------------------------------------

    def add(self, event_id: str, timestamp: int, label: str | None,
            arms: Mapping[str, ArmResult], *, amount: float | None = None,
            answered: str | None = None, latency_ms: float | None = None) -> None:
        """Count one event, decided by every arm (`arms`: arm name → its result); with
        the event's `amount` (money caught and blocked), and in a live experiment the arm
        that `answered` and the decision's latency."""
        if answered is not None:
            self.answered[answered] += 1
            if latency_ms is not None:
                self.latency[answered].add(latency_ms)
        if label is not None and label != LEGIT:
            if amount is None:
                self.positives_without_amount += 1
            else:
                self.positive_amount.add(amount)
                self._add_money(arms, amount)
        self.events += 1
        day = timestamp // _DAY_MS
        self.days[day] += 1
        if label is not None:
            self.labels[label] += 1
        for arm in self.arms:
            result = arms[arm]
            decision = result.decision
            self.decisions[arm][decision] += 1
            if decision in FLAGGED:
                self.day_alerts[arm][day] += 1
            if result.hits:
                self.hits[arm].update(result.hits)
            if result.shadow_hits:
                self.shadow_hits[arm].update(result.shadow_hits)
            if result.rule_errors:
                self.rule_errors[arm].update(result.rule_errors)
            if label is not None:
                _count(self.label_decisions[arm], label, decision)
                per_rule = self.rule_labels[arm]
                for rule_id in (*result.hits, *result.shadow_hits):
                    _count(per_rule, rule_id, label)
        before = arms[self.baseline].decision
        for arm in self.others:
            after = arms[arm].decision
            if after != before:
                key = (before, after)
                self.transitions[arm][key] += 1
                if self.samples:
                    _keep_earliest(self.transition_samples[arm].setdefault(key, []),
                                   [(timestamp, event_id)], self.samples)

    def _add_money(self, arms: Mapping[str, ArmResult], amount: float) -> None:
        """A positive event's amount: caught by the arms that flagged it, blocked by those
        that rejected it, and the same per rule that hit it."""
        for arm in self.arms:
            result = arms[arm]
            flagged = result.decision in FLAGGED
            blocked = result.decision == "reject"
            if flagged:
                self.caught_amount[arm].add(amount)
            if blocked:
                self.blocked_amount[arm].add(amount)
            per_rule = self.rule_money[arm]
            for rule_id in (*result.hits, *result.shadow_hits):
                money = per_rule.get(rule_id)
                if money is None:
                    money = per_rule[rule_id] = (ExactSum(), ExactSum())
                money[0].add(amount)
                if blocked:
                    money[1].add(amount)

    def merge(self, other: ArmComparison) -> ArmComparison:
        """Add `other`'s counts to this accumulator (and return it); both must compare the
        same arms against the same baseline with the same number of samples."""
        if (other.arms, other.baseline, other.samples) != (self.arms, self.baseline,
                                                           self.samples):
            raise ValueError(
                f"cannot merge a comparison of {other.arms!r} (baseline {other.baseline!r}, "
                f"{other.samples} samples) into one of {self.arms!r} (baseline "
                f"{self.baseline!r}, {self.samples} samples)")
        self.events += other.events
        self.answered.update(other.answered)
        self.positive_amount.merge(other.positive_amount)
        self.positives_without_amount += other.positives_without_amount
        for arm in self.arms:
            self.latency[arm].merge(other.latency[arm])
            self.caught_amount[arm].merge(other.caught_amount[arm])
            self.blocked_amount[arm].merge(other.blocked_amount[arm])
            for rule_id, (caught, blocked) in other.rule_money[arm].items():
                money = self.rule_money[arm].setdefault(rule_id, (ExactSum(), ExactSum()))
                money[0].merge(caught)
                money[1].merge(blocked)
        self.labels.update(other.labels)
        self.days.update(other.days)
        for arm in self.arms:
            self.rules[arm].update(other.rules[arm])
            self.decisions[arm].update(other.decisions[arm])
            self.day_alerts[arm].update(other.day_alerts[arm])
            self.hits[arm].update(other.hits[arm])
            self.shadow_hits[arm].update(other.shadow_hits[arm])
            self.rule_errors[arm].update(other.rule_errors[arm])
            for nested, their_nested in ((self.label_decisions, other.label_decisions),
                                         (self.rule_labels, other.rule_labels)):
                for name, counts in their_nested[arm].items():
                    nested[arm].setdefault(name, Counter()).update(counts)
        for arm in self.others:
            self.transitions[arm].update(other.transitions[arm])
            samples = self.transition_samples[arm]
            for step, theirs in other.transition_samples[arm].items():
                _keep_earliest(samples.setdefault(step, []), theirs, self.samples)
        return self

    # -- reading --------------------------------------------------------------------------

    @property
    def labelled(self) -> int:
        return sum(self.labels.values())

    @property
    def positives(self) -> int:
        return sum(n for label, n in self.labels.items() if label != LEGIT)

    def decision_mix(self, arm: str) -> dict[str, int]:
        counts = self.decisions[arm]
        mix = {decision: counts.get(decision, 0) for decision in DECISIONS}
        mix.update(counts)  # a decision outside accept/review/reject is still reported
        return mix

    def alerts(self, arm: str) -> int:
        return sum(n for decision, n in self.decisions[arm].items() if decision in FLAGGED)

    def alert_rate(self, arm: str) -> float | None:
        return self.alerts(arm) / self.events if self.events else None

    def rule_ids(self) -> list[str]:
        """Every rule of any arm, in the arms' order, then rules that hit but were not
        declared (sorted)."""
        ordered = dict.fromkeys(rule for arm in self.arms for rule in self.rules[arm])
        seen = {rule for arm in self.arms
                for rule in (*self.hits[arm], *self.shadow_hits[arm])}
        return [*ordered, *sorted(seen - set(ordered))]

    def rule_hits(self, arm: str, rule_id: str) -> int:
        return self.hits[arm].get(rule_id, 0) + self.shadow_hits[arm].get(rule_id, 0)

    def rule_mode(self, arm: str, rule_id: str) -> str | None:
        """The rule's mode in `arm`: declared, else seen in its hits; None when absent."""
        mode = self.rules[arm].get(rule_id)
        if mode is None:
            if self.hits[arm].get(rule_id):
                mode = "active"
            elif self.shadow_hits[arm].get(rule_id):
                mode = "shadow"
        return mode

    def detection(self, arm: str) -> Detection:
        """How well the arm's decisions (review or reject) catch the positive labels."""
        flagged = true_positives = 0
        for label, counts in self.label_decisions[arm].items():
            caught = sum(n for decision, n in counts.items() if decision in FLAGGED)
            flagged += caught
            if label != LEGIT:
                true_positives += caught
        return Detection.of(true_positives, flagged, self.positives)

    def rule_detection(self, arm: str, rule_id: str) -> Detection:
        """How well a rule's hits in `arm` catch the positive labels."""
        per_label = self.rule_labels[arm].get(rule_id, Counter())
        true_positives = sum(n for label, n in per_label.items() if label != LEGIT)
        return Detection.of(true_positives, sum(per_label.values()), self.positives)

    def rule_money_of(self, arm: str, rule_id: str) -> dict[str, float]:
        """The positives' amount a rule hit in `arm`: all of it, and where `arm` rejected."""
        money = self.rule_money[arm].get(rule_id)
        if money is None:
            return {"caught": 0.0, "blocked": 0.0}
        return {"caught": money[0].value, "blocked": money[1].value}

    def label_outcomes(self, arm: str, label: str) -> dict[str, Any]:
        """Decision counts of one label in `arm` and the share caught (review or reject)."""
        counts = self.label_decisions[arm].get(label, Counter())
        total = self.labels.get(label, 0)
        caught = sum(n for decision, n in counts.items() if decision in FLAGGED)
        return {"events": total, **{d: counts.get(d, 0) for d in DECISIONS},
                "caught": caught, "caught_rate": caught / total if total else None}

    def transition_list(self, arm: str) -> list[dict[str, Any]]:
        """`arm`'s transitions from the baseline, most frequent first."""
        samples = self.transition_samples.get(arm, {})
        return [{"from": before, "to": after, "count": count,
                 "samples": [event_id for _, event_id in samples.get((before, after), [])]}
                for (before, after), count in sorted(
                    self.transitions[arm].items(), key=lambda item: (-item[1], item[0]))]

    def daily(self) -> list[dict[str, Any]]:
        """Per UTC day with events: the events and each arm's alert rate."""
        return [{"day": _iso_day(day), "events": events,
                 "alerts": {arm: self.day_alerts[arm].get(day, 0) for arm in self.arms},
                 "alert_rate": {arm: self.day_alerts[arm].get(day, 0) / events
                                for arm in self.arms}}
                for day, events in sorted(self.days.items())]

    def to_dict(self) -> dict[str, Any]:
        """Everything above as plain JSON-ready data; the label sections only when some
        event had a label."""
        arms, base = self.arms, self.baseline
        rules = []
        for rule_id in self.rule_ids():
            hits = {arm: self.rule_hits(arm, rule_id) for arm in arms}
            entry: dict[str, Any] = {
                "rule_id": rule_id,
                "mode": {arm: self.rule_mode(arm, rule_id) for arm in arms},
                "hits": hits,
                "change": {arm: hits[arm] - hits[base] for arm in self.others},
            }
            if self.labels:
                entry["detection"] = {arm: self.rule_detection(arm, rule_id).to_dict()
                                      for arm in arms}
                entry["money"] = {arm: self.rule_money_of(arm, rule_id) for arm in arms}
            rules.append(entry)
        data: dict[str, Any] = {
            "arms": list(arms),
            "baseline": base,
            "events": self.events,
            "decisions": {arm: self.decision_mix(arm) for arm in arms},
            "alert_rate": {arm: self.alert_rate(arm) for arm in arms},
            "changed": {arm: sum(self.transitions[arm].values()) for arm in self.others},
            "transitions": {arm: self.transition_list(arm) for arm in self.others},
            "rules": rules,
            "rule_errors": {arm: dict(self.rule_errors[arm].most_common()) for arm in arms},
            "daily": self.daily(),
            "labelled": self.labelled,
        }
        if self.labels:
            data["positives"] = self.positives
            data["labels"] = {label: self.labels[label] for label in label_order(self.labels)}
            data["detection"] = {arm: self.detection(arm).to_dict() for arm in arms}
            data["label_outcomes"] = {
                arm: {label: self.label_outcomes(arm, label) for label in data["labels"]}
                for arm in arms}
            data["money"] = {"positive_amount": self.positive_amount.value,
                             "positives_without_amount": self.positives_without_amount,
                             "caught": {arm: self.caught_amount[arm].value for arm in arms},
                             "blocked": {arm: self.blocked_amount[arm].value for arm in arms}}
        if self.answered:
            data["answered"] = {arm: self.answered.get(arm, 0) for arm in arms}
            data["latency_ms"] = {arm: self.latency[arm].to_dict() for arm in arms}
        return data


def _count(table: dict[str, Counter[str]], key: str, value: str) -> None:
    counts = table.get(key)
    if counts is None:
        counts = table[key] = Counter()
    counts[value] += 1


def _keep_earliest(kept: list[tuple[int, str]], new: Iterable[tuple[int, str]],
                   limit: int) -> None:
    """Insert `new` into the sorted `kept`, keeping its `limit` smallest entries."""
    for item in new:
        if len(kept) >= limit and item >= kept[-1]:
            continue
        if item in kept:
            continue
        bisect.insort(kept, item)
        if len(kept) > limit:
            kept.pop()


def _iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * _DAY_MS / 1000, tz=UTC).date().isoformat()


def label_order(labels: Mapping[str, int]) -> list[str]:
    """``legit`` first, then the other labels by how often they occur."""
    rest = sorted((label for label in labels if label != LEGIT),
                  key=lambda label: (-labels[label], label))
    return ([LEGIT] if LEGIT in labels else []) + rest
