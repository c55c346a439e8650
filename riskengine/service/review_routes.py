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

The queue itself lives in the decision log (riskengine/decisionlog/reviews.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from starlette.responses import Response

from riskengine.decisionlog import DecisionLogError
from riskengine.decisionlog.record import now_ms
from riskengine.decisionlog.reviews import MAX_NOTE, OUTCOMES, Claim, ReviewItem, analyst_error
from riskengine.exceptions import ListError, UnknownSceneError
from riskengine.lists import parse_expiry
from riskengine.service.bodies import JSON, Auth, read_json
from riskengine.service.errors import ApiError, documented
from riskengine.service.runtime import ServiceRuntime
from riskengine.state.redis.backend import STATE_ERRORS

__all__ = ["RECENT_DECISIONS", "add_review_routes", "refresh_review_metrics"]

log = logging.getLogger("riskengine.service")

RECENT_DECISIONS = 20
MAX_REVIEW_BODY = 16 * 1024
_MAX_LIST_REASON = 1000
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
                           "reason": {"type": "string", "maxLength": _MAX_LIST_REASON}}}}}


def _object(body: object, allowed: tuple[str, ...], required: tuple[str, ...],
            what: str) -> Mapping[str, Any]:
    """`body` as an object with `required` keys and no others than `allowed` (422)."""
    if not isinstance(body, dict):
        raise ApiError(422, f"{what} is an object with {', '.join(allowed)}")
    unknown = sorted(str(key)[:40] for key in body if key not in allowed)
    if unknown:
        raise ApiError(422, f"{what}: unknown field(s) {', '.join(map(repr, unknown))}; "
                            f"allowed: {', '.join(allowed)}", field=unknown[0])
    for key in required:
        if key not in body:
            raise ApiError(422, f"{what}: {key!r} is required", field=key)
    return body


def _analyst(body: Mapping[str, Any]) -> str:
    error = analyst_error(body["analyst"])
    if error is not None:
        raise ApiError(422, error, field="analyst")
    analyst: str = body["analyst"]
    return analyst


def _conflict(event_id: str, found: Claim, now: int) -> ApiError:
    """Why a claim or a resolution was not done: 404 not queued, 409 resolved or held."""
    item = found.item
    if item is None:
        return ApiError(404, f"event_id {event_id[:80]!r} is not in the review queue")
    if item.state == "resolved":
        return ApiError(409, f"the review of {event_id[:80]!r} was resolved by "
                             f"{item.resolved_by} ({item.outcome})", code="resolved",
                        extra={"item": item.to_dict()})
    return ApiError(409, f"the review of {event_id[:80]!r} is claimed by {item.claimed_by} "
                         f"for {max(0, (item.claim_until or now) - now) // 1000} s more",
                    code="claimed", extra={"item": item.to_dict()})


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

    async def logged(work: Callable[[], Any], action: str) -> Any:
        try:
            return await asyncio.to_thread(work)
        except DecisionLogError as exc:
            raise ApiError(503, f"{action}: {exc}") from None

    async def queued(event_id: str) -> ReviewItem:
        item: ReviewItem | None = await logged(lambda: rt.log.review_item(event_id),
                                               "the review queue cannot be read")
        if item is None:
            raise ApiError(404, f"event_id {event_id[:80]!r} is not in the review queue")
        return item

    async def event_of(item: ReviewItem) -> dict[str, Any]:
        """The event the queued decision was made on, from the log."""
        def read() -> dict[str, Any]:
            for lsn, _, event in rt.log.events_after(item.lsn - 1, chunk_size=1):
                if lsn == item.lsn:
                    return event
                break
            return {}
        found: dict[str, Any] = await logged(read, "the event cannot be read")
        return found

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
        items: list[ReviewItem] = await logged(
            lambda: rt.log.review_items(scene, state, limit), "the review queue cannot be read")
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
        body = _object(await read_json(request, MAX_REVIEW_BODY), ("analyst",), ("analyst",),
                       "the claim")
        analyst = _analyst(body)
        found: Claim = await logged(lambda: rt.log.claim_review(
            event_id, analyst, claim_ms=rt.settings.review_claim_ms),
            "the claim was not stored")
        if not found.done or found.item is None:
            raise _conflict(event_id, found, now_ms())
        return Response(orjson.dumps(found.item.to_dict()), media_type=JSON)

    @app.get("/v1/reviews/{event_id}", tags=["reviews"],
             responses=documented(401, 403, 404, 422, 503), openapi_extra=security)
    async def review_evidence(event_id: EventId, authorization: Auth = None) -> Response:
        """The evidence of a queued item: decision (features, hits), reasons, event,
        label, and the recent decisions of the entity."""
        admin(authorization)
        item = await queued(event_id)
        decision: dict[str, Any] | None = await logged(lambda: rt.log.get(event_id),
                                                       "the decision cannot be read")
        event = await event_of(item)
        labels = await logged(lambda: rt.log.labels_for([event_id]), "labels cannot be read")
        label = labels.get(event_id)
        entity: dict[str, Any] | None = None
        field = _entity_field(rt, item.scene)
        if field is not None and isinstance(event.get(field), str | int | float):
            value = str(event[field])
            recent = await logged(lambda: rt.log.query(
                scene=item.scene, entity=(field, value), limit=RECENT_DECISIONS),
                "the entity's decisions cannot be read")
            entity = {"field": field, "value": event[field], "recent_decisions": recent}
        hits = [] if decision is None else decision.get("hits", [])
        body = {"item": item.to_dict(), "decision": decision, "event": event,
                "reasons": [hit.get("reason", "") for hit in hits],
                "label": None if label is None else label.to_dict(), "entity": entity}
        return Response(orjson.dumps(body), media_type=JSON)

    @app.post("/v1/reviews/{event_id}/resolve", tags=["reviews"],
              responses=documented(400, 401, 403, 404, 409, 413, 415, 422, 503),
              openapi_extra={"requestBody": {"required": True, "content": {
                  JSON: {"schema": _RESOLVE_SCHEMA}}}, **security})
    async def resolve_review(request: Request, event_id: EventId,
                             authorization: Auth = None) -> Response:
        """Resolve an item as fraud or legit: its label is stored, the entity value may be
        put on a list, and the audit trail records it."""
        admin(authorization)
        body = _object(await read_json(request, MAX_REVIEW_BODY),
                       ("analyst", "outcome", "note", "add_to_list"), ("analyst", "outcome"),
                       "the resolution")
        analyst = _analyst(body)
        outcome = body["outcome"]
        if outcome not in OUTCOMES:
            raise ApiError(422, f"outcome must be one of {', '.join(OUTCOMES)}",
                           field="outcome")
        note = body.get("note")
        if note is not None and (type(note) is not str or len(note) > MAX_NOTE):
            raise ApiError(422, f"note must be a string of at most {MAX_NOTE} characters",
                           field="note")
        item = await queued(event_id)
        listing = None
        if body.get("add_to_list") is not None:
            listing = _listing(rt, body["add_to_list"], await event_of(item))
        detail = {} if listing is None else {"add_to_list": listing}
        found: Claim = await logged(lambda: rt.log.resolve_review(
            event_id, analyst, outcome, note=note, detail=detail), "the review was not resolved")
        if not found.done or found.item is None:
            raise _conflict(event_id, found, now_ms())
        entry = None
        if listing is not None:
            entry = await _put_on_list(rt, event_id, analyst, listing)
        labels = await logged(lambda: rt.log.labels_for([event_id]), "labels cannot be read")
        label = labels.get(event_id)
        return Response(orjson.dumps({
            "item": found.item.to_dict(), "label": None if label is None else label.to_dict(),
            "list_entry": entry}), media_type=JSON)

    @app.get("/v1/reviews/{event_id}/audit", tags=["reviews"],
             responses=documented(401, 403, 404, 422, 503), openapi_extra=security)
    async def review_audit(event_id: EventId, authorization: Auth = None) -> Response:
        """Who claimed, resolved and listed what, and when, oldest first."""
        admin(authorization)
        await queued(event_id)
        trail = await logged(lambda: rt.log.review_audit(event_id),
                             "the audit trail cannot be read")
        return Response(orjson.dumps([entry.to_dict() for entry in trail]), media_type=JSON)


