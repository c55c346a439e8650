"""Mirroring in process: its settings (flag, config section, environment), the comparison
of one decision, the admin endpoint, candidates that answer 200 with something that is
not a decision, and the copies waiting for one scene sent as one batch request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from fastapi.testclient import TestClient

from riskengine.decision import Decision
from riskengine.exceptions import ConfigError
from riskengine.rules.ruleset import Hit
from riskengine.service.metrics import ServiceMetrics
from riskengine.service.mirror import Mirror
from riskengine.service.mirror_compare import InvalidAnswer, MirrorTally, compare
from riskengine.service.mirror_settings import (
    MirrorSettings,
    mirror_from_section,
    parse_mirror_url,
)
from riskengine.service.settings import ServiceSettings
from tests.service.helpers import ADMIN_HEADERS, transfer
from tests.waiting import eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "riskengine" / "examples" / "config.yaml"


# -- settings ------------------------------------------------------------------------------

def test_url_is_normalised_and_malformed_ones_refused() -> None:
    assert parse_mirror_url(" http://candidate:8000/ ") == "http://candidate:8000"
    assert parse_mirror_url("https://c.example/risk/") == "https://c.example/risk"
    for bad in (None, "", 8000, "candidate:8000", "ftp://c", "http://", "http://c:x",
                "http://c:0", "http://c/?q", "http://c/#f", "http://c d", "//c:80"):
        with pytest.raises(ConfigError, match="candidate's base URL"):
            parse_mirror_url(bad)


def test_section_options_flag_url_wins_and_env_token(monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    monkeypatch.delenv("RISKENGINE_MIRROR_TOKEN", raising=False)
    section = {"url": "http://from-config:1", "queue": 5, "queue_bytes": 1000,
               "score_tolerance": 0.5, "timeout": "250ms", "samples": 0, "token": "t",
               "senders": 2, "batch": 1}
    assert mirror_from_section(section, None) == MirrorSettings(
        url="http://from-config:1", queue=5, queue_bytes=1000, score_tolerance=0.5,
        timeout_s=0.25, samples=0, token="t", senders=2, batch=1)
    assert mirror_from_section({"url": "http://c"}, None).batch == 500  # type: ignore[union-attr]
    flag = MirrorSettings(parse_mirror_url("http://from-flag:2"))
    assert mirror_from_section(section, flag).url == "http://from-flag:2"  # type: ignore[union-attr]
    assert mirror_from_section(None, flag) == flag
    assert mirror_from_section({"queue": 5}, None) is None  # no URL anywhere: off
    monkeypatch.setenv("RISKENGINE_MIRROR_TOKEN", "from-env")
    assert mirror_from_section({}, flag).token == "from-env"  # type: ignore[union-attr]


def test_settings_given_in_code_keep_their_options_under_an_empty_section(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`ServiceSettings(mirror=MirrorSettings(url, batch=1))` keeps batch 1 when the
    service section (none here) is applied; the section's own keys still win."""
    monkeypatch.delenv("RISKENGINE_MIRROR_TOKEN", raising=False)
    given = MirrorSettings("http://c:1", batch=1, senders=3, queue=7)
    assert mirror_from_section(None, given) == given
    assert mirror_from_section({"batch": 20}, given) == MirrorSettings(
        "http://c:1", batch=20, senders=3, queue=7)


@pytest.mark.parametrize("section", [
    "http://c:1", {"url": "c:1"}, {"url": "http://c", "queue": 0},
    {"url": "http://c", "queue": True}, {"url": "http://c", "queue": "10"},
    {"url": "http://c", "samples": -1}, {"url": "http://c", "queue_bytes": 0},
    {"url": "http://c", "senders": 0}, {"url": "http://c", "batch": 0},
    {"url": "http://c", "batch": True}, {"url": "http://c", "batch": "500"},
    {"url": "http://c", "batch": 2.5},
    {"url": "http://c", "score_tolerance": -0.1},
    {"url": "http://c", "score_tolerance": float("nan")},
    {"url": "http://c", "score_tolerance": "0.1"}, {"url": "http://c", "timeout": "soon"},
    {"url": "http://c", "timeout": 0}, {"url": "http://c", "token": ""},
    {"url": "http://c", "colour": "red"}])
