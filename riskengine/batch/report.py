"""What a replay found: decision counts, rule hits and, for labelled input, how well each
rule and the overall decision catch each label.

A rule *flags* an event when it hits (shadow rules included: measuring them is what
shadow mode is for). An event is *positive* when its label is not ``legit``; events
without a label are left out of precision and recall. Per rule: precision = flagged
positives / flagged labelled events, recall = flagged positives / positives, and the
recall of each label. Per label: how many events the decision let through, sent to
review or rejected; "caught" is review + reject (for ``legit`` that is the false-positive
rate).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from riskengine.batch.metrics import DECISIONS, LEGIT, Detection, label_order
from riskengine.decision import Decision

__all__ = ["DECISIONS", "LEGIT", "ReplayStats", "percent", "render_summary"]


@dataclass
class ReplayStats:
    """Counters of one replay, updated per row; nothing per event is kept."""

    scene: str
    source: str = ""
    rules: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    late: int = 0
    degraded: int = 0
    rule_errors: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    label_decisions: dict[str, Counter[str]] = field(default_factory=dict)
    rule_label_hits: dict[str, Counter[str]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def evaluated(self) -> int:
        return sum(self.decisions.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def labelled(self) -> bool:
        return bool(self.labels)

    @property
    def positives(self) -> int:
        return sum(n for label, n in self.labels.items() if label != LEGIT)

    def add(self, decision: Decision, label: str | None) -> None:
        """Count one decision; `label` is the event's ground truth, if it has one."""
        hits, shadow_hits = decision.hits, decision.shadow_hits
        if (hits or shadow_hits or label is not None or decision.late or decision.degraded
                or decision.rule_errors):
            self.count(decision.decision, decision.late, decision.degraded,
                       decision.rule_errors,
                       [h.rule_id for h in hits] + [h.rule_id for h in shadow_hits], label)
        else:  # most decisions of a replay: all that `count` would do for them
            self.decisions[decision.decision] += 1

    def add_record(self, record: Mapping[str, Any]) -> None:
        """Count one decision record (riskengine/batch/replay.py `decision_record`)."""
        self.count(record["decision"], record["late"], record["degraded"],
                   record["rule_errors"], [*record["hits"], *record["shadow_hits"]],
                   record.get("label"))

    def count(self, decision: str, late: bool, degraded: bool, rule_errors: Iterable[str],
              hit_ids: list[str], label: str | None) -> None:
        """Count one decision from its parts (`hit_ids`: active and shadow hits)."""
        self.decisions[decision] += 1
        if late:
            self.late += 1
        if degraded:
            self.degraded += 1
        for rule_id in rule_errors:
            self.rule_errors[rule_id] += 1
        if hit_ids:
            self.hits.update(hit_ids)
        if label is None:
            return
        self.labels[label] += 1
        by_label = self.label_decisions.get(label)
        if by_label is None:
            by_label = self.label_decisions[label] = Counter()
        by_label[decision] += 1
        for rule_id in hit_ids:
            per_rule = self.rule_label_hits.get(rule_id)
            if per_rule is None:
                per_rule = self.rule_label_hits[rule_id] = Counter()
            per_rule[label] += 1

    def merge(self, other: ReplayStats) -> None:
        """Add the counts of `other` (a replay of another part of the same input)."""
        self.rows += other.rows
        self.late += other.late
        self.degraded += other.degraded
        for mine, theirs in ((self.decisions, other.decisions), (self.errors, other.errors),
                             (self.rule_errors, other.rule_errors), (self.hits, other.hits),
                             (self.labels, other.labels)):
            mine.update(theirs)
        for table, more in ((self.label_decisions, other.label_decisions),
                            (self.rule_label_hits, other.rule_label_hits)):
            for key, counts in more.items():
                table.setdefault(key, Counter()).update(counts)

    def rule_ids(self) -> list[tuple[str, str]]:
        """(rule id, mode) for the configured rules, then any other rule that hit."""
        known = {rule_id for rule_id, _ in self.rules}
        extra = [(rule_id, "?") for rule_id in sorted(self.hits) if rule_id not in known]
        return list(self.rules) + extra

    def rule_quality(self, rule_id: str) -> dict[str, Any]:
        """Hits, precision, recall and recall per label of one rule."""
        per_label = self.rule_label_hits.get(rule_id, Counter())
        true_pos = sum(n for label, n in per_label.items() if label != LEGIT)
        detection = Detection.of(true_pos, sum(per_label.values()), self.positives)
        return {
            "hits": self.hits.get(rule_id, 0),
            "precision": detection.precision,
            "recall": detection.recall,
            "recall_by_label": {label: per_label.get(label, 0) / n
                                for label, n in sorted(self.labels.items())},
        }

    def label_outcomes(self, label: str) -> dict[str, Any]:
        """Decision counts of one label and the share caught (review or reject)."""
        counts = self.label_decisions.get(label, Counter())
        total = self.labels[label]
        caught = counts.get("review", 0) + counts.get("reject", 0)
        return {"events": total, **{d: counts.get(d, 0) for d in DECISIONS},
                "caught": caught, "caught_rate": caught / total if total else None}

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready data (the `--summary-json` file)."""
        evaluated = self.evaluated
        return {
            "scene": self.scene,
            "input": self.source,
            "rows": self.rows,
            "evaluated": evaluated,
            "errors": self.error_count,
            "errors_by_kind": dict(self.errors),
            "late": self.late,
            "degraded": self.degraded,
            "rule_errors": dict(self.rule_errors),
            "elapsed_s": self.elapsed_s,
            "events_per_s": self.rows / self.elapsed_s if self.elapsed_s > 0 else None,
            "decisions": {d: self.decisions.get(d, 0) for d in DECISIONS},
            "rules": [{"rule_id": rule_id, "mode": mode, **self.rule_quality(rule_id)}
                      for rule_id, mode in self.rule_ids()],
            "labels": {label: self.label_outcomes(label)
                       for label in label_order(self.labels)},
        }


def percent(part: float | None, whole: float | None = 1.0) -> str:
    """`part` as a share of `whole` (a fraction when `whole` is omitted); ``–`` for none."""
    if part is None or not whole:
        return "–"
    share = 100.0 * part / whole
    return f"{share:.2f}%" if 0 < share < 1 else f"{share:.1f}%"


def _overview(stats: ReplayStats, errors_path: str | None) -> Table:
    table = Table(title="Replay", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    rate = stats.rows / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
    table.add_row("input", stats.source)
    table.add_row("scene", stats.scene)
    table.add_row("rows read", f"{stats.rows:,}")
    table.add_row("decisions", f"{stats.evaluated:,}")
    errors = f"{stats.error_count:,}"
    if stats.error_count:
        errors += " (" + ", ".join(f"{kind} {n:,}" for kind, n in stats.errors.most_common())
        errors += f"; see {errors_path})" if errors_path else ")"
    table.add_row("errors", errors)
    table.add_row("late events", f"{stats.late:,}")
    if stats.degraded:
        table.add_row("degraded", f"{stats.degraded:,}")
    if stats.rule_errors:
        table.add_row("rule errors", ", ".join(f"{r}: {n:,}"
                                               for r, n in stats.rule_errors.most_common()))
    table.add_row("time", f"{stats.elapsed_s:.2f} s")
    table.add_row("throughput", f"{rate:,.0f} events/s")
    return table


def _decisions(stats: ReplayStats) -> Table:
    table = Table(title="Decisions", title_justify="left")
    table.add_column("decision")
    table.add_column("count", justify="right")
    table.add_column("%", justify="right")
    for decision in DECISIONS:
        count = stats.decisions.get(decision, 0)
        table.add_row(decision, f"{count:,}", percent(count, stats.evaluated))
    return table


def _rules(stats: ReplayStats) -> Table:
    labelled = stats.labelled
    title = "Rules (precision and recall against the label)" if labelled else "Rules"
    table = Table(title=title, title_justify="left")
    table.add_column("rule", no_wrap=True)
    table.add_column("mode")
    table.add_column("hits", justify="right")
    table.add_column("% events", justify="right")
    if labelled:
        table.add_column("precision", justify="right")
        table.add_column("recall", justify="right")
        table.add_column("legit flagged", justify="right")
        table.add_column("recall by label")
    for rule_id, mode in stats.rule_ids():
        quality = stats.rule_quality(rule_id)
        cells = [rule_id, mode, f"{quality['hits']:,}", percent(quality["hits"], stats.evaluated)]
        if labelled:
            by_label = quality["recall_by_label"]
            caught = sorted(((rate, label) for label, rate in by_label.items()
                             if label != LEGIT and rate > 0), reverse=True)
            cells += [percent(quality["precision"]), percent(quality["recall"]),
                      percent(by_label.get(LEGIT)),
                      ", ".join(f"{label} {percent(rate)}" for rate, label in caught) or "–"]
        table.add_row(*cells)
    return table


def _labels(stats: ReplayStats) -> Table:
    table = Table(title="Decisions by label", title_justify="left",
                  caption="caught = review or reject; for legit, the false-positive rate",
                  caption_justify="left")
    table.add_column("label", no_wrap=True)
    table.add_column("events", justify="right")
    for decision in DECISIONS:
        table.add_column(decision, justify="right")
    table.add_column("caught", justify="right")
    for label in label_order(stats.labels):
        outcome = stats.label_outcomes(label)
        table.add_row(label, f"{outcome['events']:,}",
                      *(f"{outcome[d]:,}" for d in DECISIONS), percent(outcome["caught_rate"]))
    return table


def render_summary(stats: ReplayStats, console: Console, errors_path: str | None = None) -> None:
    """Print the summary tables: overview, decisions, rules, and labels when present."""
    parts: list[Table] = [_overview(stats, errors_path), _decisions(stats), _rules(stats)]
    if stats.labelled:
        parts.append(_labels(stats))
    console.print(Group(*_spaced(parts)))


def _spaced(tables: Iterable[Table]) -> list[Any]:
    out: list[Any] = []
    for table in tables:
        if out:
            out.append("")
        out.append(table)
    return out
