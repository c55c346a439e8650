"""``riskengine_model_failures_total{scene,model}``: events whose model score failed.

The engine counts them (`ModelSet.failures`, kept across version changes); this collector
reads those counts whenever /metrics is scraped, so the decision path touches no
Prometheus object.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from riskengine.engine import Engine
from riskengine.models import ModelSet

__all__ = ["ModelFailureCollector"]


class ModelFailureCollector(Collector):
    """Reads each scene's model failure counts (every model listed, 0 included)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "riskengine_model_failures",
            "Events whose model score failed (raised or not a finite number): the rules "
            "saw null", labels=["scene", "model"])
        for scene in self.engine.scenes:
            models = self.engine.scene(scene).models
            if isinstance(models, ModelSet):
                for name in models.models:
                    family.add_metric([scene, name], models.failures[name])
        yield family
