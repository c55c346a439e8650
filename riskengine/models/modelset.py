"""The live versions of a scene's models, scoring each event (`riskengine.scene.ModelScores`).

Each model's row is read from the decision's features (features, pattern keys) or, for a
name that is no feature, from the event's fields, in the configured order; a missing,
null or non-numeric value is NaN (the model's "missing"). The score goes into the
features under ``model:<name>``: a float, or None when the model raised or gave no finite
number — rules reading it see null (a comparison with null is not a hit). Such failures
are counted per model in `failures` (the service exports them as
``riskengine_model_failures_total``); the counter is shared by the sets that `with_model`
derives, so it survives version changes.

`score_many` scores a run of events (a stream worker's batch) with one model run per
model where the model gives each row the number it gives it alone
(`OnnxScorer.batch_exact`), else row by row: the same numbers and failures as `score` on
each event.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
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
            (m.spec.key, name, m.scorer,
             _row_reader(tuple((i in self.feature_names, i) for i in m.spec.inputs)))
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
        for key, name, scorer, row in self._plan:
            self._put(name, key, features, self._score_row(name, scorer.score,
                                                           row(event, features)))

    def score_many(self, events: Sequence[Mapping[str, Any]],
                   features: Sequence[dict[str, Any]]) -> None:
        """`score` for each of `events` (and its `features`), one model run per model
        when the model allows it."""
        if len(events) < 2:
            for event, values in zip(events, features, strict=True):
                self.score(event, values)
            return
        for key, name, scorer, row in self._plan:
            rows = [row(event, values) for event, values in zip(events, features, strict=True)]
            results: list[float | None] | None = None
            if scorer.batch_exact:
                try:
                    results = list(scorer.score_many(rows))
                except Exception:  # find the rows that fail: one by one, as `score` does
                    results = None
            if results is None:
                results = [self._score_row(name, scorer.score, row) for row in rows]
            for values, result in zip(features, results, strict=True):
                self._put(name, key, values, result)

    def _score_row(self, name: str, score: Callable[[list[Any]], float], row: list[Any]
                   ) -> float | None:
        """One row's number; None (counted) when the model raises."""
        try:
            return score(row)
        except Exception as exc:  # a model that raises gives a null term, never a 5xx
            self.failures[name] += 1
            log.debug("scene %s: model %s failed: %s", self.scene, name, exc)
            return None

    def _put(self, name: str, key: str, features: dict[str, Any],
             result: float | None) -> None:
        """A finite score goes in; anything else is null (a raise was counted already)."""
        if result is not None and _isfinite(result):
            features[key] = result
            return
        if result is not None:
            self.failures[name] += 1
        features[key] = None


def _row_reader(readers: tuple[tuple[bool, str], ...]
                ) -> Callable[[Mapping[str, Any], Mapping[str, Any]], list[Any]]:
    """``row(event, features)``: a model's input row, each input read from the features
    (or the event's fields when `readers` says so), anything but a number NaN (the
    model's missing); one compiled list display."""
    items = [f"(v if (v := {'f' if from_features else 'e'}.get({field!r})).__class__ in "
             "NUMBERS else NAN)" for from_features, field in readers]
    reader: Callable[[Mapping[str, Any], Mapping[str, Any]], list[Any]] = eval(
        "lambda e, f: [" + ", ".join(items) + "]", {"NUMBERS": _NUMBERS, "NAN": _NAN})
    return reader
