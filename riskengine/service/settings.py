"""Service settings: command-line flags, the config's `service:` section and environment.

The guarded rollout (riskengine/service/guard.py) is off unless the section has ``guard:``
(``{decisions, factor, min_delta}``, each optional: `GuardSettings`) or a ``--guard-*``
flag is given; flags replace the config's guard section as a whole.

Tokens are read from the environment (``RISKENGINE_ADMIN_TOKEN``,
``RISKENGINE_API_TOKEN``) or the project config (``service: {admin_token, api_token}``),
never from the command line (it shows in ``ps``). Without an admin token the service makes
one at start and writes it to ``<state-dir>/admin-token`` (mode 0600); it is never logged.
Traffic mirroring (`--mirror URL`, ``service: {mirror: {...}}``) is in mirror_settings.py.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from riskengine.durations import parse_duration
from riskengine.exceptions import ConfigError
from riskengine.service.mirror_settings import MirrorSettings, mirror_from_section
from riskengine.state.budget import parse_state_timeout
from riskengine.tracing import TracingSettings

ADMIN_TOKEN_ENV = "RISKENGINE_ADMIN_TOKEN"
API_TOKEN_ENV = "RISKENGINE_API_TOKEN"
_SERVICE_KEYS = frozenset({"admin_token", "api_token", "backtests", "guard", "max_body_bytes",
                           "max_batch", "mirror", "retention", "review_claim",
                           "snapshot_interval", "state_timeout", "watch_config"})
BACKTESTS_DIR = "backtests"
"""The backtest reports' directory under the state dir, unless one is given."""
_GUARD_KEYS = ("decisions", "factor", "min_delta")
MAX_GUARD_DECISIONS = 10_000_000
MAX_BATCH_BYTES = 64 * 1024 * 1024
"""The largest body `POST /v1/{scene}/evaluate/batch` takes (a single event's is
`max_body_bytes`)."""


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """When a new version goes live, its review and reject rates over its first
    `decisions` decisions are compared with the previous version's over its last
    `decisions`: a rate above `factor` × the previous one and more than `min_delta`
    above it (both) rolls the new version back."""

    decisions: int = 1000
    factor: float = 3.0
    min_delta: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "factor": self.factor,
                "min_delta": self.min_delta}


