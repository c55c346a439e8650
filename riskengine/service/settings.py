"""Service settings: command-line flags, the config's `service:` section and environment.

Tokens are read from the environment (``RISKENGINE_ADMIN_TOKEN``,
``RISKENGINE_API_TOKEN``) or the project config (``service: {admin_token, api_token}``),
never from the command line (it shows in ``ps``). Without an admin token the service makes
one at start and writes it to ``<state-dir>/admin-token`` (mode 0600); it is never logged.
Traffic mirroring (`--mirror URL`, ``service: {mirror: {...}}``) is in mirror_settings.py.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from riskengine.durations import parse_duration
from riskengine.exceptions import ConfigError
from riskengine.service.mirror_settings import MirrorSettings, mirror_from_section

ADMIN_TOKEN_ENV = "RISKENGINE_ADMIN_TOKEN"
API_TOKEN_ENV = "RISKENGINE_API_TOKEN"
_SERVICE_KEYS = frozenset({"admin_token", "api_token", "max_body_bytes", "max_batch",
                           "retention", "snapshot_interval", "watch_config", "mirror"})


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Everything the service needs besides the project config itself."""

    config: Path | None = None  # None: the shipped example config
    state_dir: Path = Path("riskengine-state")
    decision_log: str | None = None  # None: SQLite file in state_dir
    state: str | None = None  # None: in memory; redis://… or redis+cluster://… shared
    admin_token: str | None = None
    api_token: str | None = None
    max_body_bytes: int = 1024 * 1024
    max_batch: int = 1000
    retention_ms: int = 30 * 86_400_000
    snapshot_interval_s: float = 300.0
    watch_config: bool = True
    mirror: MirrorSettings | None = None
    """Where evaluate requests are copied to; from `--mirror URL` (only the URL) until
    `with_service_section` adds the config's `service.mirror` options."""

    def with_service_section(self, section: Mapping[str, Any] | None) -> ServiceSettings:
        """Apply the config's `service:` section, then the environment (which wins)."""
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
        if "snapshot_interval" in section:
            values["snapshot_interval_s"] = parse_duration(
                section["snapshot_interval"], what="service snapshot_interval") / 1000.0
        if "watch_config" in section:
            values["watch_config"] = bool(section["watch_config"])
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
            "state": self.state, "watch_config": self.watch_config,
            "mirror": None if self.mirror is None else self.mirror.url})

    @classmethod
    def from_env(cls, text: str) -> ServiceSettings:
        data = json.loads(text)
        return cls(config=None if data["config"] is None else Path(data["config"]),
                   state_dir=Path(data["state_dir"]), decision_log=data["decision_log"],
                   state=data["state"], watch_config=data["watch_config"],
                   mirror=None if data["mirror"] is None else MirrorSettings(data["mirror"]))

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
