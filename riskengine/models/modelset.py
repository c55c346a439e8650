"""The live versions of a scene's models, scoring each event (`riskengine.scene.ModelScores`).

Each model's row is read from the decision's features (features, pattern keys) or, for a
name that is no feature, from the event's fields, in the configured order; a missing,
null or non-numeric value is NaN (the model's "missing"). The score goes into the
features under ``model:<name>``: a float, or None when the model raised or gave no finite
number — rules reading it see null (a comparison with null is not a hit). Such failures
are counted per model in `failures` (the service exports them as
``riskengine_model_failures_total``); the counter is shared by the sets that `with_model`
derives, so it survives version changes.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from riskengine.models.loading import LoadedModel, load_model
from riskengine.models.spec import ModelSpec

__all__ = ["ModelSet"]

log = logging.getLogger(__name__)

_NAN = math.nan
_NUMBERS: frozenset[Any] = frozenset({int, float, bool})
_isfinite = math.isfinite


class ModelSet:
    """A scene's models at fixed versions (immutable: a change is a new set)."""

    def __init__(self, scene: str, models: Iterable[LoadedModel], feature_names: Collection[str],
                 failures: Counter[str] | None = None) -> None:
        self.scene = scene
        self.models: dict[str, LoadedModel] = {m.spec.name: m for m in models}
        self.versions: Mapping[str, str] = {n: m.version for n, m in self.models.items()}
        self.failures: Counter[str] = Counter() if failures is None else failures
        """Per model name, the events whose score failed (None), over every version."""
        self.feature_names = frozenset(feature_names)
        self._plan = tuple(
            (m.spec.key, name, m.scorer.score,
             tuple((i in self.feature_names, i) for i in m.spec.inputs))
            for name, m in self.models.items())

    @classmethod
    def load(cls, scene: str, specs: Iterable[ModelSpec], feature_names: Collection[str]
             ) -> ModelSet:
        """Load every model of a scene (`ModelError` names the first that fails)."""
        return cls(scene, [load_model(spec, scene) for spec in specs], feature_names)

    def with_model(self, model: LoadedModel) -> ModelSet:
        """This set with `model` in place of the version of the same name."""
        if model.spec.name not in self.models:
            raise KeyError(model.spec.name)
        return ModelSet(self.scene, {**self.models, model.spec.name: model}.values(),
                        self.feature_names, self.failures)

    def score(self, event: Mapping[str, Any], features: dict[str, Any]) -> None:
        for key, name, score, readers in self._plan:
            values = [(features if from_features else event).get(field)
                      for from_features, field in readers]
            try:
                result = score([v if v.__class__ in _NUMBERS else _NAN for v in values])
            except Exception as exc:  # a model that raises gives a null term, never a 5xx
                self.failures[name] += 1
                log.debug("scene %s: model %s failed: %s", self.scene, name, exc)
                features[key] = None
                continue
            if _isfinite(result):
                features[key] = result
            else:
                self.failures[name] += 1
                features[key] = None