def _entity_field(rt: ServiceRuntime, scene: str) -> str | None:
    """The scene's first ``by`` field (the entity its first feature counts by)."""
    try:
        features = rt.engine.scene(scene).config.features
    except UnknownSceneError:  # a scene no longer configured
        return None
    return next((spec.by[0] for spec in features if spec.by), None)


def _listing(rt: ServiceRuntime, raw: object, event: Mapping[str, Any]) -> dict[str, Any]:
    """The validated list change of a resolution: list, field, value, expires, reason."""
    spec = _object(raw, ("list", "field", "expires", "reason"), ("list", "field"),
                   "add_to_list")
    name, field = spec["list"], spec["field"]
    names = rt.list_catalog.names()
    if type(name) is not str or name not in names:
        raise ApiError(422, f"add_to_list: unknown list {str(name)[:100]!r}; lists: "
                            f"{', '.join(names)}", field="add_to_list.list")
    value = event.get(field) if type(field) is str else None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ApiError(422, f"add_to_list: the event has no text or integer value in field "
                            f"{str(field)[:100]!r}", field="add_to_list.field")
    expires = spec.get("expires")
    try:
        expires_at = None if expires is None else parse_expiry(expires,
                                                               what="add_to_list.expires")
    except ListError as exc:
        raise ApiError(422, str(exc), field="add_to_list.expires") from None
    reason = spec.get("reason")
    if reason is not None and (type(reason) is not str or len(reason) > _MAX_LIST_REASON):
        raise ApiError(422, f"add_to_list.reason must be a string of at most "
                            f"{_MAX_LIST_REASON} characters", field="add_to_list.reason")
    return {"list": name, "field": field, "value": str(value), "expires": expires_at,
            "reason": reason or ""}


async def _put_on_list(rt: ServiceRuntime, event_id: str, analyst: str,
                       listing: Mapping[str, Any]) -> dict[str, Any]:
    """Put the resolution's value on its list and audit it; 503 (the review stays
    resolved) when the list cannot be changed."""
    reason = listing["reason"] or f"review of {event_id[:80]} by {analyst}"
    try:
        entry = await asyncio.to_thread(rt.lists.put, listing["list"], listing["value"],
                                        expires=listing["expires"], reason=reason)
    except (ListError, *STATE_ERRORS) as exc:
        raise ApiError(503, f"the review is resolved but {listing['value'][:80]!r} was not "
                            f"put on list {listing['list']!r}: {exc}") from None
    try:
        await asyncio.to_thread(rt.log.audit_review, event_id, analyst, "list",
                                {"list": listing["list"], "value": listing["value"],
                                 "expires": listing["expires"], "reason": reason})
    except DecisionLogError as exc:
        log.error("the list change of review %r was not audited: %s", event_id[:80], exc)
    result: dict[str, Any] = entry.to_dict()
    return result
