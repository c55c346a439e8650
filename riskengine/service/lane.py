"""The evaluate endpoints as plain ASGI, in front of FastAPI.

`POST /v1/{scene}/evaluate` and `/evaluate/batch` for a known scene are answered here
without routing, dependency solving or Starlette's request objects; their FastAPI routes
stay for the OpenAPI document (and answer whatever this lane passes on, such as unknown
scenes). Behaviour is the routes': the same checks, statuses and error shape. With a
mirror (`serve --mirror URL`, mirror.py), a request whose decisions are committed is also
offered to it: the scene, the body as received and the decisions, one queue append.
With tracing on, `evaluate_lane` gives the traced lane (traced_lane.py) instead.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from riskengine.exceptions import RiskEngineError
from riskengine.service.auth import check_bearer
from riskengine.service.errors import ApiError, error_body, from_exception
from riskengine.service.mirror import MIRRORED_HEADER
from riskengine.service.runtime import ServiceRuntime
from riskengine.service.settings import MAX_BATCH_BYTES

log = logging.getLogger("riskengine.service")

_JSON_HEADERS = [(b"content-type", b"application/json")]


class EvaluateLane:
    """Answers the evaluate requests of known scenes; passes everything else to `app`."""

    def __init__(self, app: ASGIApp, runtime: ServiceRuntime) -> None:
        self.app = app
        self.rt = runtime
        self.scenes = frozenset(runtime.engine.scenes)
        self.mirror = runtime.mirror
        self.latency = {(scene, kind): runtime.metrics.request_latency.labels(scene, kind)
                        for scene in self.scenes for kind in ("evaluate", "batch")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/v1/"):
                if path.endswith("/evaluate"):
                    scene, batch = path[4:-9], False
                elif path.endswith("/evaluate/batch"):
                    scene, batch = path[4:-15], True
                else:
                    scene, batch = "", False
                if scene in self.scenes:
                    await self.answer(scene, batch, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def answer(self, scene: str, batch: bool, scope: Scope, receive: Receive,
                     send: Send) -> None:
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = _JSON_HEADERS
        try:
            body = await self.evaluate(scene, batch, scope, receive)
            status = 200
        except (ApiError, RiskEngineError) as exc:
            err = from_exception(exc)
            status, body = err.status, error_body(err)
            if status == 401:
                headers = [*_JSON_HEADERS, (b"www-authenticate", b"Bearer")]
            self.rt.metrics.errors.labels(str(status)).inc()
        except _Disconnected:
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        if status == 200:
            self.latency[scene, "batch" if batch else "evaluate"].observe(
                time.perf_counter() - started)

    async def evaluate(self, scene: str, batch: bool, scope: Scope, receive: Receive) -> bytes:
        rt = self.rt
        settings = rt.settings
        ctype = length = auth = None
        mirror = self.mirror
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value
            elif name == b"content-length":
                length = value
            elif name == b"authorization":
                auth = value
            elif name == MIRRORED_HEADER:
                mirror = None  # a mirrored copy is not mirrored again
        if settings.api_token is not None:
            check_bearer(None if auth is None else auth.decode("latin-1"), settings.api_token,
                         what="evaluate")
        check_content_type(ctype)
        limit = MAX_BATCH_BYTES if batch else settings.max_body_bytes
        check_declared_length(length, limit)
        # read_body checks the size as it reads, so bodies of unknown length are covered too
        body = await read_body(receive, limit)
        raw = parse_json(body)
        if not batch:
            decision, answer, record = rt.decide(scene, raw)
            if record is not None:
                await rt.committed((record,))
            if mirror is not None:
                mirror.offer(scene, body, (decision,), False)
            return answer
        if not isinstance(raw, list):
            raise ApiError(422, "a batch is a JSON list of events")
        if len(raw) > settings.max_batch:
            raise ApiError(413, f"a batch holds at most {settings.max_batch} events, "
                                f"got {len(raw)}")
        decided = rt.decide_many(scene, raw)
        await rt.committed([d.record for d in decided if d.record is not None])
        if mirror is not None:
            mirror.offer(scene, body, [d.decision for d in decided], True)
        return b"[" + b",".join([d.answer for d in decided]) + b"]"


def evaluate_lane(app: ASGIApp, runtime: ServiceRuntime) -> EvaluateLane:
    """The evaluate lane in front of `app`: the traced one (traced_lane.py) when the
    runtime traces, chosen here once; the untraced lane holds nothing of tracing."""
    if runtime.tracer is None:
        return EvaluateLane(app, runtime)
    from riskengine.service.traced_lane import TracedLane

    return TracedLane(app, runtime, runtime.tracer)


class _Disconnected(Exception):
    pass


def check_content_type(ctype: bytes | None) -> None:
    media = (ctype or b"").split(b";", 1)[0].strip().lower()
    if media != b"application/json" and not (media.startswith(b"application/")
                                             and media.endswith(b"+json")):
        shown = media.decode("latin-1")[:100] or "no content type"
        raise ApiError(415, f"send the body as application/json, not {shown!r}")


def check_declared_length(length: bytes | str | None, limit: int) -> None:
    """400 for a Content-Length that is not a number, 413 for one over `limit`."""
    if length is None:
        return
    try:
        declared = int(length)
    except ValueError:
        raise ApiError(400, "invalid Content-Length") from None
    if declared > limit:
        raise ApiError(413, f"the body is over the limit of {limit} bytes")


async def read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] != "http.request":
        raise _Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise ApiError(413, f"the body is over the limit of {limit} bytes")
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
            raise ApiError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
