"""The review queue API (admin only): analysts work the decisions answered ``review``.

- ``GET /v1/reviews?scene=&state=open|claimed|resolved&limit=``: queued items, oldest
  first, each with its age in seconds;
- ``POST /v1/reviews/{event_id}/claim`` ``{"analyst"}``: hold an item for
  `ServiceSettings.review_claim_ms` (``service: review_claim``, default 15 minutes); 409
  while another analyst's claim holds; claiming again extends one's own claim;
- ``GET /v1/reviews/{event_id}``: the evidence: the item, the logged decision (features,
  hits), the reasons, the event, its label if any, and the recent decisions of the
  entity (the value of the scene's first ``by`` field in the event);
- ``POST /v1/reviews/{event_id}/resolve`` ``{"analyst", "outcome": "fraud"|"legit",
  "note"?, "add_to_list"?: {"list", "field", "expires"?, "reason"?}}``: resolves the item
  and stores its label (source ``review:<analyst>``) in one transaction; then puts the
  event's `field` value on the list through the admin list changes. 409 when resolved
  already or held by another analyst's claim;
- ``GET /v1/reviews/{event_id}/audit``: who did what, when.

The queue itself lives in the decision log (riskengine/decisionlog/reviews.py); what the
routes do with it is the review desk's (review_desk.py), shared with the console.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from starlette.responses import Response

from riskengine.decisionlog import DecisionLogError
from riskengine.decisionlog.record import now_ms
from riskengine.decisionlog.reviews import MAX_NOTE, OUTCOMES
from riskengine.service.bodies import JSON, Auth, read_json
from riskengine.service.errors import ApiError, documented
from riskengine.service.review_desk import (
    MAX_LIST_REASON,
    ReviewDesk,
    ReviewRefused,
    fields_of,
)
from riskengine.service.runtime import ServiceRuntime

__all__ = ["add_review_routes", "refresh_review_metrics"]

log = logging.getLogger("riskengine.service")

MAX_REVIEW_BODY = 16 * 1024
EventId = Annotated[str, Path(min_length=1, max_length=256)]
_ANALYST: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_.@+-]{1,100}$"}
_CLAIM_SCHEMA: dict[str, Any] = {"type": "object", "required": ["analyst"],
                                 "additionalProperties": False,
                                 "properties": {"analyst": _ANALYST}}
_RESOLVE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["analyst", "outcome"], "additionalProperties": False,
    "properties": {
        "analyst": _ANALYST, "outcome": {"enum": list(OUTCOMES)},
        "note": {"type": "string", "maxLength": MAX_NOTE},
        "add_to_list": {
            "type": "object", "required": ["list", "field"], "additionalProperties": False,
            "properties": {"list": {"type": "string", "maxLength": 200},
                           "field": {"type": "string", "maxLength": 200},
                           "expires": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                           "reason": {"type": "string", "maxLength": MAX_LIST_REASON}}}}}


@contextlib.contextmanager
def _answered() -> Iterator[None]:
    """A refused review action as the API's error."""
    try:
        yield
    except ReviewRefused as exc:
        raise ApiError(exc.status, exc.message, field=exc.field, code=exc.code,
                       extra=exc.extra) from None


def refresh_review_metrics(rt: ServiceRuntime) -> None:
    """Set the review queue gauges of every scene from one grouped query (blocking)."""
    try:
        stats = rt.log.review_stats()
    except DecisionLogError as exc:
        log.warning("review queue metrics not updated: %s", exc)
        return
    now = now_ms()
    for scene in rt.engine.scenes:
        size, oldest = stats.get(scene, (0, now))
        rt.metrics.review_queue_size.labels(scene).set(size)
        rt.metrics.review_queue_oldest.labels(scene).set(max(0, now - oldest) / 1000.0)


def add_review_routes(app: FastAPI, rt: ServiceRuntime,
                      admin: Callable[[str | None], None]) -> None:
    """Add the ``/v1/reviews`` routes to `app`."""
    security: dict[str, Any] = {"security": [{"HTTPBearer": []}]}
    desk = ReviewDesk(rt)

    @app.get("/v1/reviews", tags=["reviews"], responses=documented(401, 403, 404, 422, 503),
             openapi_extra=security)
    async def list_reviews(
            authorization: Auth = None,
            scene: Annotated[str | None, Query(max_length=200)] = None,
            state: Annotated[str | None, Query(pattern="^(open|claimed|resolved)$")] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        """The review queue, oldest first, with each item's age."""
        admin(authorization)
        if scene is not None:
            rt.engine.scene(scene)  # 404 for an unknown scene
        with _answered():
            items = await desk.items(scene, state, limit)
        return Response(orjson.dumps([item.to_dict() for item in items]), media_type=JSON)

    @app.post("/v1/reviews/{event_id}/claim", tags=["reviews"],
              responses=documented(400, 401, 403, 404, 409, 413, 415, 422, 503),
              openapi_extra={"requestBody": {"required": True, "content": {
                  JSON: {"schema": _CLAIM_SCHEMA}}}, **security})
    async def claim_review(request: Request, event_id: EventId,
                           authorization: Auth = None) -> Response:
        """Hold an item for the analyst until the claim expires (409 if someone else
        holds it or it is resolved)."""
        admin(authorization)
        raw = await read_json(request, MAX_REVIEW_BODY)
        with _answered():
            body = fields_of(raw, ("analyst",), ("analyst",), "the claim")
            item = await desk.claim(event_id, body["analyst"])
        return Response(orjson.dumps(item.to_dict()), media_type=JSON)

    @app.get("/v1/reviews/{event_id}", tags=["reviews"],
             responses=documented(401, 403, 404, 422, 503), openapi_extra=security)
    async def review_evidence(event_id: EventId, authorization: Auth = None) -> Response:
        """The evidence of a queued item: decision (features, hits), reasons, event,
        label, and the recent decisions of the entity."""
        admin(authorization)
        with _answered():
            evidence = await desk.evidence(event_id)
        return Response(orjson.dumps(evidence.to_dict()), media_type=JSON)

    @app.post("/v1/reviews/{event_id}/resolve", tags=["reviews"],
              responses=documented(400, 401, 403, 404, 409, 413, 415, 422, 503),
              openapi_extra={"requestBody": {"required": True, "content": {
                  JSON: {"schema": _RESOLVE_SCHEMA}}}, **security})
    async def resolve_review(request: Request, event_id: EventId,
                             authorization: Auth = None) -> Response:
        """Resolve an item as fraud or legit: its label is stored, the entity value may be
        put on a list, and the audit trail records it."""
        admin(authorization)
        raw = await read_json(request, MAX_REVIEW_BODY)
        with _answered():
            body = fields_of(raw, ("analyst", "outcome", "note", "add_to_list"),
                             ("analyst", "outcome"), "the resolution")
            resolution = await desk.resolve(event_id, body["analyst"], body["outcome"],
                                            body.get("note"), body.get("add_to_list"))
        return Response(orjson.dumps(resolution.to_dict()), media_type=JSON)

    @app.get("/v1/reviews/{event_id}/audit", tags=["reviews"],
             responses=documented(401, 403, 404, 422, 503), openapi_extra=security)
    async def review_audit(event_id: EventId, authorization: Auth = None) -> Response:
        """Who claimed, resolved and listed what, and when, oldest first."""
        admin(authorization)
        with _answered():
            await desk.item(event_id)
            trail = await desk.audit(event_id)
        return Response(orjson.dumps([entry.to_dict() for entry in trail]), media_type=JSON)
