"""`EvaluateProtocol` in process, on a transport that records what it is given: the
answer waits for the decision log's commit (and is a 503 when the commit fails), a client
that leaves while its commit is on the way gets nothing written, and a client that reads
slowly gets its next pipelined answer only once the first one drained."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from riskengine.service import ServiceSettings, create_app
from riskengine.service.lane import EvaluateLane
from riskengine.service.protocol import EvaluateProtocol
from riskengine.service.runtime import ServiceRuntime
from tests.service.helpers import ADMIN, transfer


class Transport(asyncio.Transport):
    """Keeps what is written; `closed` once closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ServiceRuntime]:
    rt = ServiceRuntime(ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                                        watch_config=False))
    rt.recover()
    yield rt
    if not rt.log.closed:
        rt.close()


def connection(runtime: ServiceRuntime) -> tuple[EvaluateProtocol, Transport]:
    config = Config(EvaluateLane(create_app(runtime=runtime, lane=False), runtime),
                    http=EvaluateProtocol, lifespan="off", log_level="warning",
                    proxy_headers=False)
    config.load()
    protocol = EvaluateProtocol(config, ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)
    assert protocol.endpoints is not None  # it answers the evaluate requests itself
    return protocol, transport


def request(event: dict[str, Any]) -> bytes:
    body = orjson.dumps(event)
    return (b"POST /v1/transfer/evaluate HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


def responses(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next(int(line.split(":")[1]) for line in lines
                      if line.lower().startswith("content-length"))
        out.append((int(lines[0].split()[1]), orjson.loads(rest[:length])))
        data = rest[length:]
    return out


async def settle(runtime: ServiceRuntime) -> None:
    """Let the tick's decisions run and the log commit them."""
    for _ in range(50):
        await asyncio.sleep(0.01)
        if runtime.log.closed or runtime.log.pending() == 0:
            await asyncio.sleep(0.01)
            return


def test_the_answer_waits_for_the_commit(runtime: ServiceRuntime) -> None:
    async def run() -> None:
        protocol, transport = connection(runtime)
        protocol.data_received(request(transfer(1)))
        assert transport.written == b""  # decided at the tick's end, answered after commit
        await settle(runtime)
        ((status, body),) = responses(transport.written)
        assert status == 200 and body["lsn"] == 1
        assert runtime.log.get("e1") is not None  # committed before it was answered

    asyncio.run(run())


def test_a_failed_commit_is_a_503_and_the_connection_stays(runtime: ServiceRuntime) -> None:
    async def run() -> None:
        protocol, transport = connection(runtime)
        runtime.log.close()
        protocol.data_received(request(transfer(1)))
        await settle(runtime)
        ((status, body),) = responses(transport.written)
        assert status == 503 and body["error"]["code"] == "unavailable"
        assert "retry with the same event_id" in body["error"]["message"]
        assert not transport.closed
        text = runtime.metrics.render().decode()
        assert "riskengine_decision_log_failures_total 1.0" in text
        assert 'riskengine_request_errors_total{status="503"} 1.0' in text

    asyncio.run(run())


def test_a_client_gone_before_the_commit_gets_nothing_written(
        runtime: ServiceRuntime) -> None:
    async def run() -> None:
        protocol, transport = connection(runtime)
        protocol.data_received(request(transfer(1)))
        protocol.connection_lost(None)
        transport.closed = True
        await settle(runtime)
        assert transport.written == b""
        assert runtime.log.get("e1") is not None  # decided and logged all the same

    asyncio.run(run())


def test_a_slow_reader_gets_the_next_answer_once_drained(runtime: ServiceRuntime) -> None:
    async def run() -> None:
        protocol, transport = connection(runtime)
        protocol.pause_writing()  # the client does not read
        protocol.data_received(request(transfer(1)) + request(transfer(2)))
        await settle(runtime)
        assert [s for s, _ in responses(transport.written)] == [200]
        assert not transport.reading
        protocol.resume_writing()
        await settle(runtime)
        await settle(runtime)
        answered = responses(transport.written)
        assert [(s, b["lsn"]) for s, b in answered] == [(200, 1), (200, 2)]

    asyncio.run(run())
