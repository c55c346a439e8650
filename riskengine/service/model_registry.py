"""Versioned models per scene: put, activate (rollback), list, persist, reload — hot.

A version is a model file read and checked against the model's configured inputs and
output (riskengine/models/); it is named by the body's `version` or by the content hash
of its file (``"m"`` + 12 hex), and one name always holds one content (a different file
under a taken name is refused). Making a version live is one assignment of the scene's
`Lineup` (`SceneRuntime.models`): a decision reads the lineup once, so it is scored by
exactly one version of each model and reports them in `Decision.models`.

Versions and the live choice are kept in ``<state-dir>/models.json`` as the ruleset
registry keeps its own (riskengine/service/rulesets.py, same rules): at start, if the
config names the model versions recorded at the last start, the versions put through the
API stay live; if the config changed while the service was down, the config wins. A stored
version whose file can no longer be loaded is left out, with a warning. With shared state
(Redis) there is no file: a version put on one worker is stored in Redis and sent to every
worker (`connect_model_bus`), and a worker that starts takes the versions live there.

Whenever a version goes live by a change made in this process (the API, an admin's
rollback; not another worker's change, not the guarded rollout's own rollback), the
registry calls ``on_version_live(scene, "model:<name>", version, previous_version)`` when
it was given one: the service's guarded rollout watches the new version
(riskengine/service/guard.py), and puts the previous one back through `rollback`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskengine.engine import Engine
from riskengine.exceptions import ModelError
from riskengine.files import read_json, write_json_atomic
from riskengine.models import LoadedModel, ModelSet, load_model, parse_model_change
from riskengine.models.spec import ModelSpec
from riskengine.service.guard import MODEL_KIND
from riskengine.service.model_metrics import ModelFailureCollector

if TYPE_CHECKING:
    from riskengine.service.runtime import ServiceRuntime
    from riskengine.state.redis.bus import RulesetBus

__all__ = ["MAX_MODEL_VERSIONS", "MODELS_FILE", "ModelRegistry", "ModelVersionConflict",
           "VersionLive", "open_model_registry"]

log = logging.getLogger("riskengine.service")

MAX_MODEL_VERSIONS = 20
"""Versions kept per model (each holds a loaded session); the oldest not live go first."""

MODELS_FILE = "models.json"
VersionLive = Callable[[str, str, str, str], None]
"""``(scene, "model:<name>", version, previous_version)``: a version went live."""


class ModelVersionConflict(ModelError):
    """A version name already holds another file."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    model: LoadedModel
    created_at_ms: int
    source: str  # config | api | bus | restored

    def summary(self, active: bool) -> dict[str, Any]:
        return {"version": self.model.version, "uri": self.model.spec.uri,
                "sha256": self.model.digest, "created_at_ms": self.created_at_ms,
                "source": self.source, "active": active}