def test_bad_sections_are_load_errors(section: object) -> None:
    with pytest.raises(ConfigError, match="mirror"):
        mirror_from_section(section, None)


def test_the_service_section_reaches_the_settings(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["service"] = {"mirror": {"url": "http://c:1", "queue": 7}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    settings = ServiceSettings(config=config).with_service_section(data["service"])
    assert settings.mirror == MirrorSettings(url="http://c:1", queue=7)
    # worker processes get the flag's URL and read the section again
    again = ServiceSettings.from_env(ServiceSettings(
        mirror=MirrorSettings("http://flag:3")).to_env())
    assert again.mirror == MirrorSettings("http://flag:3")


# -- comparing one decision ----------------------------------------------------------------

def decision(verdict: str = "review", score: float = 60.0, hits: tuple[str, ...] = ("a", "b"),
             duplicate: bool = False) -> Decision:
    return Decision(event_id="e1", scene="transfer", decision=verdict, score=score,
                    hits=tuple(Hit(h, "", 0.0, None) for h in hits), shadow_hits=(),
                    features={}, list_hits=(), ruleset_version="r1", late=False,
                    degraded=False, latency_ms=0.0, lsn=1, timestamp=0, duplicate=duplicate)


def answer(verdict: str = "review", score: object = 60.0,
           hits: tuple[str, ...] = ("a", "b"), **extra: Any) -> dict[str, Any]:
    return {"decision": verdict, "score": score,
            "hits": [{"rule_id": h} for h in hits], **extra}


def test_same_answer_within_tolerance_and_in_any_hit_order() -> None:
    live = decision()
    assert compare(live, answer(), 0.0) is None
    assert compare(live, answer(score=60.001, hits=("b", "a")), 0.001) is None
    assert compare(live, answer(score=60), 0.0) is None


def test_each_difference_is_a_mismatch_naming_one_sided_hits() -> None:
    live = decision(duplicate=True)
    assert compare(live, answer(score=60.0011), 0.001) is not None
    moved = compare(live, answer("reject", 100.0, ("b", "c", "d"), duplicate=True), 0.5)
    assert moved is not None
    assert moved.to_dict() == {
        "event_id": "e1", "scene": "transfer",
        "live": {"decision": "review", "score": 60.0, "duplicate": True},
        "candidate": {"decision": "reject", "score": 100.0, "duplicate": True},
        "hits_only_live": ["a"], "hits_only_candidate": ["c", "d"]}
    same_score = compare(live, answer(hits=("a",)), 0.0)
    assert same_score is not None and same_score.only_live == ("b",)


@pytest.mark.parametrize("bad", [
    [], "review", None, {"score": 1, "hits": []}, answer(score="60"), answer(score=True),
    answer(score=None), {"decision": "review", "score": 1}, {**answer(), "hits": {}},
    {**answer(), "hits": [{"rule": "a"}]}, {**answer(), "hits": ["a"]},
    {**answer(), "hits": [{"rule_id": 3}]}])
def test_an_answer_that_is_no_decision_is_invalid(bad: object) -> None:
    with pytest.raises(InvalidAnswer):
        compare(decision(), bad, 0.0)


# -- a candidate that answers 200 with anything ---------------------------------------------

class Scripted(BaseHTTPRequestHandler):
    """Answers every POST with the server's `reply(path, body)`: a body (status 200) or a
    (status, body) pair."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                 body))  # type: ignore[attr-defined]
        reply = self.server.reply(self.path, body)  # type: ignore[attr-defined]
        status, reply = reply if isinstance(reply, tuple) else (200, reply)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def mirror_view(client: TestClient) -> dict[str, Any]:
    got = client.get("/v1/mirror", headers=ADMIN_HEADERS)
    assert got.status_code == 200
    body: dict[str, Any] = got.json()
    return body


def test_unusable_answers_are_errors_and_the_live_answers_stand(
        make_client: Callable[..., TestClient], scripted: ThreadingHTTPServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    replies = iter([b"not json", b"[]", b'{"decision": "accept"}', b"{}",
                    b'[{"decision": "accept", "score": 0, "hits": []}]', b"null"])
    scripted.reply = lambda path, body: next(replies)  # type: ignore[attr-defined]
    monkeypatch.setenv("RISKENGINE_MIRROR_TOKEN", "candidate-token")
    url = f"http://127.0.0.1:{scripted.server_address[1]}/prefix"
    client = make_client(mirror=MirrorSettings(url, batch=1))  # one request per copy
    for i in range(4):
        assert client.post("/v1/transfer/evaluate", json=transfer(i)).status_code == 200
    # the body goes as received, byte for byte (odd spacing kept)
    batch = b'[ %s ,\n %s ]' % (orjson.dumps(transfer(10)), orjson.dumps(transfer(11)))
    # a list of one decision for two events; then a batch answered by a non-list
    assert client.post("/v1/transfer/evaluate/batch", content=batch,
                       headers={"content-type": "application/json"}).status_code == 200
    assert client.post("/v1/transfer/evaluate/batch",
                       json=[transfer(12), transfer(13)]).status_code == 200
    assert eventually(lambda: sum(mirror_view(client)["counts"].values()) == 8, timeout=30)
    view = mirror_view(client)
    assert view["counts"] == {"match": 0, "mismatch": 0, "error": 8, "dropped": 0}
    assert view["errors"] == {"invalid answer": 8}
    paths = [path for path, _, _ in scripted.seen]  # type: ignore[attr-defined]
    assert paths == (["/prefix/v1/transfer/evaluate"] * 4
                     + ["/prefix/v1/transfer/evaluate/batch"] * 2)
    _, headers, body = scripted.seen[4]  # type: ignore[attr-defined]
    assert headers["authorization"] == "Bearer candidate-token"
    assert headers["x-riskengine-mirrored"] == "1"
    assert body == batch


def test_mirror_view_needs_the_admin_token_and_says_when_off(client: TestClient) -> None:
    assert client.get("/v1/mirror").status_code == 401
    assert client.get("/v1/mirror", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert mirror_view(client) == {"enabled": False}


def test_the_queue_is_bounded_in_requests_and_bytes() -> None:
    mirror = Mirror(MirrorSettings("http://127.0.0.1:9", queue=3, queue_bytes=10),
                    ServiceMetrics(["transfer"]))
    one, two = (decision(),), (decision(), decision())
    mirror.offer("transfer", b"12345", one, False)
    mirror.offer("transfer", b"123456", two, True)  # 11 bytes: dropped
    mirror.offer("login", b"1234", one, False)  # the bounds hold over all scenes
    mirror.offer("transfer", b"[]", (), True)  # an empty batch: nothing to compare
    mirror.offer("transfer", b"1", one, False)
    mirror.offer("login", b"", one, False)  # a fourth request: dropped
    assert mirror.depth == 3
    assert mirror.tally.counts == {"match": 0, "mismatch": 0, "error": 0, "dropped": 3}
    asyncio.run(mirror.close())  # never started: what waits counts as dropped
    assert mirror.tally.counts["dropped"] == 6 and mirror.depth == 0


def test_the_latest_mismatches_are_kept_newest_first() -> None:
    tally = MirrorTally(ServiceMetrics(["transfer"]), samples=2)
    live = [replace(decision(), event_id=f"e{i}") for i in range(4)]
    answers = [answer("reject", 100.0), answer(), answer("accept", 0.0, ()), answer("x")]
    tally.answered(live, answers, 0.0)
    view = tally.to_dict()
    assert view["counts"] == {"match": 1, "mismatch": 3, "error": 0, "dropped": 0}
    assert [s["event_id"] for s in view["samples"]] == ["e3", "e2"]
    with pytest.raises(InvalidAnswer):  # one decision short: nothing counted
        tally.answered(live, answers[:3], 0.0)
    assert tally.to_dict()["counts"]["mismatch"] == 3


# -- copies waiting for one scene go as one batch request ----------------------------------

def copy_of(event: dict[str, Any], live_verdict: str = "accept") -> Decision:
    """The live decision of `event`: `live_verdict`, no hits."""
    return replace(decision(live_verdict, 0.0, ()), event_id=event["event_id"])


def echo(path: str, body: bytes) -> bytes:
    """A candidate that decides each event its `verdict` field."""
    sent = orjson.loads(body)
    decided = [answer(e["verdict"], 0.0, ()) for e in (sent if path.endswith("batch")
                                                        else [sent])]
    return orjson.dumps(decided if path.endswith("batch") else decided[0])


def run_mirror(mirror: Mirror, events: int) -> None:
    """Start `mirror` with what it has queued; stop it once `events` have a result."""
    async def run() -> None:
        await mirror.start()
        try:
            for _ in range(3000):
                if sum(mirror.tally.counts.values()) >= events:
                    break
                await asyncio.sleep(0.01)
        finally:
            await mirror.close()
    asyncio.run(run())


def test_a_scenes_waiting_copies_go_as_one_batch_compared_event_by_event(
        scripted: ThreadingHTTPServer) -> None:
    scripted.reply = echo  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{scripted.server_address[1]}"
    mirror = Mirror(MirrorSettings(url, batch=4), ServiceMetrics(["transfer", "login"]))
    t = [{"event_id": f"t{i}", "verdict": "accept"} for i in range(10)]
    t[3]["verdict"] = "reject"  # the candidate decides t3 differently
    logins = [{"event_id": f"l{i}", "verdict": "review"} for i in range(2)]
    single = {e["event_id"]: b" %s\n" % orjson.dumps(e) for e in t + logins}
    pair = b"\n[ %s ,\n %s ] " % (orjson.dumps(t[1]), orjson.dumps(t[2]))
    five = orjson.dumps(t[5:])
    mirror.offer("transfer", single["t0"], (copy_of(t[0]),), False)
    mirror.offer("login", single["l0"], (copy_of(logins[0], "review"),), False)
    mirror.offer("transfer", pair, (copy_of(t[1]), copy_of(t[2])), True)
    mirror.offer("transfer", single["t3"], (copy_of(t[3]),), False)
    mirror.offer("transfer", single["t4"], (copy_of(t[4]),), False)  # a fifth event
    mirror.offer("login", single["l1"], (copy_of(logins[1], "review"),), False)
    mirror.offer("transfer", five, tuple(copy_of(e) for e in t[5:]), True)  # over batch
    assert mirror.depth == 7
    run_mirror(mirror, 12)
    assert [(path, body) for path, _, body in scripted.seen] == [  # type: ignore[attr-defined]
        # up to 4 events of the scene, in live order, the bodies spliced as received
        ("/v1/transfer/evaluate/batch",
         b"[" + single["t0"] + b"," + pair.strip()[1:-1] + b"," + single["t3"] + b"]"),
        # the other scene's turn
        ("/v1/login/evaluate/batch", b"[" + single["l0"] + b"," + single["l1"] + b"]"),
        # alone: as received, to its own path
        ("/v1/transfer/evaluate", single["t4"]),
        ("/v1/transfer/evaluate/batch", five)]
    first = orjson.loads(scripted.seen[0][2])  # type: ignore[attr-defined]
    assert first == t[:4]
    view = mirror.to_dict()
    assert view["counts"] == {"match": 11, "mismatch": 1, "error": 0, "dropped": 0}
    assert [s["event_id"] for s in view["samples"]] == ["t3"]  # type: ignore[index]
    assert view["requests_sent"] == 4 and view["batch"] == 4 and view["queue_depth"] == 0


@pytest.mark.parametrize(("batch", "counts", "errors"), [
    (3, {"match": 0, "mismatch": 0, "error": 3, "dropped": 0}, {"status 422": 3}),
    (1, {"match": 3, "mismatch": 0, "error": 0, "dropped": 0}, {})])
def test_a_refused_batch_counts_each_of_its_events_as_an_error(
        scripted: ThreadingHTTPServer, batch: int, counts: dict[str, int],
        errors: dict[str, int]) -> None:
    # a candidate that refuses every batch request (as one with a stricter schema refuses
    # a batch holding one event it does not take); with batch 1 every copy goes alone
    scripted.reply = lambda path, body: (  # type: ignore[attr-defined]
        (422, b'{"error": {"code": 422}}') if path.endswith("batch") else echo(path, body))
    url = f"http://127.0.0.1:{scripted.server_address[1]}"
    mirror = Mirror(MirrorSettings(url, batch=batch), ServiceMetrics(["transfer"]))
    for i in range(3):
        event = {"event_id": f"t{i}", "verdict": "accept"}
        mirror.offer("transfer", orjson.dumps(event), (copy_of(event),), False)
    run_mirror(mirror, 3)
    assert mirror.tally.counts == counts
    assert mirror.tally.errors == errors
    assert mirror.requests_sent == len(scripted.seen) == 3 // batch  # type: ignore[attr-defined]
