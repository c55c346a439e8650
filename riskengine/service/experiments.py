"""Versioned experiments per scene: put, end, list, promote, persist, reload.

An experiment (riskengine/experiment.py) is versioned by the content hash of its spec
(``"x"`` + 12 hex digits), like rulesets. Every change is one assignment of the scene's
`Lineup` (champion, experiment, models), so a decision is made by exactly one champion
and one set of arms:

- `put` makes a built experiment live; `end` takes it away (the versions stay listed);
- `promote` makes an arm's ruleset the champion (recorded as a ruleset version with
  source ``promote``) and removes the arm from the experiment (`Experiment.without`),
  both in the one assignment;
- `install` is what another worker's change (the Redis bus) and a config reload use: a
  champion and an experiment spec together.

A challenger may name a stored ruleset version instead of giving rules:
``{"mode": "decide", "ruleset_version": "r…"}`` takes that version's rules and policy
(a ``policy`` given beside it wins); the stored spec holds the rules, so it does not
depend on the ruleset history.

Versions and the live choice are kept in ``<state-dir>/experiments.json`` (memory state)
as rulesets are in ``rulesets.json``: at start, if the config's experiment is the one
recorded at the last start, what the API made live stays live; if the config file's
``experiment:`` changed while the service was down, the config wins. With shared state
the bus carries the lineup (riskengine/service/shared.py) and Redis is the durable copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskengine.config import SceneConfig
from riskengine.engine import Engine
from riskengine.exceptions import ConfigError, RiskEngineError
from riskengine.experiment import CHAMPION, Experiment, ExperimentSpec, parse_experiment
from riskengine.files import read_json, write_json_atomic
from riskengine.rules.ruleset import Policy, Ruleset
from riskengine.service.rulesets import RulesetRegistry, champion_lineup

__all__ = ["ExperimentRegistry", "ExperimentVersion", "UnknownArmError"]

MAX_VERSIONS = 100


class UnknownArmError(RiskEngineError):
    """Promotion of an arm the live experiment does not have."""


@dataclass(frozen=True, slots=True)
class ExperimentVersion:
    version: str
    spec: ExperimentSpec
    created_at_ms: int
    source: str  # config | api | promote | bus

    def summary(self, active: bool) -> dict[str, Any]:
        return {"version": self.version, "created_at_ms": self.created_at_ms,
                "source": self.source, "arms": [CHAMPION, *(a.name for a in
                                                            self.spec.challengers)],
                "split": dict(self.spec.split), "active": active}


class ExperimentRegistry:
    """The experiment versions of every scene, and which one is live (if any)."""

    def __init__(self, engine: Engine, rulesets: RulesetRegistry, path: Path | None,
                 on_activate: Callable[[str, str, str], None] | None = None) -> None:
        self.engine = engine
        self.rulesets = rulesets
        self.path = path
        self._on_activate = on_activate
        self.on_publish: Callable[[str, str], None] | None = None  # shared state: the bus
        self.lock = rulesets.lock
        self._versions: dict[str, dict[str, ExperimentVersion]] = {}
        self._active: dict[str, str | None] = {}
        self._config_versions: dict[str, str | None] = {}
        now = _now_ms()
        for scene in engine.scenes:
            live = engine.scene(scene).experiment
            self._versions[scene] = {} if live is None else {
                live.version: ExperimentVersion(live.version, live.spec, now, "config")}
            self._active[scene] = self._config_versions[scene] = (
                None if live is None else live.version)
        self._load()

    # -- reading

    def live(self, scene: str) -> Experiment | None:
        return self.engine.scene(scene).experiment

    def describe(self, scene: str) -> dict[str, Any] | None:
        """The live experiment of `scene` as the admin API shows it (None without one):
        its version, arms, spec, and the ruleset version each arm decides with."""
        experiment = self.live(scene)
        if experiment is None:
            return None
        champion = self.engine.ruleset(scene).version
        return {"scene": scene, "version": experiment.version, "arms": list(experiment.arms),
                "experiment": experiment.spec.to_dict(),
                "ruleset_versions": {CHAMPION: champion, **{
                    name: ruleset.version for name, ruleset in experiment.by_name.items()}}}

    def versions(self, scene: str) -> list[dict[str, Any]]:
        self.engine.scene(scene)
        with self.lock:
            active = self._active[scene]
            return [v.summary(v.version == active) for v in self._versions[scene].values()]

    # -- building

    def build(self, scene: str, body: object, champion: Ruleset | None = None) -> Experiment:
        """Validate an ``experiment:`` mapping (the API's JSON body) and compile it against
        `champion` (default: the live one). Raises `ConfigError` / `RuleCompileError`
        naming what is wrong; nothing changes."""
        runtime = self.engine.scene(scene)
        spec = parse_experiment(self._resolve(scene, body), scene,
                                tuple(field.name for field in runtime.config.schema))
        if spec is None:
            raise ConfigError(f"scene {scene!r}: the experiment body must be a mapping with "
                              "key, salt, split and challengers")
        policy = (champion or runtime.ruleset).policy
        return Experiment.build(spec, scene, runtime.names, policy)

    def _resolve(self, scene: str, body: object) -> object:
        """`body` with each challenger that names a stored `ruleset_version` and gives no
        rules filled in with that version's rules (and policy, unless it gives one)."""
        if not isinstance(body, Mapping) or not isinstance(body.get("challengers"), Mapping):
            return body
        challengers: dict[Any, Any] = {}
        for name, arm in body["challengers"].items():
            if isinstance(arm, Mapping) and "rules" not in arm and \
                    isinstance(arm.get("ruleset_version"), str):
                stored = self.rulesets.get(scene, arm["ruleset_version"])
                if stored is None:
                    raise ConfigError(f"scene {scene!r}: experiment arm {name!r:.80}: no "
                                      f"ruleset version {arm['ruleset_version']!r:.80} is "
                                      "stored")
                arm = {"rules": [rule.to_dict() for rule in stored.rules],
                       "policy": stored.policy.to_dict(), **arm}
            challengers[name] = arm
        return {**body, "challengers": challengers}

    # -- changing

    def put(self, scene: str, experiment: Experiment, *, source: str) -> bool:
        """Make a built experiment live (one lineup assignment); True when it changed."""
        with self.lock:
            runtime = self.engine.scene(scene)
            self._record(scene, experiment.spec, source)
            runtime.lineup = champion_lineup(runtime, runtime.ruleset, experiment)
            changed = self._mark_live(scene, experiment.version)
        self._changed(scene, source, changed)
        return changed

    def end(self, scene: str, *, source: str = "api") -> bool:
        """Take the live experiment away (the champion alone decides); False without one."""
        with self.lock:
            runtime = self.engine.scene(scene)
            if runtime.experiment is None:
                return False
            runtime.experiment = None
            self._mark_live(scene, None)
        self._changed(scene, source, True)
        return True

    def promote(self, scene: str, arm: str) -> tuple[Ruleset, Experiment | None]:
        """Make `arm`'s ruleset the champion and remove the arm from the experiment, in
        one lineup assignment; the new champion and experiment (None when no challenger
        is left). `UnknownArmError` when the live experiment has no such challenger."""
        with self.lock:
            runtime = self.engine.scene(scene)
            experiment = runtime.experiment
            if experiment is None or arm not in experiment.by_name:
                arms = ", ".join(experiment.by_name) if experiment else "none: no experiment"
                raise UnknownArmError(f"scene {scene!r} has no challenger {arm[:80]!r}; "
                                      f"challengers: {arms}")
            previous = runtime.ruleset.version
            champion = self.rulesets.record(scene, experiment.by_name[arm], source="promote")
            rest = experiment.without(arm)
            remaining = None if rest is None else Experiment.build(
                rest, scene, runtime.names, champion.policy)
            runtime.lineup = champion_lineup(runtime, champion, remaining)
            self.rulesets.mark_live(scene, champion.version)
            if remaining is not None:
                self._record(scene, remaining.spec, "promote")
            self._mark_live(scene, None if remaining is None else remaining.version)
        self._changed(scene, "promote", True, previous)
        return champion, remaining

    def install(self, scene: str, champion: Ruleset, spec: object, *, source: str) -> None:
        """Put `champion` and the experiment of `spec` (an ``experiment:`` mapping or None)
        live together, in one lineup assignment: a change from another worker, or the
        config's. Raises (and changes nothing) when the experiment does not build."""
        experiment = None if spec is None else self.build(scene, spec, champion)
        with self.lock:
            runtime = self.engine.scene(scene)
            previous = runtime.ruleset.version
            champion = self.rulesets.record(scene, champion, source=source)
            if experiment is not None:
                self._record(scene, experiment.spec, source)
            runtime.lineup = champion_lineup(runtime, champion, experiment)
            changed = self.rulesets.mark_live(scene, champion.version)
            changed = self._mark_live(scene, None if experiment is None
                                      else experiment.version) or changed
        self._changed(scene, source, changed, previous)

    def prepare_reload(self, scenes: Mapping[str, SceneConfig]
                       ) -> dict[str, Experiment | None]:
        """Build the experiments of a changed config file (raises on the first refused
        arm, before anything changes): scene → its new experiment (None: it was removed)."""
        built: dict[str, Experiment | None] = {}
        for name, scene in scenes.items():
            if name not in self._versions:
                continue
            version = None if scene.experiment is None else scene.experiment.version
            if self._config_versions.get(name) == version:
                continue
            runtime = self.engine.scene(name)
            built[name] = None if scene.experiment is None else Experiment.build(
                scene.experiment, name, runtime.names, Policy.from_dict(scene.policy))
        return built

    def reload_config(self, built: Mapping[str, Experiment | None]) -> list[str]:
        """Put what `prepare_reload` built live (after the config's rulesets); the scenes
        whose experiment changed."""
        changed = []
        for name, experiment in built.items():
            self._config_versions[name] = None if experiment is None else experiment.version
            if experiment is None:
                self.end(name, source="config")
                changed.append(name)
            elif self.put(name, experiment, source="config"):
                changed.append(name)
        return changed

    # -- internals

    def _record(self, scene: str, spec: ExperimentSpec, source: str) -> None:
        versions = self._versions[scene]
        if spec.version not in versions:
            versions[spec.version] = ExperimentVersion(spec.version, spec, _now_ms(), source)
            while len(versions) > MAX_VERSIONS:
                oldest = next(v for v in versions if v != self._active[scene])
                del versions[oldest]

    def _mark_live(self, scene: str, version: str | None) -> bool:
        changed = self._active[scene] != version
        self._active[scene] = version
        self._save()
        return changed

    def _changed(self, scene: str, source: str, changed: bool,
                 previous: str | None = None) -> None:
        """Tell `on_activate(scene, source, previous champion version)` (the champion's
        own version when only the experiment changed) and the bus."""
        if not changed:
            return
        if self._on_activate:
            self._on_activate(scene, source, previous or self.engine.ruleset(scene).version)
        if self.on_publish:
            self.on_publish(scene, source)

    def _save(self) -> None:
        if self.path is None:
            return
        write_json_atomic(self.path, {
            "config_versions": self._config_versions,
            "scenes": {scene: {"active": self._active[scene], "versions": [
                {"version": v.version, "created_at_ms": v.created_at_ms, "source": v.source,
                 "spec": v.spec.to_dict()} for v in versions.values()]}
                for scene, versions in self._versions.items()}})

    def _load(self) -> None:
        if self.path is None:
            return
        data = read_json(self.path)
        if not isinstance(data, dict):
            self._save()
            return
        recorded = data.get("config_versions") or {}
        for scene, saved in (data.get("scenes") or {}).items():
            if scene not in self._versions or not isinstance(saved, dict):
                continue
            runtime = self.engine.scene(scene)
            restored: dict[str, ExperimentVersion] = {}
            for item in saved.get("versions", []):
                try:
                    spec = parse_experiment(item["spec"], scene, tuple(
                        field.name for field in runtime.config.schema))
                    if spec is None:
                        continue
                    Experiment.build(spec, scene, runtime.names, runtime.ruleset.policy)
                except (RiskEngineError, KeyError, TypeError):
                    continue  # a stored version the current features no longer support
                restored[spec.version] = ExperimentVersion(
                    spec.version, spec, int(item.get("created_at_ms", 0)),
                    str(item.get("source", "api")))
            self._versions[scene] = {**restored, **{k: v for k, v in
                                                    self._versions[scene].items()
                                                    if k not in restored}}
            active = saved.get("active")
            if scene in recorded and recorded[scene] == self._config_versions[scene]:
                if active is None:
                    runtime.experiment = None
                    self._active[scene] = None
                elif active in self._versions[scene]:
                    spec = self._versions[scene][active].spec
                    runtime.lineup = champion_lineup(runtime, runtime.ruleset, Experiment.build(
                        spec, scene, runtime.names, runtime.ruleset.policy))
                    self._active[scene] = active
        self._save()


def _now_ms() -> int:
    return int(time.time() * 1000)