class ModelRegistry:
    """The versions of every scene's models, and which one of each is live."""

    def __init__(self, engine: Engine, path: Path | None, base_dir: Path | None = None,
                 on_version_live: VersionLive | None = None) -> None:
        self.engine = engine
        self.path = path
        self.base_dir = base_dir
        """Relative paths in an API body are read against it (the config file's folder)."""
        self.on_version_live = on_version_live
        self.on_publish: Callable[[str, str, LoadedModel], None] | None = None
        """Shared state: tells the other workers (`connect_model_bus`)."""
        self.bus: RulesetBus | None = None
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str], dict[str, ModelVersion]] = {}
        self._config_versions: dict[str, dict[str, str]] = {}
        now = _now_ms()
        for scene in engine.scenes:
            live = self._set(scene)
            if live is None:
                continue
            for name, model in live.models.items():
                self._versions[scene, name] = {model.version: ModelVersion(model, now, "config")}
            self._config_versions[scene] = dict(live.versions)
        self._load()

    # -- reading

    def _set(self, scene: str) -> ModelSet | None:
        models = self.engine.scene(scene).models  # unknown scene: UnknownSceneError (404)
        return models if isinstance(models, ModelSet) else None

    def live(self, scene: str, name: str) -> LoadedModel:
        """The live version of a model (KeyError when the scene has no such model)."""
        models = self._set(scene)
        if models is None or name not in models.models:
            raise KeyError(name)
        return models.models[name]

    def describe(self, scene: str) -> list[dict[str, Any]]:
        """Each model of the scene: live version, uri, inputs, output, versions kept."""
        models = self._set(scene)
        if models is None:
            return []
        out = []
        with self._lock:
            for name, model in models.models.items():
                spec = model.spec
                out.append({"name": name, "version": model.version, "uri": spec.uri,
                            "inputs": list(spec.inputs), "output": spec.output,
                            "versions": [v.summary(v.model.version == model.version)
                                         for v in self._versions[scene, name].values()]})
        return out

    # -- changing

    def load(self, scene: str, name: str, body: object) -> LoadedModel:
        """Read and check the version a ``{"uri", "version"}`` body names (no change yet);
        `ModelError` when it cannot be loaded, KeyError for an unknown model."""
        live = self.live(scene, name)
        model = load_model(parse_model_change(live.spec, body, self.base_dir), scene)
        with self._lock:
            held = self._versions[scene, name].get(model.version)
        if held is not None and held.model.digest != model.digest:
            raise ModelVersionConflict(
                f"scene {scene!r}: model {name!r} version {model.version!r} already holds "
                f"another file ({held.model.spec.uri}); give another version name")
        return model

    def put(self, scene: str, model: LoadedModel, *, source: str) -> bool:
        """Record a loaded version and make it live; True when the live version changed."""
        name = model.spec.name
        with self._lock:
            versions = self._versions[scene, name]
            if model.version not in versions:
                versions[model.version] = ModelVersion(model, _now_ms(), source)
            previous = self._make_live(scene, versions[model.version].model)
            self._trim(scene, name)
            self._save()
        return self._announce(scene, model, previous, source)

    def activate(self, scene: str, name: str, version: str, *, source: str = "rollback",
                 replacing: str | None = None) -> LoadedModel | None:
        """Put a kept version live again (rollback); None if there is no such version, or
        if `replacing` is given and is not the live version (the change it was meant to
        undo has been replaced already)."""
        self.live(scene, name)
        with self._lock:
            entry = self._versions[scene, name].get(version)
            if entry is None:
                return None
            if replacing is not None and self.live(scene, name).version != replacing:
                return None
            previous = self._make_live(scene, entry.model)
            self._save()
        self._announce(scene, entry.model, previous, source)
        return entry.model

    def rollback(self, scene: str, name: str, version: str, previous: str) -> bool:
        """The guarded rollout's rollback of model `name`: `previous` live again in place
        of `version`; False when `version` is no longer live or `previous` is not kept."""
        return self.activate(scene, name, previous, source="guard",
                             replacing=version) is not None

    def close(self) -> None:
        if self.bus is not None:
            self.bus.stop()

    # -- internals

    def _make_live(self, scene: str, model: LoadedModel) -> str:
        """Swap the version in: one assignment of the scene's lineup. Returns the version
        that was live."""
        runtime = self.engine.scene(scene)
        models = runtime.models
        if not isinstance(models, ModelSet):
            raise KeyError(model.spec.name)
        previous = models.versions[model.spec.name]
        runtime.models = models.with_model(model)
        return previous

    def _announce(self, scene: str, model: LoadedModel, previous: str, source: str) -> bool:
        if previous == model.version:
            return False
        log.info("scene %s: model %s version %s live (%s; was %s)", scene, model.spec.name,
                 model.version, source, previous)
        if self.on_version_live is not None and source not in ("bus", "guard"):
            self.on_version_live(scene, model.spec.key, model.version, previous)
        if self.on_publish is not None and source != "bus":
            self.on_publish(scene, model.spec.name, model)
        return True

    def _trim(self, scene: str, name: str) -> None:
        versions = self._versions[scene, name]
        live = self.live(scene, name).version
        while len(versions) > MAX_MODEL_VERSIONS:
            del versions[next(v for v in versions if v != live)]

    def _save(self) -> None:
        if self.path is None:
            return
        scenes: dict[str, dict[str, Any]] = {}
        for (scene, name), versions in self._versions.items():
            scenes.setdefault(scene, {})[name] = {
                "active": self.live(scene, name).version,
                "versions": [{"version": v.model.version, "uri": v.model.spec.uri,
                              "sha256": v.model.digest, "created_at_ms": v.created_at_ms,
                              "source": v.source}
                             for v in versions.values()]}
        write_json_atomic(self.path, {"config_versions": self._config_versions,
                                      "scenes": scenes})

    def _load(self) -> None:
        if self.path is None:
            return
        data = read_json(self.path)
        if not isinstance(data, dict):
            self._save()
            return
        recorded = data.get("config_versions") or {}
        for scene, models in (data.get("scenes") or {}).items():
            for name, saved in (models or {}).items():
                if (scene, name) in self._versions and isinstance(saved, dict):
                    self._restore(scene, name, saved,
                                  recorded.get(scene) == self._config_versions.get(scene))
        self._save()

    def _restore(self, scene: str, name: str, saved: Mapping[str, Any], keep_live: bool
                 ) -> None:
        live = self.live(scene, name)
        versions = self._versions[scene, name]
        for item in saved.get("versions") or []:
            if not isinstance(item, dict) or item.get("version") in versions:
                continue
            try:
                model = load_model(ModelSpec(name, str(item["uri"]), live.spec.inputs,
                                             live.spec.output, str(item["version"])), scene)
                if model.digest != item.get("sha256"):
                    raise ModelError(f"{model.spec.uri} holds another file than when stored")
            except (ModelError, KeyError) as exc:
                log.warning("scene %s: model %s: stored version %s left out: %s", scene, name,
                            item.get("version"), exc)
                continue
            versions[model.version] = ModelVersion(
                model, int(item.get("created_at_ms", 0)), str(item.get("source", "api")))
        active = saved.get("active")
        if keep_live and active in versions:
            self._make_live(scene, versions[active].model)
        self._trim(scene, name)


