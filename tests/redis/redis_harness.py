"""An engine-shaped driver of the Redis feature state, for the oracle comparisons.

It does what `Engine.evaluate` does around the features: the whole-event idempotency
check (here `RedisDecisionStore`), an LSN, `compute`, and remembering the decision.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from streams import scene_config

from riskengine.config import load_config
from riskengine.state.redis import RedisDecisionStore, RedisSceneFeatures


@dataclass(frozen=True)
class Decided:
    features: dict[str, Any]
    late: bool
    duplicate: bool = False


class RedisDecider:
    def __init__(self, client: redis.Redis, features: Sequence[Any], lateness: str,
                 **options: Any) -> None:
        scene = load_config(scene_config(features, lateness)).scenes["s"]
        self.features = RedisSceneFeatures(client, scene, **options)
        self.store = RedisDecisionStore(client, "s", self.features.idempotency_horizon_ms,
                                        prefix=options.get("prefix", "re"))
        self.lsn = 0

    def evaluate(self, scene: str, event: dict[str, Any]) -> Decided:
        assert scene == "s"
        event_id, t = event["event_id"], event["timestamp"]
        previous = self.store.lookup(event_id, self.features.clock)
        if previous is not None:
            record = json.loads(previous.partition(b"|")[2])  # "<t>|<what remember got>"
            return Decided(record["features"], record["late"], duplicate=True)
        self.lsn += 1
        features, late = self.features.compute(event, self.lsn)
        self.store.remember(event_id, t, json.dumps({"features": features, "late": late}),
                            self.features.clock)
        return Decided(features, late)
