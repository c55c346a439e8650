"""The evaluate endpoints without their transport.

What `POST /v1/{scene}/evaluate` and `/evaluate/batch` of a known scene check, decide and
answer, in the order a request meets it: `route` (is it one of them), `check` (the
headers: token, content type, declared length), `decide` (the body, once read whole:
JSON, the batch limits, the decisions and their log records), then, once the records are
committed, `answered` (the mirror's copy; the answer) — or `refusal` for any error on the
way. Two transports drive it: the ASGI lane (lane.py: TestClient, tracing, any ASGI
server) and the HTTP protocol that answers these requests itself (protocol.py, under
`riskengine serve`); the statuses, error shape and metrics are these, whichever it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from time import perf_counter
from typing import Any, NamedTuple, Protocol

import orjson

from riskengine.decision import Decision
from riskengine.decisionlog import LogRecord
from riskengine.service.auth import check_bearer
from riskengine.service.errors import ApiError, error_body, from_exception
from riskengine.service.mirror import MIRRORED_HEADER, Mirror
from riskengine.service.runtime import Decided, ServiceRuntime
from riskengine.service.settings import MAX_BATCH_BYTES

__all__ = ["JSON_HEADERS", "Answer", "Calls", "EvaluateEndpoints", "check_content_type",
           "check_declared_length", "parse_json", "too_large"]

Headers = list[tuple[bytes, bytes]]
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
_UNAUTHORIZED_HEADERS: Headers = [*JSON_HEADERS, (b"www-authenticate", b"Bearer")]


class Calls(Protocol):
    """The runtime's calls a request makes (`ServiceRuntime`, or the traced lane's
    `TracedCalls` around it)."""

    def decide(self, scene: str, raw: object) -> Decided: ...

    def decide_many(self, scene: str, raws: Sequence[object]) -> list[Decided]: ...

    async def committed(self, records: Sequence[LogRecord]) -> None: ...


class Answer(NamedTuple):
    """A request decided: its answer, once `records` are committed."""

    body: bytes
    records: list[LogRecord]
    decisions: Sequence[Decision]


class EvaluateEndpoints:
    """The evaluate endpoints of a runtime's scenes (see the module docstring)."""

    def __init__(self, runtime: ServiceRuntime, calls: Calls | None = None) -> None:
        self.runtime = runtime
        self.calls: Calls = runtime if calls is None else calls
        self.settings = runtime.settings
        self.scenes = frozenset(runtime.engine.scenes)
        self.mirror = runtime.mirror
        self.errors = runtime.metrics.errors
        self.latency = {(scene, kind): runtime.metrics.request_latency.child((scene, kind))
                        for scene in runtime.engine.scenes for kind in ("evaluate", "batch")}

    def route(self, path: str) -> tuple[str, bool] | None:
        """(scene, batch) when a POST to `path` is one of these endpoints; None for any
        other path, and for an unknown scene (the app's routes answer those)."""
        if path.startswith("/v1/"):
            if path.endswith("/evaluate"):
                scene, batch = path[4:-9], False
            elif path.endswith("/evaluate/batch"):
                scene, batch = path[4:-15], True
            else:
                return None
            if scene in self.scenes:
                return scene, batch
        return None

    def check(self, batch: bool, headers: Iterable[tuple[bytes, bytes]]
              ) -> tuple[int, Mirror | None]:
        """The checks of the headers alone: the body's size limit, and the mirror to offer
        the request to (None for a request that is itself a mirrored copy)."""
        ctype = length = auth = None
        mirror = self.mirror
        for name, value in headers:
            if name == b"content-type":
                ctype = value
            elif name == b"content-length":
                length = value
            elif name == b"authorization":
                auth = value
            elif name == MIRRORED_HEADER:
                mirror = None  # a mirrored copy is not mirrored again
        if self.settings.api_token is not None:
            check_bearer(None if auth is None else auth.decode("latin-1"),
                         self.settings.api_token, what="evaluate")
        check_content_type(ctype)
        limit = self.limit(batch)
        check_declared_length(length, limit)
        return limit, mirror

    def limit(self, batch: bool) -> int:
        """The largest body (bytes) of a request."""
        return MAX_BATCH_BYTES if batch else self.settings.max_body_bytes

    def decide(self, scene: str, batch: bool, body: bytes) -> Answer:
        """Decide the whole body; commit `records` before answering."""
        raw = parse_json(body)
        if not batch:
            return self.one(self.calls.decide(scene, raw))
        if not isinstance(raw, list):
            raise ApiError(422, "a batch is a JSON list of events")
        if len(raw) > self.settings.max_batch:
            raise ApiError(413, f"a batch holds at most {self.settings.max_batch} events, "
                                f"got {len(raw)}")
        many = self.calls.decide_many(scene, raw)
        return Answer(b"[" + b",".join([d.answer for d in many]) + b"]",
                      [d.record for d in many if d.record is not None],
                      [d.decision for d in many])

    @staticmethod
    def one(decided: Decided) -> Answer:
        """The answer of a single event's request."""
        return Answer(decided.answer, [] if decided.record is None else [decided.record],
                      (decided.decision,))

    def answered(self, scene: str, batch: bool, body: bytes, answer: Answer,
                 mirror: Mirror | None) -> bytes:
        """The response body of a request whose records are committed (the mirror gets
        its copy of the request)."""
        if mirror is not None:
            mirror.offer(scene, body, answer.decisions, batch)
        return answer.body

    def refusal(self, exc: Exception) -> tuple[int, Headers, bytes]:
        """The error response (status, headers, body) of `exc`, counted; raises `exc`
        again when it is none of the errors a request can meet."""
        err = from_exception(exc)
        self.errors.labels(str(err.status)).inc()
        return (err.status, _UNAUTHORIZED_HEADERS if err.status == 401 else JSON_HEADERS,
                error_body(err))

    def observe(self, scene: str, batch: bool, started: float) -> None:
        """The time of an answered request, from `started` (`perf_counter`)."""
        self.latency[scene, "batch" if batch else "evaluate"].observe(perf_counter() - started)


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
        raise too_large(limit)


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the body is over the limit of {limit} bytes")


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