def parse_guard(raw: object, what: str = "service: guard") -> GuardSettings:
    """`GuardSettings` from a mapping with any of decisions, factor and min_delta (the
    others keep their defaults); ConfigError naming the key for anything else."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{what} must be a mapping with any of {', '.join(_GUARD_KEYS)}, "
                          f"e.g. {{decisions: 1000, factor: 3.0, min_delta: 0.01}}")
    unknown = set(raw) - set(_GUARD_KEYS)
    if unknown:
        raise ConfigError(f"{what}: unknown keys {sorted(map(str, unknown))}; allowed: "
                          f"{', '.join(_GUARD_KEYS)}")
    values: dict[str, Any] = {}
    if "decisions" in raw:
        number = raw["decisions"]
        if (isinstance(number, bool) or not isinstance(number, int)
                or not 1 <= number <= MAX_GUARD_DECISIONS):
            raise ConfigError(f"{what}: decisions must be an integer from 1 to "
                              f"{MAX_GUARD_DECISIONS:,}, not {number!r:.40}")
        values["decisions"] = number
    if "factor" in raw:
        values["factor"] = _guard_number(raw["factor"], f"{what}: factor", 1.0, math.inf,
                                         "1 or more (1: any increase counts)")
    if "min_delta" in raw:
        values["min_delta"] = _guard_number(raw["min_delta"], f"{what}: min_delta", 0.0,
                                            1.0, "a rate from 0 up to (not including) 1")
    return GuardSettings(**values)


def _guard_number(value: object, what: str, low: float, high: float, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number, {expected}; got {value!r:.40}")
    number = float(value)
    if not (math.isfinite(number) and low <= number < high):
        raise ConfigError(f"{what} must be {expected}; got {value!r:.40}")
    return number


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Everything the service needs besides the project config itself."""

    config: Path | None = None  # None: the shipped example config
    state_dir: Path = Path("riskengine-state")
    decision_log: str | None = None  # None: SQLite file in state_dir
    state: str | None = None  # None: in memory; redis://… or redis+cluster://… shared
    state_timeout_ms: int | None = None
    """The budget of each Redis round trip of shared state (`--state-timeout`,
    ``service: state_timeout``); None: `DEFAULT_STATE_TIMEOUT_MS` (50 ms)."""
    admin_token: str | None = None
    api_token: str | None = None
    max_body_bytes: int = 1024 * 1024
    max_batch: int = 1000
    retention_ms: int = 30 * 86_400_000
    review_claim_ms: int = 15 * 60_000
    """How long an analyst's claim on a review item holds (`service: review_claim`)."""
    snapshot_interval_s: float = 300.0
    watch_config: bool = True
    guard: GuardSettings | None = None  # None: no guarded rollout
    mirror: MirrorSettings | None = None
    """Where evaluate requests are copied to; from `--mirror URL` (only the URL) until
    `with_service_section` adds the config's `service.mirror` options."""
    tracing: TracingSettings | None = None
    """Where spans go (riskengine/tracing/); None: tracing is off."""
    backtests_dir: Path | None = None
    """The backtest reports the console lists (`--backtests-dir`, ``service: backtests``);
    None: ``<state_dir>/backtests``."""

    @property
    def backtests(self) -> Path:
        """The directory of backtest reports."""
        return self.state_dir / BACKTESTS_DIR if self.backtests_dir is None \
            else self.backtests_dir

    def with_service_section(self, section: Mapping[str, Any] | None,
                             base_dir: Path | None = None) -> ServiceSettings:
        """Apply the config's `service:` section, then the environment (which wins); a
        relative path in it is relative to `base_dir` (the config file's directory)."""
        values: dict[str, Any] = {}
        section = section or {}
        if not isinstance(section, Mapping):
            raise ConfigError("'service' must be a mapping")
        unknown = set(section) - _SERVICE_KEYS
        if unknown:
            raise ConfigError(f"service: unknown keys {sorted(map(str, unknown))}; allowed: "
                              f"{', '.join(sorted(_SERVICE_KEYS))}")
        for key in ("admin_token", "api_token"):
            if key in section:
                token = section[key]
                if not isinstance(token, str) or len(token) < 16:
                    raise ConfigError(f"service: {key} must be a string of 16+ characters")
                values[key] = token
        for key in ("max_body_bytes", "max_batch"):
            if key in section:
                number = section[key]
                if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                    raise ConfigError(f"service: {key} must be a positive integer")
                values[key] = number
        if "retention" in section:
            values["retention_ms"] = parse_duration(section["retention"],
                                                    what="service retention")
        if "review_claim" in section:
            claim_ms = parse_duration(section["review_claim"], what="service review_claim")
            if claim_ms < 1000:
                raise ConfigError("service: review_claim must be at least 1s")
            values["review_claim_ms"] = claim_ms
        if "snapshot_interval" in section:
            values["snapshot_interval_s"] = parse_duration(
                section["snapshot_interval"], what="service snapshot_interval") / 1000.0
        if section.get("backtests") is not None and self.backtests_dir is None:
            directory = section["backtests"]
            if not isinstance(directory, str) or not directory.strip():
                raise ConfigError("service: backtests must name a directory (the backtest "
                                  "reports the console lists)")
            values["backtests_dir"] = (base_dir or Path()) / Path(directory).expanduser()
        if section.get("state_timeout") is not None and self.state_timeout_ms is None:
            values["state_timeout_ms"] = parse_state_timeout(section["state_timeout"],
                                                             "service: state_timeout")
        if "watch_config" in section:
            values["watch_config"] = bool(section["watch_config"])
        if section.get("guard") is not None:
            guard = parse_guard(section["guard"])  # refused when invalid, even under flags
            if self.guard is None:
                values["guard"] = guard
        values["mirror"] = mirror_from_section(section.get("mirror"), self.mirror)
        for key, env in (("admin_token", ADMIN_TOKEN_ENV), ("api_token", API_TOKEN_ENV)):
            token = os.environ.get(env)
            if token:
                values[key] = token
        return replace(self, **values)

    def to_env(self) -> str:
        """The settings as JSON, for worker processes started by uvicorn (tokens are not
        included: workers read them from the environment or the config again)."""
        return json.dumps({
            "config": None if self.config is None else str(self.config),
            "state_dir": str(self.state_dir), "decision_log": self.decision_log,
            "state": self.state, "state_timeout_ms": self.state_timeout_ms,
            "watch_config": self.watch_config,
            "guard": None if self.guard is None else self.guard.to_dict(),
            "mirror": None if self.mirror is None else self.mirror.url,
            "otel_endpoint": None if self.tracing is None else self.tracing.endpoint,
            "tracing": self.tracing is not None,
            "backtests_dir": None if self.backtests_dir is None else str(self.backtests_dir)})

    @classmethod
    def from_env(cls, text: str) -> ServiceSettings:
        data = json.loads(text)
        return cls(config=None if data["config"] is None else Path(data["config"]),
                   state_dir=Path(data["state_dir"]), decision_log=data["decision_log"],
                   state=data["state"], state_timeout_ms=data.get("state_timeout_ms"),
                   watch_config=data["watch_config"],
                   guard=None if data.get("guard") is None else parse_guard(data["guard"]),
                   mirror=None if data["mirror"] is None else MirrorSettings(data["mirror"]),
                   tracing=(TracingSettings(endpoint=data.get("otel_endpoint"))
                            if data.get("tracing") else None),
                   backtests_dir=(None if data.get("backtests_dir") is None
                                  else Path(data["backtests_dir"])))

    def ensure_admin_token(self) -> ServiceSettings:
        """Without an admin token, make one and write it to ``state_dir/admin-token``."""
        if self.admin_token:
            return self
        path = self.state_dir / "admin-token"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
            if len(token) >= 16:
                return replace(self, admin_token=token)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        return replace(self, admin_token=token)
