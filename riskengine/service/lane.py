"""The evaluate endpoints as plain ASGI, in front of FastAPI.

`POST /v1/{scene}/evaluate` and `/evaluate/batch` for a known scene are answered here
without routing, dependency solving or Starlette's request objects; their FastAPI routes
stay for the OpenAPI document (and answer whatever this lane passes on, such as unknown
scenes). What is checked, decided and answered is `EvaluateEndpoints` (evaluation.py),
the same for the HTTP protocol that answers these requests itself under `riskengine
serve` (protocol.py); with a mirror (`serve --mirror URL`, mirror.py), a request whose
decisions are committed is also offered to it. With tracing on, `evaluate_lane` gives the
traced lane (traced_lane.py) instead.
"""

from __future__ import annotations

import logging
from time import perf_counter

from starlette.types import ASGIApp, Receive, Scope, Send

from riskengine.exceptions import RiskEngineError
from riskengine.service.errors import ApiError
from riskengine.service.evaluation import JSON_HEADERS, EvaluateEndpoints, too_large
from riskengine.service.runtime import ServiceRuntime

log = logging.getLogger("riskengine.service")


class EvaluateLane:
    """Answers the evaluate requests of known scenes; passes everything else to `app`."""

    answers_in_protocol = True
    """The HTTP protocol (protocol.py) may answer these requests itself, with the same
    `endpoints`; the traced lane says no (its spans are written here)."""

    def __init__(self, app: ASGIApp, runtime: ServiceRuntime) -> None:
        self.app = app
        self.endpoints = EvaluateEndpoints(runtime)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self.endpoints.route(scope["path"])
            if found is not None:
                await self.answer(found[0], found[1], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def answer(self, scene: str, batch: bool, scope: Scope, receive: Receive,
                     send: Send) -> None:
        started = perf_counter()
        headers = JSON_HEADERS
        try:
            body = await self.evaluate(scene, batch, scope, receive)
            status = 200
        except (ApiError, RiskEngineError) as exc:
            status, headers, body = self.endpoints.refusal(exc)
        except _Disconnected:
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        if status == 200:
            self.endpoints.observe(scene, batch, started)

    async def evaluate(self, scene: str, batch: bool, scope: Scope, receive: Receive) -> bytes:
        endpoints = self.endpoints
        limit, mirror = endpoints.check(batch, scope["headers"])
        # read_body checks the size as it reads, so bodies of unknown length are covered too
        body = await read_body(receive, limit)
        answer = endpoints.decide(scene, batch, body)
        if answer.records:
            await endpoints.calls.committed(answer.records)
        return endpoints.answered(scene, batch, body, answer, mirror)


def evaluate_lane(app: ASGIApp, runtime: ServiceRuntime) -> EvaluateLane:
    """The evaluate lane in front of `app`: the traced one (traced_lane.py) when the
    runtime traces, chosen here once; the untraced lane holds nothing of tracing."""
    if runtime.tracer is None:
        return EvaluateLane(app, runtime)
    from riskengine.service.traced_lane import TracedLane

    return TracedLane(app, runtime, runtime.tracer)


class _Disconnected(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] != "http.request":
        raise _Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large(limit)
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
