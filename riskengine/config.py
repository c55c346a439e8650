"""Project config: scenes with schema, features, list checks, rules and policy.

`load_config` reads YAML (a path), a mapping, or the shipped example (None), validates the
shape, and returns frozen objects. Rules are compiled by the engine, which refuses the
whole config with the rule id and position if one is invalid.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from riskengine.durations import parse_duration
from riskengine.events import FieldSpec
from riskengine.exceptions import ConfigError, RiskEngineError
from riskengine.experiment import ExperimentSpec, parse_experiment
from riskengine.features.dsl import FeatureSpec, parse_feature
from riskengine.models.spec import ModelSpec, parse_models
from riskengine.patterns import PatternSpec, parse_patterns

EXAMPLE_CONFIG_PATH = Path(__file__).parent / "examples" / "config.yaml"
MAX_CONFIG_BYTES = 8 * 1024 * 1024
DEFAULT_LATENESS_MS = 5 * 60_000
DEFAULT_IDEMPOTENCY_MAX = 1_000_000
DEFAULT_MAX_ENTITIES = 5_000_000

_PROJECT_KEYS = frozenset({"version", "lists", "scenes", "service", "worker"})
_SCENE_KEYS = frozenset({"lateness", "schema", "features", "lists", "rules", "policy",
                         "ruleset_version", "idempotency_max", "max_entities", "fallback",
                         "patterns", "experiment", "models"})
FALLBACKS = ("accept", "review", "reject")
DEFAULT_FALLBACK = "review"
"""The decision given when a scene's state cannot be reached (`fallback:` per scene)."""


@dataclass(frozen=True, slots=True)
class ListCheck:
    """A list looked up for every event of a scene: a hit goes into `list_hits`."""

    list: str
    field: str


@dataclass(frozen=True, slots=True)
class SceneConfig:
    name: str
    lateness_ms: int
    schema: tuple[FieldSpec, ...]
    features: tuple[FeatureSpec, ...]
    list_checks: tuple[ListCheck, ...]
    rules: tuple[Mapping[str, Any], ...]
    policy: Mapping[str, Any]
    ruleset_version: str | None = None
    idempotency_max: int = DEFAULT_IDEMPOTENCY_MAX
    max_entities: int = DEFAULT_MAX_ENTITIES
    fallback: str = DEFAULT_FALLBACK
    patterns: tuple[PatternSpec, ...] = ()
    experiment: ExperimentSpec | None = None
    """Challengers beside the champion `rules` (riskengine/experiment.py)."""
    models: tuple[ModelSpec, ...] = ()
    """Models whose scores rules read as ``model("name")`` (riskengine/models/)."""


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    scenes: Mapping[str, SceneConfig]
    lists: Mapping[str, Any] = field(default_factory=dict)
    base_dir: Path | None = None
    source: str = "<dict>"
    service: Mapping[str, Any] = field(default_factory=dict)  # read by riskengine.service
    worker: Mapping[str, Any] = field(default_factory=dict)  # read by riskengine.stream


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | ProjectConfig | None
                = None) -> ProjectConfig:
    """Load and validate a project config; None means the shipped example config."""
    if isinstance(source, ProjectConfig):
        return source
    if source is None:
        source = EXAMPLE_CONFIG_PATH
    if isinstance(source, Mapping):
        return _project(source, base_dir=None, origin="<dict>")
    path = Path(source)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc.strerror}") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config {str(path)!r} is larger than 8 MiB")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config {str(path)!r} must be a mapping with a 'scenes' section")
    return _project(raw, base_dir=path.parent, origin=str(path))


def _project(raw: Mapping[str, Any], *, base_dir: Path | None, origin: str) -> ProjectConfig:
    unknown = set(raw) - _PROJECT_KEYS
    if unknown:
        raise ConfigError(f"{origin}: unknown top-level keys {sorted(map(str, unknown))}; "
                          f"allowed: {', '.join(sorted(_PROJECT_KEYS))}")
    scenes_raw = raw.get("scenes")
    if not isinstance(scenes_raw, Mapping) or not scenes_raw:
        raise ConfigError(f"{origin}: 'scenes' must map scene names to scene definitions")
    lists = raw.get("lists") or {}
    if not isinstance(lists, Mapping):
        raise ConfigError(f"{origin}: 'lists' must map list names to list definitions")
    scenes = {}
    for name, scene_raw in scenes_raw.items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{origin}: scene names are letters, digits, '_' or '-', "
                              f"got {name!r}")
        scenes[name] = _scene(name, scene_raw, base_dir)
    service = raw.get("service") or {}
    if not isinstance(service, Mapping):
        raise ConfigError(f"{origin}: 'service' must be a mapping of service settings")
    worker = raw.get("worker") or {}
    if not isinstance(worker, Mapping):
        raise ConfigError(f"{origin}: 'worker' must be a mapping of stream worker settings")
    return ProjectConfig(scenes=scenes, lists=dict(lists), base_dir=base_dir, source=origin,
                         service=dict(service), worker=dict(worker))


