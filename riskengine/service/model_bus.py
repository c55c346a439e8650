"""Model versions across the workers of a shared-state service (``--state redis://…``).

The ruleset bus's machinery (riskengine/state/redis/bus.py: versions stored in Redis, one
active per name set atomically with its notification, a resync whenever a subscription is
made) carries model versions too, on its own key prefix ``<prefix>:models`` and channel:
each model is a name ``<scene>/<model>``, a version's body is ``{"uri", "version"}``. The
receiving worker loads the file itself, so a path must be readable by every worker (a
shared folder), or the URI an MLflow registry's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from riskengine.engine import Engine
from riskengine.models import LoadedModel
from riskengine.service.model_registry import ModelRegistry
from riskengine.state.redis.backend import RedisState
from riskengine.state.redis.bus import RulesetBus

__all__ = ["connect_model_bus"]

log = logging.getLogger("riskengine.service")


def connect_model_bus(engine: Engine, registry: ModelRegistry, *, prefix: str = "re"
                      ) -> RulesetBus | None:
    """Start the bus of model versions (None when no scene has a model): versions live
    in Redis go live here, and versions put here are sent to every worker."""
    names = {f"{scene}/{model['name']}": (scene, str(model["name"]))
             for scene in engine.scenes for model in registry.describe(scene)}
    if not names:
        return None
    state = engine.state
    if not isinstance(state, RedisState):
        raise TypeError("the model bus needs an engine on Redis state")

    def on_version(key: str, version: str, body: Mapping[str, Any]) -> None:
        scene, name = names[key]
        try:
            registry.put(scene, registry.load(scene, name, dict(body)), source="bus")
        except Exception as exc:  # a version this worker cannot load: keep the live one
            log.error("scene %s: model %s version %s from the bus refused: %s", scene, name,
                      version, exc)

    bus = RulesetBus(state.client, names, prefix=f"{prefix}:models", on_ruleset=on_version)

    def publish(scene: str, name: str, model: LoadedModel) -> None:
        bus.activate(f"{scene}/{name}", model.version,
                     {"uri": model.spec.uri, "version": model.version})

    registry.on_publish = publish
    bus.start(10.0)  # delivers the versions live in Redis, if any
    for key, (scene, name) in names.items():
        if bus.active(key) is None:  # the first worker ever: its config's version
            publish(scene, name, registry.live(scene, name))
    return bus
