"""``POST /v1/labels``: labels for logged (or not yet logged) events, admin only.

The body is one label ``{event_id, label, time?, source?}`` or a list of at most
`MAX_LABELS`. Every label is validated first: the first bad one refuses the request (422
naming its index and field) and nothing is stored; then all are stored in one
transaction (riskengine/decisionlog/labels.py says which label wins per event).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from riskengine.decisionlog import DecisionLogError
from riskengine.decisionlog.labels import LabelError, parse_label
from riskengine.decisionlog.record import now_ms
from riskengine.service.bodies import JSON, Auth, read_json
from riskengine.service.errors import ApiError, documented
from riskengine.service.runtime import ServiceRuntime

__all__ = ["MAX_LABELS", "add_label_routes"]

MAX_LABELS = 10_000
_LABEL_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["event_id", "label"], "additionalProperties": False,
    "properties": {
        "event_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "label": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
        "time": {"description": "epoch ms or ISO-8601 (default: when received)",
                 "oneOf": [{"type": "integer"}, {"type": "string"}]},
        "source": {"type": "string", "maxLength": 200}}}


def add_label_routes(app: FastAPI, rt: ServiceRuntime,
                     admin: Callable[[str | None], None]) -> None:
    """Add ``POST /v1/labels`` to `app`."""

    @app.post("/v1/labels", tags=["labels"],
              responses=documented(400, 401, 403, 413, 415, 422, 503),
              openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": {
                  "oneOf": [_LABEL_SCHEMA, {"type": "array", "items": _LABEL_SCHEMA,
                                            "maxItems": MAX_LABELS}]}}}},
                  "security": [{"HTTPBearer": []}]})
    async def post_labels(request: Request, authorization: Auth = None) -> Response:
        """Store labels ({event_id, label, time?, source?} or a list of them); a newer
        label of an event replaces the older. One bad label refuses them all."""
        admin(authorization)
        body = await read_json(request, rt.settings.max_body_bytes)
        items = body if isinstance(body, list) else [body]
        if len(items) > MAX_LABELS:
            raise ApiError(422, f"at most {MAX_LABELS} labels per request, not {len(items)}")
        received = now_ms()
        labels = []
        for index, item in enumerate(items):
            try:
                labels.append(parse_label(item, received_at=received))
            except LabelError as exc:
                where = f"label {index}" if isinstance(body, list) else "the label"
                raise ApiError(422, f"{where}: {exc}", field=exc.field or "label",
                               code="invalid_label", extra={"index": index}) from None
        try:
            events = await asyncio.to_thread(rt.log.add_labels, labels)
        except DecisionLogError as exc:
            raise ApiError(503, f"the labels were not stored: {exc}") from None
        return Response(orjson.dumps({"received": len(labels), "events": events}),
                        media_type=JSON)
