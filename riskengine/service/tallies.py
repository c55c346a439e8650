"""Counters and histograms of the per-decision metrics, kept as plain numbers.

prometheus_client takes a lock for every increment and walks a histogram's buckets in
Python: a few microseconds per decision, on the one thread that decides. These are counted
on the event loop's thread in dicts and lists and turned into metric families only when
collected (the `/metrics` page, the console), with the same names, labels and samples
(``_created`` included) as prometheus_client's own.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> hits = TallyCounter("demo_hits", "Hits", ("scene",), registry)
>>> hits.inc(("pay",))
>>> b'demo_hits_total{scene="pay"} 1.0' in generate_latest(registry)
True
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["TallyCounter", "TallyHistogram"]

Labels = tuple[str, ...]


class TallyCounter:
    """A labelled counter (`name` without ``_total``), registered in `registry`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.counts: dict[Labels, float] = {}
        self._created: dict[Labels, float] = {}
        registry.register(self)

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        """Add `amount` to the counter of `labels` (in `labelnames` order)."""
        counts = self.counts
        if labels in counts:
            counts[labels] += amount
        else:
            self._created[labels] = time.time()
            counts[labels] = amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = self._created
        for labels, value in list(self.counts.items()):
            family.add_metric(labels, value, created=created[labels])
        yield family

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]


class TallyHistogram:
    """A labelled histogram with fixed `buckets` (upper bounds; +Inf is added)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._names = (*(str(floatToGoString(b)) for b in self.bounds),  # type: ignore[no-untyped-call]
                       "+Inf")
        self.series: dict[Labels, Series] = {}
        registry.register(self)

    def child(self, labels: Labels) -> Series:
        """The series of `labels`, made (and shown at zero) on first use."""
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = Series(self.bounds)
        return series

    def observe(self, labels: Labels, value: float) -> None:
        self.child(labels).observe(value)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, series in list(self.series.items()):
            cumulative = 0
            buckets = []
            for name, count in zip(self._names, list(series.counts), strict=True):
                cumulative += count
                buckets.append((name, float(cumulative)))
            family.add_metric(labels, buckets, series.total)
            family.samples.append(Sample(self.name + "_created",
                                         dict(zip(self.labelnames, labels, strict=True)),
                                         series.created))
        yield family

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]


class Series:
    """One label set of a `TallyHistogram`: a count per bucket (not cumulative), the sum."""

    __slots__ = ("bounds", "counts", "created", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
