"""The evaluate requests as `riskengine serve` answers them in its HTTP protocol
(riskengine/service/protocol.py), over raw sockets: keep-alive, pipelining, chunked
bodies, `Expect: 100-continue`, HTTP/1.0, refusals, clients that leave, garbage."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.engine import Engine
from tests.service.helpers import ADMIN_HEADERS, transfer
from tests.service.process import ServiceProcess

EVALUATE = "/v1/transfer/evaluate"
BATCH = "/v1/transfer/evaluate/batch"
TOKEN = "evaluate-token-for-tests-0123"
Connect = Callable[[ServiceProcess], "Connection"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path_factory.mktemp("protocol") / "state").start()
    yield process
    process.kill()


@pytest.fixture
def connect() -> Iterator[Callable[[ServiceProcess], Connection]]:
    """Open client connections; every one is closed at the end, failed test or not."""
    opened: list[Connection] = []

    def open_one(service: ServiceProcess) -> Connection:
        opened.append(Connection(service))
        return opened[-1]

    yield open_one
    for conn in opened:
        conn.close()


class Connection:
    """One client connection: raw bytes out, HTTP/1.1 responses in."""

    def __init__(self, service: ServiceProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("closed before a response")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                raise ConnectionError("closed inside a body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """True once the server closed the connection (nothing more comes)."""
        return self.buffer == b"" and not self._fill()

    def close(self) -> None:
        self.sock.close()


def post(path: str, body: bytes, *, headers: dict[str, str] | None = None,
         version: str = "1.1") -> bytes:
    fields = {"Host": "test", "Content-Type": "application/json",
              "Content-Length": str(len(body)), **(headers or {})}
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"POST {path} HTTP/{version}\r\n{head}\r\n".encode() + body


def event(name: str, i: int = 0, **fields: Any) -> dict[str, Any]:
    return transfer(i, event_id=f"{name}-{i}", **fields)


def lsn_of(service: ServiceProcess) -> int:
    return int(httpx.get(service.url + "/readyz").json()["detail"]["lsn"])


def error_of(status: int, body: bytes) -> tuple[int, str]:
    found = orjson.loads(body)
    assert set(found) == {"error"} and set(found["error"]) >= {"code", "message", "field"}
    return status, found["error"]["code"]


def test_an_answer_is_the_decision_and_says_its_length(service: ServiceProcess,
                                                       connect: Connect) -> None:
    events = [event("same", i, pay_account="same-A") for i in range(3)]
    conn = connect(service)
    answers = []
    for e in events:  # one keep-alive connection
        conn.send(post(EVALUATE, orjson.dumps(e)))
        status, headers, body = conn.response()
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert int(headers["content-length"]) == len(body)
        assert "connection" not in headers
        answers.append(orjson.loads(body))
    engine = Engine.from_config(None)
    expected = [engine.evaluate("transfer", e).to_dict() for e in events]
    keep = ("event_id", "decision", "score", "hits", "features", "ruleset_version", "late")
    assert [{k: a[k] for k in keep} for a in answers] == \
        [{k: x[k] for k in keep} for x in expected]
    assert [a["lsn"] for a in answers] == list(range(answers[0]["lsn"], answers[0]["lsn"] + 3))


def test_pipelined_requests_are_answered_in_order(service: ServiceProcess,
                                                  connect: Connect) -> None:
    conn = connect(service)
    batch = orjson.dumps([event("pipe", 3), event("pipe", 4)])
    conn.send(post(EVALUATE, orjson.dumps(event("pipe", 1)))
              + b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
              + post(EVALUATE, orjson.dumps(event("pipe", 2)))
              + post(BATCH, batch)
              + post("/v1/nosuch/evaluate", b"{}")
              + post(EVALUATE, orjson.dumps(event("pipe", 1))))  # the first again
    first, health, second, many, unknown, again = (conn.response() for _ in range(6))
    assert first[0] == health[0] == second[0] == many[0] == again[0] == 200
    assert orjson.loads(health[2])["status"] == "ok"
    lsns = [orjson.loads(first[2])["lsn"], orjson.loads(second[2])["lsn"],
            *(d["lsn"] for d in orjson.loads(many[2]))]
    assert lsns == list(range(lsns[0], lsns[0] + 4))
    assert [d["event_id"] for d in orjson.loads(many[2])] == ["pipe-3", "pipe-4"]
    assert error_of(unknown[0], unknown[2]) == (404, "unknown_scene")
    repeated = orjson.loads(again[2])
    assert repeated["duplicate"] is True and repeated["lsn"] == lsns[0]


def test_a_body_in_chunks_and_after_100_continue(service: ServiceProcess, connect: Connect) -> None:
    body = orjson.dumps(event("chunked"))
    conn = connect(service)
    conn.send(f"POST {EVALUATE} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
              "Transfer-Encoding: chunked\r\n\r\n".encode())
    for start in range(0, len(body), 7):
        piece = body[start:start + 7]
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        time.sleep(0.01)
    conn.send(b"0\r\n\r\n")
    status, _, answer = conn.response()
    assert status == 200 and orjson.loads(answer)["event_id"] == "chunked-0"

    body = orjson.dumps(event("continue"))
    conn.send(post(EVALUATE, b"", headers={"Content-Length": str(len(body)),
                                             "Expect": "100-continue"}))
    status, _, _ = conn.response()
    assert status == 100
    conn.send(body)
    status, _, answer = conn.response()
    assert status == 200 and orjson.loads(answer)["event_id"] == "continue-0"
    # refused on its headers: no 100, the answer at once
    conn.send(post(EVALUATE, b"", headers={"Content-Type": "text/plain",
                                             "Content-Length": "5", "Expect": "100-continue"}))
    status, _, answer = conn.response()
    assert error_of(status, answer) == (415, "unsupported_media_type")
    conn.send(b"hello" + post(EVALUATE, orjson.dumps(event("continue", 1))))
    status, _, answer = conn.response()
    assert status == 200 and orjson.loads(answer)["event_id"] == "continue-1"


def test_refusals_answer_in_the_error_shape_and_keep_the_connection(
        service: ServiceProcess, connect: Connect) -> None:
    before = lsn_of(service)
    big = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    chunked_big = (f"POST {EVALUATE} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n").encode() + b"".join(
        b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536])
        for i in range(0, len(big), 65536)) + b"0\r\n\r\n"
    cases: list[tuple[bytes, tuple[int, str]]] = [
        (post(EVALUATE, b"x", headers={"Content-Type": "text/plain"}),
         (415, "unsupported_media_type")),
        (post(EVALUATE, b"{not json"), (400, "bad_request")),
        (post(EVALUATE, b"[1, 2]"), (422, "invalid_event")),
        (post(EVALUATE, orjson.dumps({**event("bad"), "amount": "lots"})),
         (422, "invalid_event")),
        (post(EVALUATE, orjson.dumps(event("<script>alert(1)</script>", amount=-1e300))),
         (422, "invalid_event")),
        (post(EVALUATE, big), (413, "too_large")),  # declared over the limit
        (chunked_big, (413, "too_large")),  # found over the limit as it arrives
        (post(BATCH, orjson.dumps(event("not-a-list"))), (422, "invalid")),
        (post(BATCH, orjson.dumps([event("b", i) for i in range(1001)])), (413, "too_large")),
    ]
    conn = connect(service)
    for request, expected in cases:
        conn.send(request)
        status, headers, body = conn.response()
        assert error_of(status, body) == expected, request[:80]
        assert headers["content-type"] == "application/json"
    conn.send(post(EVALUATE, orjson.dumps(event("after-refusals"))))
    status, _, body = conn.response()
    assert status == 200 and orjson.loads(body)["lsn"] == before + 1
    metrics = httpx.get(service.url + "/metrics").text
    for code in ("400", "413", "415", "422"):
        assert f'riskengine_request_errors_total{{status="{code}"}}' in metrics


def test_http_1_0_gets_its_answer_and_the_connection_closes(service: ServiceProcess,
                                                            connect: Connect) -> None:
    conn = connect(service)
    conn.send(post(EVALUATE, orjson.dumps(event("old-client")), version="1.0"))
    status, headers, body = conn.response()
    assert status == 200 and orjson.loads(body)["event_id"] == "old-client-0"
    assert headers["connection"] == "close"
    assert conn.closed()


def test_a_client_that_leaves_mid_body_decides_nothing(service: ServiceProcess,
                                                      connect: Connect) -> None:
    before = lsn_of(service)
    body = orjson.dumps(event("left"))
    for cut in (0, 5, len(body) - 1):
        conn = connect(service)
        conn.send(post(EVALUATE, body)[:-(len(body) - cut)])
        conn.close()
    conn = connect(service)
    conn.send(post(EVALUATE, orjson.dumps(event("stayed"))))
    status, _, answer = conn.response()
    assert status == 200 and orjson.loads(answer)["lsn"] == before + 1
    assert httpx.get(service.url + "/v1/decisions/left-0",
                     headers=ADMIN_HEADERS).status_code == 404


def test_garbage_is_a_400_and_serving_goes_on(service: ServiceProcess,
                                             connect: Connect) -> None:
    for garbage in (b"\x00\x01\x02 nonsense\r\n\r\n",
                    b"POST /v1/transfer/evaluate HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}",
                    b"POST /v1/transfer/evaluate HTTP/9.9\r\n\r\n"):
        conn = connect(service)
        conn.send(garbage)
        status, _, _ = conn.response()
        assert status == 400
        assert conn.closed()
    conn = connect(service)
    conn.send(post(EVALUATE, orjson.dumps(event("after-garbage"))))
    assert conn.response()[0] == 200


def test_the_evaluate_token_is_checked_before_the_body(tmp_path: Path, connect: Connect
                                                     ) -> None:
    document = yaml.safe_load(EXAMPLE_CONFIG_PATH.read_text())
    document["service"] = {"api_token": TOKEN}
    (tmp_path / "models").symlink_to(EXAMPLE_CONFIG_PATH.parent / "models")  # read beside it
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(document))
    process = ServiceProcess(tmp_path / "state", config).start()
    try:
        conn = connect(process)
        body = orjson.dumps(event("token"))
        conn.send(post(EVALUATE, body))
        status, headers, answer = conn.response()
        assert error_of(status, answer) == (401, "unauthorized")
        assert headers["www-authenticate"] == "Bearer"
        conn.send(post(EVALUATE, body, headers={"Authorization": "Bearer wrong"}))
        status, _, answer = conn.response()
        assert error_of(status, answer) == (403, "forbidden")
        conn.send(post(EVALUATE, body, headers={"Authorization": f"Bearer {TOKEN}"}))
        status, _, answer = conn.response()
        assert status == 200 and orjson.loads(answer)["lsn"] == 1
    finally:
        process.kill()


def test_concurrent_clients_get_what_one_by_one_in_lsn_order_gives(
        service: ServiceProcess) -> None:
    """Requests of many connections are decided together per loop tick: replaying the
    answered events in LSN order through one engine gives the same features."""
    rnd = random.Random(8)
    per_thread = [[event("conc", t * 100 + i, pay_account=f"P{rnd.randint(0, 3)}",
                         rcv_account=f"R{rnd.randint(0, 2)}",
                         amount=float(rnd.choice([10, 900, 2500])))
                   for i in range(25)] for t in range(12)]
    answers: list[dict[str, Any]] = []
    refused: list[int] = []
    lock = threading.Lock()

    def client(events: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            sent = [*events, {**events[0], "amount": "lots"}, events[3]]
            for e in sent:
                response = http.post(EVALUATE, json=e)
                with lock:
                    if response.status_code == 200:
                        answers.append(response.json())
                    else:
                        refused.append(response.status_code)

    threads = [threading.Thread(target=client, args=(events,)) for events in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refused == [422] * 12
    fresh = sorted((a for a in answers if not a["duplicate"]), key=lambda a: a["lsn"])
    assert len(fresh) == 12 * 25
    assert [a["lsn"] for a in fresh] == list(range(fresh[0]["lsn"], fresh[0]["lsn"] + 300))
    by_id = {e["event_id"]: e for events in per_thread for e in events}
    engine = Engine.from_config(None)
    for answer in fresh:
        assert engine.evaluate("transfer", by_id[answer["event_id"]]).features == \
            answer["features"], answer["event_id"]
    repeats = [a for a in answers if a["duplicate"]]
    assert len(repeats) == 12
    first = {a["event_id"]: a for a in fresh}
    for again in repeats:
        assert {**again, "duplicate": False} == first[again["event_id"]]
