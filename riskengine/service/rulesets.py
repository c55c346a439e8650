"""Versioned rulesets per scene: put, activate (rollback), list, persist, reload.

A version is named by the content hash of its rules and policy (`"r"` + 12 hex), so the
same rules put twice are one version. Making a version live is one attribute assignment
on the scene's runtime: a decision reads the ruleset once, so it carries exactly one
version, and no request waits for a swap.

Versions and the live choice are kept in ``<state-dir>/rulesets.json``. At start, if the
config's rules are the ones recorded at the last start, the versions put through the API
stay live across the restart; if the config file's rules changed while the service was
down, the config wins (its version becomes live and the history is kept).

`on_activate(scene, source, previous)` is told every change of the live version (source:
config, api, rollback — an admin's activate —, guard — the guarded rollout's rollback —
or bus — another worker's change); `notes(scene)` (set by the guarded rollout) gives the
versions it rolled back, shown in `versions`.

A scene's experiment (riskengine/service/experiments.py) goes with its champion: the
challengers that have no policy of their own use the champion's, so a new champion
policy rebuilds them, in the same lineup assignment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from riskengine.config import SceneConfig
from riskengine.engine import Engine
from riskengine.exceptions import ConfigError
from riskengine.experiment import Experiment
from riskengine.files import read_json, write_json_atomic
from riskengine.rules.ruleset import Ruleset, ruleset_from_body
from riskengine.scene import Lineup, SceneRuntime

MAX_VERSIONS = 100


@dataclass(frozen=True, slots=True)
class RulesetVersion:
    version: str
    ruleset: Ruleset
    created_at_ms: int
    source: str  # config | api

    def summary(self, active: bool) -> dict[str, Any]:
        return {"version": self.version, "created_at_ms": self.created_at_ms,
                "source": self.source, "rules": len(self.ruleset.rules), "active": active}


class RulesetRegistry:
    """The versions of every scene's ruleset, and which one is live."""

    def __init__(self, engine: Engine, path: Path | None,
                 on_activate: Callable[[str, str, str], None] | None = None) -> None:
        self.engine = engine
        self.path = path
        self._on_activate = on_activate
        self.on_publish: Callable[[str, str], None] | None = None  # shared state: the bus
        self.notes: Callable[[str], Mapping[str, Mapping[str, Any]]] | None = None
        """version → how the guarded rollout rolled it back (`rolled_back_by_guard`)."""
        self.lock = threading.RLock()
        """Held while a scene's lineup changes (the experiment registry takes it too)."""
        self._versions: dict[str, dict[str, RulesetVersion]] = {}
        self._active: dict[str, str] = {}
        self._config_versions: dict[str, str] = {}
        now = _now_ms()
        for scene in engine.scenes:
            current = engine.ruleset(scene)
            self._versions[scene] = {current.version: RulesetVersion(
                current.version, current, now, "config")}
            self._active[scene] = current.version
            self._config_versions[scene] = current.version
        self._load()

    # -- reading

    def active(self, scene: str) -> Ruleset:
        return self.engine.ruleset(scene)

    def versions(self, scene: str) -> list[dict[str, Any]]:
        self.engine.scene(scene)  # unknown scene: 404
        notes = self.notes(scene) if self.notes is not None else {}
        with self.lock:
            active = self._active[scene]
            return [{**v.summary(v.version == active),
                     "rolled_back_by_guard": notes.get(v.version)}
                    for v in self._versions[scene].values()]

    def get(self, scene: str, version: str) -> Ruleset | None:
        self.engine.scene(scene)
        entry = self._versions[scene].get(version)
        return entry.ruleset if entry else None

    # -- changing

    def build(self, scene: str, body: object) -> Ruleset:
        """Validate a ``{"rules": [...], "policy": {...}}`` body into a compiled ruleset."""
        runtime = self.engine.scene(scene)
        return ruleset_from_body(scene, body, runtime.names, runtime.ruleset.policy)

    def put(self, scene: str, ruleset: Ruleset, *, source: str, activate: bool = True) -> bool:
        """Record a built ruleset as a version; make it live if `activate`.

        Returns True when the live version changed.
        """
        with self.lock:
            versions = self._versions[scene]
            previous = self._active[scene]
            if ruleset.version not in versions:
                versions[ruleset.version] = RulesetVersion(ruleset.version, ruleset, _now_ms(),
                                                           source)
                self._trim(scene)
            changed = activate and self._active[scene] != ruleset.version
            if activate:
                self._make_live(scene, versions[ruleset.version].ruleset)
            self._save()
        if changed and self._on_activate:
            self._on_activate(scene, source, previous)
        if changed and self.on_publish:
            self.on_publish(scene, source)
        return changed

    def record(self, scene: str, ruleset: Ruleset, *, source: str) -> Ruleset:
        """Record `ruleset` as a version of `scene` without making it live (the caller
        puts it live with `mark_live` after its own lineup assignment); the stored
        version of that name."""
        with self.lock:
            versions = self._versions[scene]
            if ruleset.version not in versions:
                versions[ruleset.version] = RulesetVersion(ruleset.version, ruleset, _now_ms(),
                                                           source)
                self._trim(scene)
            return versions[ruleset.version].ruleset

    def mark_live(self, scene: str, version: str) -> bool:
        """Note that `version` (recorded) is live now; whether the live version changed."""
        with self.lock:
            changed = self._active[scene] != version
            self._active[scene] = version
            self._save()
            return changed

    def activate(self, scene: str, version: str, *, source: str = "rollback",
                 replacing: str | None = None) -> Ruleset | None:
        """Put a stored version live again (rollback); None if there is no such version,
        or if `replacing` is given and is not the live version (the change it was meant
        to undo has been replaced already)."""
        self.engine.scene(scene)
        with self.lock:
            entry = self._versions[scene].get(version)
            previous = self._active[scene]
            if entry is None or replacing not in (None, previous):
                return None
            changed = previous != version
            self._make_live(scene, entry.ruleset)
            self._save()
        if changed and self._on_activate:
            self._on_activate(scene, source, previous)
        if changed and self.on_publish:
            self.on_publish(scene, source)
        return entry.ruleset

    def reload_config(self, scenes: Mapping[str, SceneConfig]) -> list[str]:
        """Put the rules of a changed config file live; returns the scenes that changed.

        Every scene is built first; one refused rule refuses the whole reload.
        """
        built: dict[str, Ruleset] = {}
        for name, scene in scenes.items():
            if name not in self._versions:
                continue  # a new scene needs a restart (features, schema)
            runtime = self.engine.scene(name)
            built[name] = Ruleset.build(name, list(scene.rules), dict(scene.policy),
                                        runtime.names, scene.ruleset_version)
        changed = []
        for name, ruleset in built.items():
            if self._config_versions.get(name) == ruleset.version:
                continue
            self._config_versions[name] = ruleset.version
            if self.put(name, ruleset, source="config"):
                changed.append(name)
        return changed

    # -- internals

    def _make_live(self, scene: str, ruleset: Ruleset) -> None:
        runtime = self.engine.scene(scene)
        runtime.lineup = champion_lineup(runtime, ruleset)  # one assignment: the atomic swap
        self._active[scene] = ruleset.version

    def _trim(self, scene: str) -> None:
        versions = self._versions[scene]
        while len(versions) > MAX_VERSIONS:
            oldest = next(v for v in versions if v != self._active[scene])
            del versions[oldest]

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"config_versions": self._config_versions, "scenes": {
            scene: {"active": self._active[scene], "versions": [
                {"version": v.version, "created_at_ms": v.created_at_ms, "source": v.source,
                 "rules": [r.to_dict() for r in v.ruleset.rules],
                 "policy": v.ruleset.policy.to_dict()}
                for v in versions.values()]}
            for scene, versions in self._versions.items()}}
        write_json_atomic(self.path, data)

    def _load(self) -> None:
        if self.path is None:
            return
        data = read_json(self.path)
        if not isinstance(data, dict):
            self._save()
            return
        recorded = data.get("config_versions") or {}
        for scene, saved in (data.get("scenes") or {}).items():
            if scene not in self._versions:
                continue
            runtime = self.engine.scene(scene)
            restored: dict[str, RulesetVersion] = {}
            for item in saved.get("versions", []):
                try:
                    ruleset = Ruleset.build(scene, item["rules"], item["policy"],
                                            runtime.names, item["version"])
                except (ConfigError, KeyError, TypeError):
                    continue  # a stored version the current features no longer support
                restored[ruleset.version] = RulesetVersion(
                    ruleset.version, ruleset, int(item.get("created_at_ms", 0)),
                    str(item.get("source", "api")))
            config_version = self._config_versions[scene]
            merged = {**restored, **{k: v for k, v in self._versions[scene].items()
                                     if k not in restored}}
            self._versions[scene] = merged
            active = saved.get("active")
            if recorded.get(scene) == config_version and active in merged:
                self._make_live(scene, merged[active].ruleset)
            self._trim(scene)
        self._save()


_LIVE = object()


def champion_lineup(runtime: SceneRuntime, ruleset: Ruleset,
                    experiment: Experiment | object | None = _LIVE) -> Lineup:
    """`runtime`'s lineup with `ruleset` as champion and `experiment` (default: the live
    one), the challengers without a policy of their own rebuilt on the champion's."""
    live = runtime.lineup
    chosen = live.experiment if experiment is _LIVE else experiment
    assert chosen is None or isinstance(chosen, Experiment)
    if chosen is not None and _inherits_other_policy(chosen, ruleset):
        chosen = Experiment.build(chosen.spec, runtime.name, runtime.names, ruleset.policy)
    return replace(live, ruleset=ruleset, experiment=chosen)


def _inherits_other_policy(experiment: Experiment, champion: Ruleset) -> bool:
    wanted = champion.policy.to_dict()
    return any(arm.policy is None and experiment.by_name[arm.name].policy.to_dict() != wanted
               for arm in experiment.spec.challengers)


def _now_ms() -> int:
    return int(time.time() * 1000)
