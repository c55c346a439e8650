"""A scene's ``models:`` section: which model files score its events, and on what.

```yaml
models:
  fraud_gbm:
    uri: models/fraud_gbm.onnx     # a path (relative to the config file) or models:/name/3
    inputs: [amount, avg_amount_24h, pair_count_30d]   # in the model's input order
    output: probability            # or: value
    version: "1"                   # optional; default "m" + 12 hex of the file's sha256
```

`parse_models` validates the shape and the names (an input names a feature, a pattern key
``pattern:<name>`` or a field of the scene's schema); the files are read when the scene is
prepared (riskengine/models/loading.py).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from riskengine.exceptions import ConfigError

__all__ = ["MLFLOW_SCHEME", "OUTPUTS", "ModelSpec", "parse_model_change", "parse_models",
           "resolve_uri"]

OUTPUTS = ("probability", "value")
"""``probability``: the positive class's probability of a classifier (class 1 of two);
``value``: the one number per row of a regressor."""
MLFLOW_SCHEME = "models:/"
MAX_MODELS = 20
MAX_INPUTS = 1_000
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")
_KEYS = ("uri", "inputs", "output", "version")
_CHANGE_KEYS = ("uri", "version")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model as configured. `uri` is an absolute path or an MLflow ``models:/`` URI;
    `version` None means the content hash of the file."""

    name: str
    uri: str
    inputs: tuple[str, ...]
    output: str = "probability"
    version: str | None = None

    @property
    def key(self) -> str:
        """Where the score goes in a decision's features (what ``model("name")`` reads)."""
        return f"model:{self.name}"


def resolve_uri(uri: object, base_dir: Path | None, what: str) -> str:
    """An MLflow ``models:/`` URI as it is; a path made absolute against `base_dir` (the
    config file's folder; the working directory when None)."""
    if not isinstance(uri, str) or not uri.strip() or len(uri) > 4096 or "\x00" in uri:
        raise ConfigError(f"{what}: `uri` must be a file path or a models:/<name>/<version> "
                          "URI")
    if uri.startswith(MLFLOW_SCHEME):
        if len(uri) == len(MLFLOW_SCHEME):
            raise ConfigError(f"{what}: {uri!r} names no model; e.g. models:/fraud_gbm/3")
        return uri
    path = Path(uri).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return str(path.resolve())


def _version(raw: object, what: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not _VERSION_RE.match(raw):
        raise ConfigError(f"{what}: `version` must be 1-64 letters, digits, '_', '.', '+' or "
                          f"'-', got {raw!r:.80}")
    return raw


def parse_models(raw: object, scene: str, known_inputs: Collection[str],
                 base_dir: Path | None = None) -> tuple[ModelSpec, ...]:
    """Validate a scene's ``models:`` mapping (None: no models). `known_inputs` are the
    names an input may take: the scene's features, pattern keys and schema fields."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"scene {scene!r}: models must map model names to "
                          "{uri, inputs, output, version}")
    if len(raw) > MAX_MODELS:
        raise ConfigError(f"scene {scene!r}: at most {MAX_MODELS} models")
    return tuple(_model(name, body, scene, known_inputs, base_dir)
                 for name, body in raw.items())


def _model(name: object, raw: object, scene: str, known: Collection[str],
           base_dir: Path | None) -> ModelSpec:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"scene {scene!r}: model names start with a letter and hold letters, "
                          f"digits, '_', '.' or '-' (at most 64), got {name!r:.80}")
    what = f"scene {scene!r}: model {name!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{what} must be a mapping with uri and inputs")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                          f"{', '.join(_KEYS)}")
    inputs = raw.get("inputs")
    if (not isinstance(inputs, list) or not inputs or len(inputs) > MAX_INPUTS
            or not all(isinstance(i, str) for i in inputs)):
        raise ConfigError(f"{what}: `inputs` must be a list of 1 to {MAX_INPUTS} names "
                          "(features, pattern keys or event fields) in the model's input order")
    missing = [i for i in inputs if i not in known]
    if missing:
        raise ConfigError(f"{what}: input {missing[0]!r:.100} is not a feature, a pattern key "
                          "(pattern:<name>) or a schema field of the scene; known: "
                          f"{', '.join(sorted(known))}")
    output = raw.get("output", "probability")
    if output not in OUTPUTS:
        raise ConfigError(f"{what}: `output` must be one of {', '.join(OUTPUTS)}, "
                          f"got {output!r:.80}")
    return ModelSpec(name, resolve_uri(raw.get("uri"), base_dir, what), tuple(inputs),
                     str(output), _version(raw.get("version"), what))


def parse_model_change(spec: ModelSpec, body: object, base_dir: Path | None) -> ModelSpec:
    """The live model `spec` with another file: the admin API's ``{"uri", "version"}``
    body (inputs and output stay those of the config)."""
    what = f"model {spec.name!r}"
    if not isinstance(body, Mapping):
        raise ConfigError(f"{what}: the body is an object with `uri` and an optional "
                          "`version`")
    unknown = sorted(str(k)[:40] for k in body if k not in _CHANGE_KEYS)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                          f"{', '.join(_CHANGE_KEYS)}")
    return replace(spec, uri=resolve_uri(body.get("uri"), base_dir, what),
                   version=_version(body.get("version"), what))