def _scene(name: str, raw: object, base_dir: Path | None = None) -> SceneConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"scene {name!r} must be a mapping")
    unknown = set(raw) - _SCENE_KEYS
    if unknown:
        raise ConfigError(f"scene {name!r}: unknown keys {sorted(map(str, unknown))}; "
                          f"allowed: {', '.join(sorted(_SCENE_KEYS))}")
    lateness_ms = parse_duration(raw.get("lateness", DEFAULT_LATENESS_MS),
                                 what=f"scene {name!r} lateness")
    schema_raw = raw.get("schema") or {}
    if not isinstance(schema_raw, Mapping):
        raise ConfigError(f"scene {name!r}: schema must map field names to types")
    schema = tuple(FieldSpec.parse(k, v, scene=name) for k, v in schema_raw.items())
    features_raw = raw.get("features") or []
    if not isinstance(features_raw, list):
        raise ConfigError(f"scene {name!r}: features must be a list")
    features = []
    for item in features_raw:
        try:
            features.append(parse_feature(item))
        except RiskEngineError as exc:
            raise type(exc)(f"scene {name!r}: {exc}") from None
    seen: set[str] = set()
    for spec in features:
        if spec.name in seen:
            raise ConfigError(f"scene {name!r}: two features are named {spec.name!r}")
        seen.add(spec.name)
    checks_raw = raw.get("lists") or []
    if not isinstance(checks_raw, list):
        raise ConfigError(f"scene {name!r}: lists must be a list of {{list, field}}")
    checks = []
    for item in checks_raw:
        if not (isinstance(item, Mapping) and set(item) == {"list", "field"}
                and all(isinstance(v, str) for v in item.values())):
            raise ConfigError(f"scene {name!r}: each list check is {{list: NAME, field: FIELD}}, "
                              f"got {item!r}")
        checks.append(ListCheck(item["list"], item["field"]))
    rules = raw.get("rules") or []
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
        raise ConfigError(f"scene {name!r}: rules must be a list of mappings")
    policy = raw.get("policy") or {}
    if not isinstance(policy, Mapping):
        raise ConfigError(f"scene {name!r}: policy must be a mapping")
    version = raw.get("ruleset_version")
    if version is not None and not isinstance(version, (str, int)):
        raise ConfigError(f"scene {name!r}: ruleset_version must be a string")
    patterns = parse_patterns(raw.get("patterns"), name)
    model_inputs = {*seen, *(p.key for p in patterns), *(f.name for f in schema), "timestamp"}
    return SceneConfig(
        name=name,
        lateness_ms=lateness_ms,
        schema=schema,
        features=tuple(features),
        list_checks=tuple(checks),
        rules=tuple(dict(r) for r in rules),
        policy=dict(policy),
        ruleset_version=None if version is None else str(version),
        idempotency_max=_positive_int(raw, "idempotency_max", DEFAULT_IDEMPOTENCY_MAX, name),
        max_entities=_positive_int(raw, "max_entities", DEFAULT_MAX_ENTITIES, name),
        fallback=_fallback(raw, name),
        patterns=patterns,
        experiment=parse_experiment(raw.get("experiment"), name,
                                    tuple(spec.name for spec in schema)),
        models=parse_models(raw.get("models"), name, model_inputs, base_dir),
    )


def _fallback(raw: Mapping[str, Any], scene: str) -> str:
    value = raw.get("fallback", DEFAULT_FALLBACK)
    if value not in FALLBACKS:
        raise ConfigError(f"scene {scene!r}: fallback must be one of {', '.join(FALLBACKS)}, "
                          f"got {value!r:.40}")
    return str(value)


def _positive_int(raw: Mapping[str, Any], key: str, default: int, scene: str) -> int:
    value = raw.get(key, default)
    if type(value) is not int or value <= 0:
        raise ConfigError(f"scene {scene!r}: {key} must be a positive integer")
    return value
