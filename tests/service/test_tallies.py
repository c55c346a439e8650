"""The tallied metrics expose what prometheus_client's own counters and histograms expose
for the same observations: names, labels, buckets, sums, counts (``_created`` aside, a
time)."""

from __future__ import annotations

import random
import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from riskengine.service.metrics import LATENCY_BUCKETS
from riskengine.service.tallies import TallyCounter, TallyHistogram

_CREATED = re.compile(rb"^(\w+_created(\{[^}]*\})?) \S+$", re.MULTILINE)


def exposition(registry: CollectorRegistry) -> bytes:
    return _CREATED.sub(rb"\1 T", generate_latest(registry))


def test_tallies_expose_what_prometheus_client_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hits = TallyCounter("demo_hits", "Hits by scene and rule", ["scene", "rule"], ours)
    native_hits = Counter("demo_hits", "Hits by scene and rule", ["scene", "rule"],
                          registry=theirs)
    seconds = TallyHistogram("demo_seconds", "Time", ["scene"], LATENCY_BUCKETS, ours)
    native_seconds = Histogram("demo_seconds", "Time", ["scene"], buckets=LATENCY_BUCKETS,
                               registry=theirs)
    for scene in ("pay", "login"):  # shown at zero before any observation
        seconds.child((scene,))
        native_seconds.labels(scene)
    rnd = random.Random(2)
    edges = [*LATENCY_BUCKETS, 0.0, 2.0, 1e-9]  # a value on a bound is in its bucket
    for _ in range(2000):
        scene = rnd.choice(["pay", "login", 'quo"te\\'])
        rule = rnd.choice(["r1", "r2", "中文"])
        amount = rnd.choice([1.0, 2.5])
        hits.inc((scene, rule), amount)
        native_hits.labels(scene, rule).inc(amount)
        value = rnd.choice(edges) if rnd.random() < 0.3 else rnd.expovariate(300)
        seconds.observe((scene,), value)
        native_seconds.labels(scene).observe(value)
    assert exposition(ours) == exposition(theirs)
