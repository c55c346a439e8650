"""The HTTP protocol of `riskengine serve`: uvicorn's httptools protocol, answering the
evaluate requests of known scenes itself.

uvicorn runs every request as an ASGI task: a scope, a `RequestResponseCycle` with its
`asyncio.Event`, a task, `receive` and `send` messages. For the evaluate endpoints that
was most of what the server did per request besides deciding (BENCHMARKS.md "HTTP
service"). `EvaluateProtocol` keeps uvicorn's protocol for everything — parsing,
keep-alive, pipelining, flow control, upgrades, malformed requests, every other path — and
takes a POST to `/v1/{scene}/evaluate` or `/evaluate/batch` of a known scene over when its
headers are complete: a `_Call` checks the headers, collects the body as it arrives, and
once it is whole decides it at once and writes the response from the callback of the
decision log's commit future. The checks, statuses, error shape, metrics and mirror copy
are `EvaluateEndpoints` (evaluation.py), as in the ASGI lane; the response still goes out
only after the decision log committed the request's records.

It takes requests over only when the app uvicorn serves is the untraced `EvaluateLane` and
no concurrency limit is set; otherwise it is uvicorn's protocol unchanged. A `_Call` plays
uvicorn's request cycle where the protocol reads one (`response_complete`,
`disconnected`, `keep_alive`, and `run_asgi` for a pipelined request whose turn comes).
A single event is decided at the end of the tick it came in, with the other requests'
(`ServiceRuntime.decide_soon`, ticks.py).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from time import perf_counter
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from riskengine.exceptions import RiskEngineError
from riskengine.service.errors import ApiError
from riskengine.service.evaluation import (
    JSON_HEADERS,
    Answer,
    EvaluateEndpoints,
    parse_json,
    too_large,
)
from riskengine.service.mirror import Mirror
from riskengine.service.runtime import Decided

__all__ = ["EvaluateProtocol"]

log = logging.getLogger("riskengine.service")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SERVER_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; "
                 b"charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n"
                 b"Internal Server Error")


class EvaluateProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that answers the evaluate requests itself (see the
    module docstring); pass it as uvicorn's ``http``."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        lane = self.app
        self.endpoints: EvaluateEndpoints | None = (
            lane.endpoints
            if getattr(lane, "answers_in_protocol", False) and self.limit_concurrency is None
            else None)

    def on_headers_complete(self) -> None:
        endpoints = self.endpoints
        if endpoints is not None and self.parser.get_method() == b"POST" \
                and not self.parser.should_upgrade():
            try:
                path = httptools.parse_url(self.url).path.decode("ascii")
            except (httptools.HttpParserError, UnicodeDecodeError):
                path = ""  # uvicorn's own handling below refuses it as it always did
            if "%" in path:
                path = urllib.parse.unquote(path)
            found = endpoints.route(self.root_path + path)
            if found is not None:
                self._take_over(endpoints, found[0], found[1])
                return
        super().on_headers_complete()

    def _take_over(self, endpoints: EvaluateEndpoints, scene: str, batch: bool) -> None:
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        call = _Call(self, endpoints, scene, batch, keep_alive)
        previous = self.cycle
        self.cycle = call  # type: ignore[assignment]
        if previous is None or previous.response_complete:
            call.begin()
        else:  # pipelined behind a request not answered yet: its turn comes later
            self.flow.pause_reading()
            self.pipeline.appendleft((call, self.app))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        call: object = self.cycle
        if isinstance(call, _Call):
            call.take(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        call: object = self.cycle
        if isinstance(call, _Call):
            call.body_complete()
        else:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        call: object = self.cycle
        if isinstance(call, _Call):
            if not call.response_complete:
                call.disconnected = True  # a commit on its way answers no one
            self.cycle = None  # type: ignore[assignment]
        super().connection_lost(exc)


class _Call:
    """One evaluate request on a connection (see the module docstring)."""

    __slots__ = ("active", "batch", "body", "chunks", "complete", "disconnected",
                 "endpoints", "expect_continue", "headers", "keep_alive", "limit", "mirror",
                 "over", "pending", "protocol", "response_complete", "scene", "size",
                 "started")

    def __init__(self, protocol: EvaluateProtocol, endpoints: EvaluateEndpoints, scene: str,
                 batch: bool, keep_alive: bool) -> None:
        self.protocol = protocol
        self.endpoints = endpoints
        self.scene = scene
        self.batch = batch
        self.headers = protocol.headers
        self.expect_continue = protocol.expect_100_continue
        self.keep_alive = keep_alive
        self.limit = endpoints.limit(batch)
        self.chunks: list[bytes] = []
        self.size = 0
        self.body = b""
        self.over = False  # the body went past the limit
        self.complete = False  # the whole body is in
        self.active = False  # the connection's current request (not waiting in line)
        self.response_complete = False
        self.disconnected = False
        self.mirror: Mirror | None = None
        self.pending: Answer | None = None
        self.started = 0.0

    async def run_asgi(self, app: object) -> None:
        """A pipelined request's turn (uvicorn starts it as a task)."""
        self.begin()

    def begin(self) -> None:
        self.active = True
        try:
            _, self.mirror = self.endpoints.check(self.batch, self.headers)
        except (ApiError, RiskEngineError) as exc:
            self.refuse(exc)
            return
        if self.over:
            self.refuse(too_large(self.limit))
        elif self.complete:
            self.decide()
        elif self.expect_continue and not self.protocol.transport.is_closing():
            self.protocol.transport.write(_CONTINUE)

    def take(self, chunk: bytes) -> None:
        if self.response_complete or self.over:
            return  # refused already: the rest of the body is read and dropped
        self.size += len(chunk)
        if self.size > self.limit:
            self.over = True
            self.chunks = []
            if self.active:
                self.refuse(too_large(self.limit))
            return
        self.chunks.append(chunk)

    def body_complete(self) -> None:
        if self.response_complete:
            return
        self.complete = True
        if self.active and not self.over:
            self.decide()

    def decide(self) -> None:
        self.started = perf_counter()
        chunks = self.chunks
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        endpoints = self.endpoints
        try:
            if not self.batch:  # decided at the end of the tick, with the tick's others
                endpoints.runtime.decide_soon(self.scene, parse_json(self.body), self._decided)
                return
            answer = endpoints.decide(self.scene, self.batch, self.body)
        except (ApiError, RiskEngineError) as exc:
            self.refuse(exc)
            return
        except Exception:
            self.fail()
            return
        self._commit(answer)

    def _decided(self, decided: Decided | Exception) -> None:
        if isinstance(decided, (ApiError, RiskEngineError)):
            self.refuse(decided)
        elif isinstance(decided, Exception):
            self.fail()
        else:
            self._commit(self.endpoints.one(decided))

    def _commit(self, answer: Answer) -> None:
        if not answer.records:
            self.answer(answer, None)
            return
        self.pending = answer
        self.endpoints.runtime.commit(answer.records, self._committed)

    def _committed(self, error: BaseException | None) -> None:
        answer, self.pending = self.pending, None
        if answer is not None:
            self.answer(answer, error)

    def answer(self, answer: Answer, error: BaseException | None) -> None:
        endpoints = self.endpoints
        if error is not None:
            self.refuse(endpoints.runtime.not_committed(error, len(answer.records)))
            return
        try:
            body = endpoints.answered(self.scene, self.batch, self.body, answer, self.mirror)
        except Exception:
            self.fail()
            return
        self.respond(200, JSON_HEADERS, body)
        endpoints.observe(self.scene, self.batch, self.started)

    def refuse(self, exc: Exception) -> None:
        try:
            status, headers, body = self.endpoints.refusal(exc)
        except Exception:
            self.fail()
            return
        self.respond(status, headers, body)

    def fail(self) -> None:
        """An error no request should meet: 500 and the connection closed, as uvicorn
        answers an application that raised."""
        log.exception("evaluate request of scene %s failed", self.scene)
        self.keep_alive = False
        self.respond_raw(_SERVER_ERROR)

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        parts = [STATUS_LINE[status]]
        for name, value in self.protocol.server_state.default_headers:
            parts += [name, b": ", value, b"\r\n"]
        for name, value in headers:
            parts += [name, b": ", value, b"\r\n"]
        parts.append(b"content-length: %d\r\n" % len(body))
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += [b"\r\n", body]
        self.respond_raw(b"".join(parts))

    def respond_raw(self, response: bytes) -> None:
        if self.response_complete:
            return
        self.response_complete = True
        self.chunks = []
        protocol = self.protocol
        if self.disconnected or protocol.transport.is_closing():
            return
        protocol.transport.write(response)
        if not self.keep_alive:
            protocol.transport.close()
        if protocol.flow.write_paused:  # the client reads slowly: next request once drained
            task = protocol.loop.create_task(self._drained())
            protocol.tasks.add(task)
            task.add_done_callback(protocol.tasks.discard)
        else:
            protocol.on_response_complete()

    async def _drained(self) -> None:
        await self.protocol.flow.drain()
        self.protocol.on_response_complete()
