"""The service on shared state (`--state redis://…`): engine, lists and rulesets in Redis.

- The engine's state is a `RedisState`: features and idempotency in Redis, a time budget and a
  circuit breaker; while Redis is unavailable, decisions are the scene's `fallback` with
  `degraded: true` (counted in `riskengine_degraded_decisions_total`, not written to the
  decision log: they change no state and carry no LSN).
- Ruleset activations go through a `RulesetBus`: a version put or rolled back on one
  worker is stored in Redis and published; every worker's subscriber puts it live. What
  the bus carries is the scene's lineup: the champion's rules and policy and, while an
  experiment runs, its spec (under the bus version ``<ruleset version>+<experiment
  version>``), so a promotion (new champion, one arm fewer) reaches every worker as one
  change, made live there in one assignment.
- Lists live in Redis behind local Bloom filters (`RedisListStore`); API changes are
  written there and published to every worker; rules, list checks, patterns and feature
  `where` filters all read them.
- No snapshots and no log replay: Redis is the durable copy (run it with AOF).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from riskengine.config import ProjectConfig
from riskengine.engine import Engine
from riskengine.lists import ListEntry, parse_expiry
from riskengine.service.experiments import ExperimentRegistry
from riskengine.service.rulesets import RulesetRegistry
from riskengine.state.redis.backend import DEFAULT_STATE_TIMEOUT_MS, RedisState
from riskengine.state.redis.bus import RulesetBus
from riskengine.state.redis.lists import RedisListStore

log = logging.getLogger("riskengine.service")


class SharedLists:
    """The list API over a `RedisListStore` (what `ListJournal` is for memory state)."""

    def __init__(self, store: RedisListStore) -> None:
        self.store = store

    def put(self, name: str, value: str, *, expires: object = None,
            reason: str = "") -> ListEntry:
        expires_at_ms = None if expires is None else parse_expiry(expires, what="expires")
        self.store.add(name, value, expires_at_ms=expires_at_ms, reason=reason)
        return ListEntry(value, expires_at_ms, reason)

    def delete(self, name: str, value: str) -> bool:
        return self.store.remove(name, value)


GUARD_DEPTH = 2
"""Events each entity's guard remembers (see README, Durability): two workers in flight on
one hot entity when Redis crashes are both recognised on retry."""


def shared_engine(config: ProjectConfig, url: str, *, require_state: bool = False,
                  state_timeout_ms: int | None = None) -> Engine:
    """An engine whose state is the Redis at `url` (as the service and the worker use it;
    a batch job that would rather wait than answer with a fallback gives a longer
    `state_timeout_ms`; None: `DEFAULT_STATE_TIMEOUT_MS`)."""
    timeout_ms = DEFAULT_STATE_TIMEOUT_MS if state_timeout_ms is None else state_timeout_ms
    return Engine(config, RedisState.connect(url, require_state=require_state,
                                             guard_depth=GUARD_DEPTH,
                                             state_timeout_ms=timeout_ms))


def _client(engine: Engine) -> Any:
    state = engine.state
    if not isinstance(state, RedisState):
        raise TypeError("the lists and the bus need an engine on Redis state")
    return state.client


def lineup_message(engine: Engine, scene: str) -> tuple[str, dict[str, Any]]:
    """The bus version and body of `scene`'s live lineup (see the module docstring)."""
    lineup = engine.scene(scene).lineup
    ruleset, experiment = lineup.ruleset, lineup.experiment
    body: dict[str, Any] = {"rules": [r.to_dict() for r in ruleset.rules],
                            "policy": ruleset.policy.to_dict()}
    if experiment is None:
        return ruleset.version, body
    body["experiment"] = experiment.spec.to_dict()
    return f"{ruleset.version}+{experiment.version}", body


def connect_bus(engine: Engine, config: ProjectConfig, registry: RulesetRegistry,
                experiments: ExperimentRegistry) -> tuple[RulesetBus, RedisListStore]:
    """Start the bus, move the engine's lists to Redis, and tie the registries to the bus."""

    def on_ruleset(scene: str, version: str, body: Mapping[str, Any]) -> None:
        try:
            ruleset = registry.build(scene, {"rules": body.get("rules"),
                                             "policy": body.get("policy")})
            experiments.install(scene, ruleset, body.get("experiment"), source="bus")
        except Exception as exc:  # a version this worker cannot build: keep the live one
            log.error("scene %s: ruleset %s from the bus refused: %s", scene, version, exc)

    client = _client(engine)
    bus = RulesetBus(client, engine.scenes, on_ruleset=on_ruleset)
    lists = RedisListStore.from_config(config.lists, config.base_dir, client, bus=bus)
    engine.use_lists(lists)

    def publish(scene: str, source: str) -> None:
        if source == "bus":
            return
        bus.activate(scene, *lineup_message(engine, scene))

    registry.on_publish = experiments.on_publish = publish
    bus.start(10.0)  # delivers the versions live in Redis, if any
    for scene in engine.scenes:
        if bus.active(scene) is None:  # the first worker ever: its config's rules
            publish(scene, "config")
    return bus, lists
