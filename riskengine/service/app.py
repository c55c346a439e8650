"""The FastAPI application: routes, error handling, lifespan (recover, watch, snapshot,
the guard's flushes).

The hot paths (`/v1/{scene}/evaluate`, `/batch`) are answered by `EvaluateLane`
(lane.py) in front of this app; their routes here document them (the Pydantic models
only describe the JSON) and answer the unknown scenes the lane passes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from starlette.responses import Response

from riskengine.console import add_console
from riskengine.exceptions import RiskEngineError
from riskengine.service import models
from riskengine.service.auth import check_bearer
from riskengine.service.bodies import JSON, Auth, SceneName, read_json, time_param
from riskengine.service.errors import ApiError, documented, install_handlers
from riskengine.service.experiment_routes import add_experiment_routes
from riskengine.service.guard import FLUSH_EVERY_S
from riskengine.service.guard_routes import add_guard_routes
from riskengine.service.label_routes import add_label_routes
from riskengine.service.lane import evaluate_lane
from riskengine.service.model_routes import add_model_routes
from riskengine.service.reload import watch_config
from riskengine.service.review_routes import add_review_routes, refresh_review_metrics
from riskengine.service.runtime import ServiceRuntime
from riskengine.service.settings import ServiceSettings
from riskengine.state.redis.backend import STATE_ERRORS

log = logging.getLogger("riskengine.service")

RETENTION_EVERY_S = 3600.0
ListName = Annotated[str, Path(max_length=200)]
ListValue = Annotated[str, Path(min_length=1, max_length=1000)]


def create_app(settings: ServiceSettings | None = None,
               runtime: ServiceRuntime | None = None, *, lane: bool = True) -> FastAPI:
    """Build the app. The runtime (engine, log, state) is created here and recovered when
    the app starts (lifespan), so a `TestClient` or uvicorn both get a ready service.

    `lane=False` leaves out the evaluate lane middleware, for a server that puts
    `EvaluateLane` outermost itself (in front of FastAPI's own middleware).
    """
    rt = runtime or ServiceRuntime(settings or ServiceSettings())
    s = rt.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recovered = await asyncio.to_thread(rt.recover)
        if recovered:
            log.info("recovered %d logged events after the snapshot", recovered)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_every(s.snapshot_interval_s, rt.snapshot_in_background,
                                            stop))]
        tasks.append(asyncio.create_task(_every(
            RETENTION_EVERY_S, lambda: rt.log.purge(int(time.time() * 1000) - s.retention_ms),
            stop, in_thread=True)))
        if s.watch_config and s.config is not None:
            tasks.append(asyncio.create_task(watch_config(rt, stop)))
        if rt.guard is not None:
            tasks.append(asyncio.create_task(_every(FLUSH_EVERY_S, rt.guard.flush_now, stop)))
        if rt.mirror is not None:
            await rt.mirror.start()
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if rt.mirror is not None:
                await rt.mirror.close()
            rt.close()

    app = FastAPI(title="riskengine", version="0.1.0", lifespan=lifespan,
                  description="Real-time risk decisions: exact windowed features, lists and "
                              "rules; accept, review or reject with a score and the reasons.")
    app.state.runtime = rt
    install_handlers(app, lambda status: rt.metrics.errors.labels(str(status)).inc())
    if lane:
        app.add_middleware(evaluate_lane, runtime=rt)

    def admin(authorization: str | None) -> None:
        check_bearer(authorization, s.admin_token, what="the admin API")

    def api(authorization: str | None) -> None:
        check_bearer(authorization, s.api_token, what="evaluate")

    # -- evaluate -------------------------------------------------------------------------

    # `EvaluateLane` (lane.py) answers these two for every known scene before routing;
    # the routes document them and answer what the lane passes on: unknown scenes.
    def _unknown_scene(authorization: str | None, scene: str) -> Response:
        api(authorization)
        rt.engine.scene(scene)  # raises UnknownSceneError: 404
        raise RuntimeError(f"scene {scene!r} reached the router: the evaluate lane must be "
                           "in front of this app")

    @app.post("/v1/{scene}/evaluate", tags=["evaluate"], response_model=models.DecisionModel,
              dependencies=[], openapi_extra={"requestBody": {
                  "required": True, "content": {JSON: {"schema": models.EVENT_SCHEMA}}},
                  "security": [{"HTTPBearer": []}]},
              responses=documented(400, 401, 403, 404, 413, 415, 422, 503))
    async def evaluate(scene: SceneName,
                       authorization: Auth = None) -> Response:
        """Decide one event of `scene`."""
        return _unknown_scene(authorization, scene)

    @app.post("/v1/{scene}/evaluate/batch", tags=["evaluate"],
              response_model=list[models.DecisionModel],
              openapi_extra={"requestBody": {
                  "required": True, "content": {JSON: {"schema": models.BATCH_SCHEMA}}},
                  "security": [{"HTTPBearer": []}]},
              responses=documented(400, 401, 403, 404, 413, 415, 422, 503))
    async def evaluate_batch(scene: SceneName,
                             authorization: Auth = None) -> Response:
        """Decide a list of events of `scene`, in order. All are validated first: one
        invalid event refuses the batch (422 naming its index) and nothing changes."""
        return _unknown_scene(authorization, scene)

    # -- decisions and entities (admin) ---------------------------------------------------

    admin_errors = documented(401, 403, 404, 422)
    security: dict[str, Any] = {"security": [{"HTTPBearer": []}]}

    @app.get("/v1/decisions/{event_id}", tags=["decisions"],
             response_model=models.LoggedDecisionModel, responses=admin_errors,
             openapi_extra=security)
    async def get_decision(event_id: Annotated[str, Path(max_length=256)],
                           authorization: Auth = None) -> Response:
        """The logged decision of an event."""
        admin(authorization)
        found = await asyncio.to_thread(rt.log.get, event_id)
        if found is None:
            raise ApiError(404, f"no decision logged for event_id {event_id[:80]!r}")
        return Response(orjson.dumps(found), media_type=JSON)

    @app.get("/v1/decisions", tags=["decisions"],
             response_model=list[models.LoggedDecisionModel], responses=admin_errors,
             openapi_extra=security)
    async def list_decisions(
            authorization: Auth = None,
            scene: Annotated[str | None, Query(max_length=200)] = None,
            decision: Annotated[str | None, Query(pattern="^(accept|review|reject)$")] = None,
            since: Annotated[str | None, Query(
                max_length=64, description="event time: epoch ms or ISO-8601")] = None,
            until: Annotated[str | None, Query(max_length=64)] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        """Logged decisions, newest first: `since <= event time < until`."""
        admin(authorization)
        if scene is not None:
            rt.engine.scene(scene)
        rows = await asyncio.to_thread(
            rt.log.query, scene=scene, decision=decision, since=time_param(since, "since"),
            until=time_param(until, "until"), limit=limit)
        return Response(orjson.dumps(rows), media_type=JSON)

    @app.get("/v1/entities/{scene}/{field}/{value}", tags=["entities"],
             response_model=models.EntityModel, responses=documented(401, 403, 404, 422, 503),
             openapi_extra=security)
    async def get_entity(scene: SceneName, field: Annotated[str, Path(max_length=200)],
                         value: Annotated[str, Path(min_length=1, max_length=1000)],
                         authorization: Auth = None) -> Response:
        """Current values of the features keyed by `field` for this entity, at the
        scene's event clock (nothing is counted or stored). 404 when no feature of the
        scene is keyed by `field` alone."""
        admin(authorization)
        try:
            # on the loop thread, as every engine call (shared state: two quick round trips)
            as_of, features = rt.engine.entity(scene, field, value)
        except STATE_ERRORS as exc:
            raise ApiError(503, f"the shared state cannot be read: {exc}",
                           code="state_unavailable") from None
        except KeyError:
            keyed = sorted({"+".join(s.by) for s in rt.engine.scene(scene).config.features})
            raise ApiError(404, f"no feature of scene {scene!r} is keyed by {field[:100]!r} "
                                f"alone; keys: {', '.join(keyed)}") from None
        return Response(orjson.dumps({"scene": scene, "field": field, "value": value,
                                      "as_of": as_of, "features": features}),
                        media_type=JSON)

    # -- rulesets (admin) ------------------------------------------------------------------

    @app.get("/v1/scenes/{scene}/ruleset", tags=["rulesets"], response_model=models.RulesetModel,
             responses=admin_errors, openapi_extra=security)
    async def get_ruleset(scene: SceneName, authorization: Auth = None) -> Response:
        """The live ruleset of a scene."""
        admin(authorization)
        return Response(orjson.dumps(rt.rulesets.active(scene).to_dict()), media_type=JSON)

    @app.put("/v1/scenes/{scene}/ruleset", tags=["rulesets"],
             response_model=models.RulesetChangeModel,
             responses=documented(400, 401, 403, 404, 413, 415, 422),
             openapi_extra={"requestBody": {"required": True, "content": {
                 JSON: {"schema": models.RULESET_BODY_SCHEMA}}}, **security})
    async def put_ruleset(request: Request, scene: SceneName, authorization: Auth = None,
                          activate: bool = True) -> Response:
        """Store a new ruleset version and (unless `activate=false`) put it live at once.
        A refused rule answers 422 with its id and the error position; nothing changes."""
        admin(authorization)
        rt.engine.scene(scene)
        body = await read_json(request, s.max_body_bytes)
        ruleset = await asyncio.to_thread(rt.rulesets.build, scene, body)
        changed = rt.rulesets.put(scene, ruleset, source="api", activate=activate)
        live = rt.rulesets.active(scene).version == ruleset.version
        return Response(orjson.dumps({"scene": scene, "version": ruleset.version,
                                      "active": live, "changed": changed}), media_type=JSON)

    @app.get("/v1/scenes/{scene}/ruleset/versions", tags=["rulesets"],
             response_model=list[models.VersionModel], responses=admin_errors,
             openapi_extra=security)
    async def ruleset_versions(scene: SceneName, authorization: Auth = None) -> Response:
        """Every stored version, oldest first, with the live one marked."""
        admin(authorization)
        return Response(orjson.dumps(rt.rulesets.versions(scene)), media_type=JSON)

    @app.post("/v1/scenes/{scene}/ruleset/activate/{version}", tags=["rulesets"],
              response_model=models.RulesetChangeModel, responses=admin_errors,
              openapi_extra=security)
    async def activate_ruleset(scene: SceneName,
                               version: Annotated[str, Path(max_length=100)],
                               authorization: Auth = None) -> Response:
        """Put a stored version live again (rollback)."""
        admin(authorization)
        before = rt.rulesets.active(scene).version
        ruleset = rt.rulesets.activate(scene, version)
        if ruleset is None:
            raise ApiError(404, f"scene {scene!r} has no ruleset version {version[:100]!r}")
        return Response(orjson.dumps({"scene": scene, "version": ruleset.version,
                                      "active": True, "changed": before != version}),
                        media_type=JSON)

    add_guard_routes(app, rt, admin)
    add_model_routes(app, rt, admin)

    # -- lists (admin) ---------------------------------------------------------------------

    @app.get("/v1/lists/{name}", tags=["lists"], response_model=models.ListModel,
             responses=admin_errors, openapi_extra=security)
    async def get_list(name: ListName, authorization: Auth = None) -> Response:
        """Every entry of a list (expired ones included, with their expiry)."""
        admin(authorization)
        store = rt.list_catalog
        if name not in store.names():
            raise ApiError(404, f"unknown list {name[:100]!r}; lists: {', '.join(store.names())}")
        body = {"name": name, "reason": store.reason(name),
                "entries": [e.to_dict() for e in store.entries(name)]}
        return Response(orjson.dumps(body), media_type=JSON)

    @app.put("/v1/lists/{name}/{value}", tags=["lists"], response_model=models.ListEntryModel,
             responses=documented(400, 401, 403, 404, 413, 415, 422),
             openapi_extra={"requestBody": {"required": False, "content": {
                 JSON: {"schema": models.LIST_ENTRY_BODY_SCHEMA}}}, **security})
    async def put_list_entry(request: Request, name: ListName, value: ListValue,
                             authorization: Auth = None) -> Response:
        """Add or replace an entry; the body may give `expires` and `reason`."""
        admin(authorization)
        if name not in rt.list_catalog.names():
            raise ApiError(404, f"unknown list {name[:100]!r}; declare lists in the config")
        body = await read_json(request, 64 * 1024, optional=True)
        if body is None:
            body = {}
        if not isinstance(body, dict) or set(body) - {"expires", "reason"}:
            raise ApiError(422, "the body is an object with optional 'expires' and 'reason'")
        entry = await asyncio.to_thread(rt.lists.put, name, value,
                                        expires=body.get("expires"),
                                        reason=body.get("reason") or "")
        return Response(orjson.dumps(entry.to_dict()), media_type=JSON)

    @app.delete("/v1/lists/{name}/{value}", tags=["lists"],
                response_model=models.ListEntryModel, responses=admin_errors,
                openapi_extra=security)
    async def delete_list_entry(name: ListName, value: ListValue,
                                authorization: Auth = None) -> Response:
        """Remove an entry (404 if it is not there)."""
        admin(authorization)
        store = rt.list_catalog
        if name not in store.names():
            raise ApiError(404, f"unknown list {name[:100]!r}")
        entry = store.lookup(name, value)
        if entry is None or not await asyncio.to_thread(rt.lists.delete, name, value):
            raise ApiError(404, f"{value[:100]!r} is not on list {name[:100]!r}")
        return Response(orjson.dumps(entry.to_dict()), media_type=JSON)

    add_experiment_routes(app, rt, admin)
    add_label_routes(app, rt, admin)
    add_review_routes(app, rt, admin)

    @app.post("/v1/admin/snapshot", tags=["operations"], response_model=models.SnapshotModel,
              responses=documented(401, 403), openapi_extra=security)
    async def take_snapshot(authorization: Auth = None) -> Response:
        """Write a snapshot now (e.g. before maintenance); a restart replays the decision
        log only after it."""
        admin(authorization)
        lsn = await rt.snapshot_in_background()
        return Response(orjson.dumps({"lsn": lsn}), media_type=JSON)

    @app.get("/v1/mirror", tags=["operations"], response_model=models.MirrorModel,
             responses=documented(401, 403), openapi_extra=security)
    async def mirror(authorization: Auth = None) -> Response:
        """Traffic mirroring to a candidate service (`serve --mirror URL`): events by
        result (match, mismatch, error, dropped), errors by reason, the queue, and the
        latest mismatches with the rule hits only one side had."""
        admin(authorization)
        body = {"enabled": False} if rt.mirror is None else rt.mirror.to_dict()
        return Response(orjson.dumps(body), media_type=JSON)

    # -- operations ------------------------------------------------------------------------

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        """Prometheus metrics."""
        for scene, stats in rt.engine.stats().items():
            rt.metrics.entities.labels(scene).set(stats.get("entities", 0))
        rt.metrics.log_pending.set(rt.log.pending())
        await asyncio.to_thread(refresh_review_metrics, rt)
        return Response(rt.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/healthz", tags=["operations"], response_model=models.HealthModel)
    async def healthz() -> Response:
        """The process is up and its event loop answers."""
        return Response(orjson.dumps({"status": "ok", "detail": {}}), media_type=JSON)

    @app.get("/readyz", tags=["operations"], response_model=models.HealthModel,
             responses={503: {"model": models.HealthModel, "description": "not ready"}})
    async def readyz() -> Response:
        """Ready when recovery is done and the decision log accepts writes."""
        ok = rt.ready
        detail = {"recovered_events": rt.recovered_events, "lsn": rt.engine.lsn,
                  "scenes": list(rt.engine.scenes)}
        return Response(orjson.dumps({"status": "ready" if ok else "starting",
                                      "detail": detail}),
                        status_code=200 if ok else 503, media_type=JSON)

    add_console(app, rt)
    _install_security_scheme(app)
    return app


async def _every(seconds: float, job: Any, stop: asyncio.Event, *,
                 in_thread: bool = False) -> None:
    """Run `job` every `seconds` until `stop`; a coroutine function is awaited."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
            return
        except TimeoutError:
            pass
        try:
            if in_thread:
                await asyncio.to_thread(job)
            elif asyncio.iscoroutinefunction(job):
                await job()
            else:
                job()
        except (RiskEngineError, OSError) as exc:
            log.error("periodic job failed: %s", exc)


def _install_security_scheme(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["HTTPBearer"] = {
            "type": "http", "scheme": "bearer"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