def open_model_registry(rt: ServiceRuntime) -> ModelRegistry:
    """The service's model registry: versions in ``<state-dir>/models.json`` (in-memory
    state) or sent over the model bus (shared state); failures exported with the service's
    metrics; with the guarded rollout on, every model guarded (a new version watched, the
    previous one put back by `rollback`)."""
    shared = rt.engine.shared_state
    guard = rt.guard
    registry = ModelRegistry(rt.engine, None if shared else rt.state_dir / MODELS_FILE,
                             rt.config.base_dir,
                             on_version_live=None if guard is None else guard.on_version_live)
    if guard is not None:
        for scene in rt.engine.scenes:
            models = rt.engine.scene(scene).models
            for name in models.versions if models is not None else ():
                guard.register_rollback(MODEL_KIND + name, _rollback_of(registry, name))
    rt.metrics.registry.register(ModelFailureCollector(rt.engine))
    if shared:
        from riskengine.service.model_bus import connect_model_bus

        registry.bus = connect_model_bus(rt.engine, registry)
    return registry


def _rollback_of(registry: ModelRegistry, name: str) -> Callable[[str, str, str], bool]:
    """The guard's rollback of model `name` (riskengine/service/guard.py)."""
    def rollback(scene: str, version: str, previous: str) -> bool:
        return registry.rollback(scene, name, version, previous)
    return rollback


def _now_ms() -> int:
    return int(time.time() * 1000)
