"""``GET /v1/scenes/{scene}/guard`` (admin): what the guarded rollout watches in a scene,
its counts so far, and its verdicts (riskengine/service/guard.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import Response

from riskengine.service.bodies import Auth, SceneName
from riskengine.service.errors import ApiError, documented
from riskengine.service.runtime import ServiceRuntime
from riskengine.state.redis.backend import STATE_ERRORS


class GuardWatchModel(BaseModel):
    kind: str
    version: str
    previous: str
    state: str
    started_at_ms: int
    decided_at_ms: int | None
    of: int
    decisions: int
    counts: dict[str, int]
    rates: dict[str, float]
    baseline: dict[str, Any] | None
    exceeded: list[str]


class GuardReportModel(BaseModel):
    scene: str
    enabled: bool
    settings: dict[str, float] | None
    watching: list[GuardWatchModel]
    verdicts: list[GuardWatchModel]


def add_guard_routes(app: FastAPI, rt: ServiceRuntime,
                     admin: Callable[[str | None], None]) -> None:
    @app.get("/v1/scenes/{scene}/guard", tags=["rulesets"], response_model=GuardReportModel,
             responses=documented(401, 403, 404, 503),
             openapi_extra={"security": [{"HTTPBearer": []}]})
    async def guard_report(scene: SceneName, authorization: Auth = None) -> Response:
        """The guarded rollout of a scene: the versions being watched (their decisions
        so far out of `of`, rates, and the previous version's rates) and the verdicts,
        newest first: rolled_back, kept, no_baseline, superseded, rollback_failed.
        `enabled` is false when the service runs without a guard."""
        admin(authorization)
        rt.engine.scene(scene)  # unknown scene: 404
        guard = rt.guard
        if guard is None:
            body: dict[str, Any] = {"scene": scene, "enabled": False, "settings": None,
                                    "watching": [], "verdicts": []}
        else:
            try:
                body = await asyncio.to_thread(guard.report, scene)
            except STATE_ERRORS as exc:
                raise ApiError(503, f"the guard's shared state cannot be read: {exc}",
                               code="state_unavailable") from None
        return Response(orjson.dumps(body), media_type="application/json")
