"""What the overview page shows, read from the process's own Prometheus objects.

`RateRing` keeps the last samples of the decision counters (at most one a second, taken
when the overview is read) and turns consecutive samples into decisions per second by
outcome. Latency percentiles are read off the histogram's buckets: the reported value is
the upper bound of the bucket holding the percentile (so "≤ 2.5 ms"). With several
workers each process shows its own traffic.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from riskengine.decisionlog.record import DECISIONS
from riskengine.service.metrics import ServiceMetrics

RING_SIZE = 120
MIN_SAMPLE_GAP_S = 1.0
PERCENTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    totals: dict[str, float]


class RateRing:
    """Decision totals by outcome over time; rates between consecutive samples."""

    def __init__(self, metrics: ServiceMetrics, size: int = RING_SIZE) -> None:
        self.metrics = metrics
        self._samples: deque[Sample] = deque(maxlen=size)
        self._lock = threading.Lock()

    def sample(self, now: float | None = None) -> None:
        at = time.time() if now is None else now
        with self._lock:
            if self._samples and at - self._samples[-1].at < MIN_SAMPLE_GAP_S:
                return
            self._samples.append(Sample(at, decision_totals(self.metrics)))

    def series(self) -> dict[str, list[float]]:
        """``{"t": [...], "<outcome>": [per second, ...]}``, one point per sample pair."""
        with self._lock:
            samples = list(self._samples)
        out: dict[str, list[float]] = {"t": [], **{d: [] for d in DECISIONS}}
        for before, after in pairwise(samples):
            seconds = after.at - before.at
            out["t"].append(round(after.at, 3))
            for outcome in DECISIONS:
                delta = after.totals.get(outcome, 0.0) - before.totals.get(outcome, 0.0)
                out[outcome].append(round(max(delta, 0.0) / seconds, 3))
        return out


def decision_totals(metrics: ServiceMetrics) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for sample in _samples(metrics.decisions, "riskengine_decisions_total"):
        totals[sample.labels["decision"]] += sample.value
    return dict(totals)


def latency_percentiles(metrics: ServiceMetrics) -> dict[str, float | None]:
    """``{"p50": ms, ...}``: the upper bound (ms) of the bucket holding each percentile;
    None before any decision (or beyond the last finite bucket)."""
    buckets: Counter[float] = Counter()
    for sample in _samples(metrics.latency, "riskengine_decision_seconds_bucket"):
        buckets[float(sample.labels["le"])] += sample.value
    total = buckets.get(math.inf, 0.0)
    found: dict[str, float | None] = {}
    for q in PERCENTILES:
        name = f"p{round(q * 100)}"
        found[name] = None
        if total <= 0:
            continue
        for bound in sorted(buckets):
            if buckets[bound] >= q * total:
                found[name] = None if math.isinf(bound) else round(bound * 1000, 3)
                break
    return found


def top_rules(metrics: ServiceMetrics, limit: int = 10) -> list[dict[str, Any]]:
    """The rules with the most hits (active and shadow), most first."""
    rows = [{"scene": s.labels["scene"], "rule": s.labels["rule"], "mode": s.labels["mode"],
             "hits": int(s.value)}
            for s in _samples(metrics.rule_hits, "riskengine_rule_hits_total")]
    rows.sort(key=lambda row: (-row["hits"], row["scene"], row["rule"]))
    return rows[:limit]


def degraded_by_scene(metrics: ServiceMetrics) -> dict[str, int]:
    return {s.labels["scene"]: int(s.value)
            for s in _samples(metrics.degraded, "riskengine_degraded_decisions_total")}


def _samples(metric: Any, name: str) -> list[Any]:
    return [sample for family in metric.collect() for sample in family.samples
            if sample.name == name]
