"""Hypothesis streams through the Redis state against the oracle (few examples: each one
runs real scripts on a real server). Windows of milliseconds keep the boundaries busy."""

from __future__ import annotations

from typing import Any

import redis
from hypothesis import HealthCheck, given, settings

from tests.features.test_oracle_hypothesis import (
    HISTORY_FEATURES,
    LATENESS,
    LATENESS_MS,
    TILED_FEATURES,
    event_streams,
)
from tests.oracle import Oracle
from tests.redis.redis_harness import RedisDecider
from tests.streams import run_against_oracle

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(event_streams())
def test_history_features_match_oracle(client: redis.Redis, events: list[dict[str, Any]]
                                       ) -> None:
    client.flushall()
    run_against_oracle(RedisDecider(client, HISTORY_FEATURES, LATENESS), "s", events,
                       Oracle(HISTORY_FEATURES, LATENESS_MS))


@SETTINGS
@given(event_streams())
def test_tiled_features_match_oracle(client: redis.Redis, events: list[dict[str, Any]]
                                     ) -> None:
    client.flushall()
    run_against_oracle(RedisDecider(client, TILED_FEATURES, LATENESS, buckets=2), "s",
                       events, Oracle(TILED_FEATURES, LATENESS_MS))
