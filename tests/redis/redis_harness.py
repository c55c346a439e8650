"""An engine on Redis state (`RedisState`) with a one-scene config, for the oracle
comparisons: the whole shared decision path (clock step and idempotency lookup, entity
calls, remembering) on the features of a test, scene ``s``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from riskengine.config import load_config
from riskengine.decision import Decision
from riskengine.engine import Engine
from riskengine.state.redis import RedisSceneFeatures
from riskengine.state.redis.backend import RedisState
from riskengine.state.redis.functions import Client
from tests.streams import scene_config


class RedisDecider:
    """`evaluate` as the engine's; `options` go to its `RedisState` (prefix, guard_depth,
    buckets, ...). A degraded answer (Redis failed) fails the test."""

    def __init__(self, client: Client, features: Sequence[Any], lateness: str,
                 **options: Any) -> None:
        config = load_config(scene_config(features, lateness))
        self.engine = Engine(config, RedisState(client, state_timeout_ms=60_000, **options))
        features_state = self.engine.state._scenes["s"].features
        assert features_state is not None
        self.features: RedisSceneFeatures = features_state

    def evaluate(self, scene: str, event: dict[str, Any]) -> Decision:
        decision = self.engine.evaluate(scene, event)
        assert not decision.degraded, "the Redis state failed: see the log"
        return decision
