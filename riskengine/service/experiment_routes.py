"""The experiment admin API: the live experiment of a scene, its versions, promotion,
and the live comparison of its arms (riskengine/batch/experiment_report.py).

    GET    /v1/scenes/{scene}/experiment            the live experiment (404 without one)
    PUT    /v1/scenes/{scene}/experiment            put one live (the ``experiment:``
                                                    mapping as JSON; 422 naming what is
                                                    wrong, and the live one stays)
    DELETE /v1/scenes/{scene}/experiment            end it: the champion alone decides
    GET    /v1/scenes/{scene}/experiment/versions   every version, the live one marked
    POST   /v1/scenes/{scene}/experiments/{arm}/promote
                                                    the arm's ruleset becomes the champion
                                                    and the arm leaves the experiment
    GET    /v1/scenes/{scene}/experiments?since=&until=&amount_field=
                                                    the comparison, per experiment version
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from starlette.responses import Response

from riskengine.batch.metrics import AMOUNT_FIELD
from riskengine.exceptions import ConfigError, RuleCompileError
from riskengine.service.bodies import JSON, Auth, SceneName, read_json, time_param
from riskengine.service.errors import ApiError, documented
from riskengine.service.experiment_comparison import live_comparison
from riskengine.service.experiments import UnknownArmError
from riskengine.service.runtime import ServiceRuntime

__all__ = ["add_experiment_routes"]

ArmName = Annotated[str, Path(max_length=64)]
_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}
_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {JSON: {"schema": {
    "type": "object", "required": ["key"],
    "description": "The scene's `experiment:` mapping: key, salt, split (percent per "
                   "arm, adding up to 100) and challengers ({mode: decide|shadow, rules, "
                   "policy} or {mode, ruleset_version})"}}}}}


def add_experiment_routes(app: FastAPI, rt: ServiceRuntime,
                          admin: Callable[[str | None], None]) -> None:
    """Add the routes of the module docstring to `app` (all need the admin token)."""
    errors = documented(401, 403, 404, 422)

    @app.get("/v1/scenes/{scene}/experiment", tags=["experiments"], responses=errors,
             openapi_extra=_SECURITY)
    async def get_experiment(scene: SceneName, authorization: Auth = None) -> Response:
        """The live experiment of a scene: its version, spec and each arm's ruleset
        version."""
        admin(authorization)
        described = rt.experiments.describe(scene)
        if described is None:
            raise ApiError(404, f"scene {scene!r} has no experiment", code="no_experiment")
        return _json(described)

    @app.put("/v1/scenes/{scene}/experiment", tags=["experiments"],
             responses=documented(400, 401, 403, 404, 413, 415, 422),
             openapi_extra={**_BODY, **_SECURITY})
    async def put_experiment(request: Request, scene: SceneName,
                             authorization: Auth = None) -> Response:
        """Store an experiment version and put it live at once, in one swap. A bad split
        or rule answers 422 naming it; the live experiment stays."""
        admin(authorization)
        rt.engine.scene(scene)
        body = await read_json(request, rt.settings.max_body_bytes)
        try:
            experiment = await asyncio.to_thread(rt.experiments.build, scene, body)
        except RuleCompileError:
            raise
        except ConfigError as exc:
            raise ApiError(422, str(exc), code="invalid_experiment") from None
        changed = rt.experiments.put(scene, experiment, source="api")
        return _json({"scene": scene, "version": experiment.version,
                      "arms": list(experiment.arms), "active": True, "changed": changed})

    @app.delete("/v1/scenes/{scene}/experiment", tags=["experiments"], responses=errors,
                openapi_extra=_SECURITY)
    async def end_experiment(scene: SceneName, authorization: Auth = None) -> Response:
        """End the live experiment: the champion alone decides (versions stay listed)."""
        admin(authorization)
        live = rt.experiments.live(scene)
        if live is None or not rt.experiments.end(scene):
            raise ApiError(404, f"scene {scene!r} has no experiment", code="no_experiment")
        return _json({"scene": scene, "version": live.version, "active": False,
                      "changed": True})

    @app.get("/v1/scenes/{scene}/experiment/versions", tags=["experiments"],
             responses=errors, openapi_extra=_SECURITY)
    async def experiment_versions(scene: SceneName, authorization: Auth = None) -> Response:
        """Every stored experiment version, oldest first, the live one marked."""
        admin(authorization)
        return _json(rt.experiments.versions(scene))

    @app.post("/v1/scenes/{scene}/experiments/{arm}/promote", tags=["experiments"],
              responses=errors, openapi_extra=_SECURITY)
    async def promote(scene: SceneName, arm: ArmName, authorization: Auth = None) -> Response:
        """Make the arm's ruleset the champion (a ruleset version with source "promote")
        and remove the arm from the experiment, in one swap."""
        admin(authorization)
        rt.engine.scene(scene)
        try:
            champion, rest = rt.experiments.promote(scene, arm)
        except UnknownArmError as exc:
            raise ApiError(404, str(exc), code="unknown_arm") from None
        return _json({"scene": scene, "promoted": arm, "ruleset_version": champion.version,
                      "experiment_version": None if rest is None else rest.version})

    @app.get("/v1/scenes/{scene}/experiments", tags=["experiments"], responses=errors,
             openapi_extra=_SECURITY)
    async def compare(scene: SceneName, authorization: Auth = None,
                      since: Annotated[str | None, Query(
                          max_length=64, description="event time: epoch ms or ISO-8601")]
                      = None,
                      until: Annotated[str | None, Query(max_length=64)] = None,
                      amount_field: Annotated[str, Query(min_length=1, max_length=200)]
                      = AMOUNT_FIELD) -> Response:
        """The arms compared on the scene's logged decisions with `since <= event time <
        until`, labels joined: one entry per experiment version, the latest first."""
        admin(authorization)
        rt.engine.scene(scene)
        report = await asyncio.to_thread(
            live_comparison, rt, scene, since=time_param(since, "since"),
            until=time_param(until, "until"), amount_field=amount_field)
        return _json(report)


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type=JSON)
