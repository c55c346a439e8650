"""Traffic mirroring between real service processes: a live service copies its evaluate
traffic to a candidate whose config changes one rule, and reports exactly the events that
rule decides differently, also when the copies reach the candidate in batches; a candidate
with a stricter schema refuses whole batches; a candidate that is down or never answers
costs the live service nothing but error and drop counts."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from riskengine.engine import Engine
from riskengine.synth import generate_transfers
from tests.example_config import example_config
from tests.service.helpers import ADMIN_HEADERS, T0
from tests.service.process import ServiceProcess, free_port
from tests.waiting import eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "riskengine" / "examples" / "config.yaml"
LIVE_RULE = "small_tx_device_10m >= 5"
CANDIDATE_RULE = "small_tx_device_10m >= 3"
SINGLE, BATCHED, BATCH_SIZE = 900, 600, 50
MIRROR_BATCH = 500  # the default
DAY = 86_400_000


def write_config(path: Path, *, rule: str = LIVE_RULE,
                 mirror: dict[str, Any] | None = None, device_required: bool = False
                 ) -> Path:
    """The example config with the card_testing rule's condition `rule` (and a mirror
    section; with `device_required`, transfers without a `device_id` break the schema)."""
    data = example_config()
    rules = data["scenes"]["transfer"]["rules"]
    assert sum(LIVE_RULE in r["when"] for r in rules) == 1
    for r in rules:
        r["when"] = r["when"].replace(LIVE_RULE, rule)
    if device_required:
        data["scenes"]["transfer"]["schema"]["device_id"] = "str"
    if mirror is not None:
        data["service"] = {"mirror": mirror}
    path.write_text(yaml.safe_dump(data))
    return path


def mirror_state(service: ServiceProcess) -> dict[str, Any]:
    answer = httpx.get(service.url + "/v1/mirror", headers=ADMIN_HEADERS, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def settled(service: ServiceProcess, events: int) -> dict[str, Any]:
    """The mirror's state once every one of `events` has a result (bounded wait)."""
    assert eventually(lambda: sum(mirror_state(service)["counts"].values()) >= events,
                      timeout=120, interval=0.1), mirror_state(service)
    state = mirror_state(service)
    assert state["queue_depth"] == 0
    return state


def metric(service: ServiceProcess, name: str, labels: str) -> float:
    text = httpx.get(service.url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return 0.0


def send(service: ServiceProcess, singles: list[dict[str, Any]],
         batches: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every answer's decisions in order; `latency_ms` is zeroed (the one timing field)."""
    got: list[dict[str, Any]] = []
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for event in singles:
            answer = client.post("/v1/transfer/evaluate", json=event)
            assert answer.status_code == 200, answer.text
            got.append(answer.json())
        for batch in batches:
            answer = client.post("/v1/transfer/evaluate/batch", json=batch)
            assert answer.status_code == 200, answer.text
            got.extend(answer.json())
    return [{**d, "latency_ms": 0} for d in got]


def refused_requests(service: ServiceProcess) -> None:
    """Requests the live service refuses: none of them is mirrored."""
    with httpx.Client(base_url=service.url, timeout=30) as client:
        headers = {"content-type": "application/json"}
        assert client.post("/v1/transfer/evaluate", content=b"{not json",
                           headers=headers).status_code == 400
        assert client.post("/v1/transfer/evaluate",
                           json={"event_id": "bad", "amount": "lots"}).status_code == 422
        assert client.post("/v1/transfer/evaluate/batch",
                           json=[{"event_id": "bad2"}]).status_code == 422
        assert client.post("/v1/transfer/evaluate", content=b"{}",
                           headers={"content-type": "text/plain"}).status_code == 415
        assert client.post("/v1/transfer/evaluate", content=b"[" * 2_000_000,
                           headers=headers).status_code == 413
        assert client.post("/v1/nope/evaluate", json={}).status_code == 404


@contextmanager
def paused(service: ServiceProcess) -> Iterator[None]:
    """`service` stopped (SIGSTOP) until the block ends: a mirror's first copy waits for
    its answer and the others wait in the queue, so they go in batches once it runs."""
    assert service.proc is not None
    os.killpg(service.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(service.proc.pid, signal.SIGCONT)


def batch_requests(sizes: Sequence[int], batch: int) -> int:
    """Requests that carry live requests of `sizes` events, in order, when all of them wait:
    each takes the next ones while its events stay within `batch`."""
    count, events = 0, batch
    for size in sizes:
        if events + size > batch:
            count, events = count + 1, size
        else:
            events += size
    return count


@pytest.fixture
def services() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for service in started:
        service.kill()


def transfers(n: int, seed: int) -> list[dict[str, Any]]:
    """Transfers from few devices, half of them small: bursts the card_testing rule sees."""
    rng = random.Random(seed)
    return [{"event_id": f"m{i}", "timestamp": T0 + i * 20_000,
             "pay_account": f"A{rng.randint(0, 30)}", "rcv_account": f"R{rng.randint(0, 9)}",
             "amount": round(rng.choice([rng.uniform(1, 9.99), rng.uniform(10, 3000)]), 2),
             "device_id": f"d{rng.randint(0, 40)}"} for i in range(n)]


def traffic() -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Singles, batches, and every event in the order sent (duplicates included)."""
    events = transfers(SINGLE + BATCHED, seed=5)
    # a few ids sent again: the live answers are `duplicate`, and still mirrored
    again = [dict(events[i]) for i in range(0, SINGLE, 97)]
    singles = events[:SINGLE] + again
    rest = events[SINGLE:]
    batches = [rest[i:i + BATCH_SIZE] for i in range(0, len(rest), BATCH_SIZE)]
    return singles, batches, singles + rest


def expected_mismatches(config: Path, candidate: Path,
                        sent: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the changed rule decides differently, from the two configs' own engines."""
    live_engine = Engine.from_config(config)
    candidate_engine = Engine.from_config(candidate)
    out: dict[str, dict[str, Any]] = {}
    for event in sent:
        a = live_engine.evaluate("transfer", event)
        b = candidate_engine.evaluate("transfer", event)
        other_rules = ({h for h in a.hit_ids if h != "card_testing"}
                       == {h for h in b.hit_ids if h != "card_testing"})
        assert other_rules  # only the changed rule may decide differently
        if ("card_testing" in a.hit_ids) != ("card_testing" in b.hit_ids):
            out.setdefault(event["event_id"], {"live": a.decision, "candidate": b.decision,
                                               "live_score": a.score,
                                               "candidate_score": b.score,
                                               "only_candidate": ["card_testing"],
                                               "times": 0})["times"] += 1
        else:
            assert (a.decision, a.score) == (b.decision, b.score)
    return out


def test_mismatches_are_the_events_the_changed_rule_decides(
        tmp_path: Path, services: list[ServiceProcess]) -> None:
    # the candidate answers nothing while the traffic is sent, so the copies wait and go
    # in batches: a timeout longer than the sending
    live_config = write_config(tmp_path / "live.yaml",
                               mirror={"samples": 1000, "timeout": "300s"})
    candidate_config = write_config(tmp_path / "candidate.yaml", rule=CANDIDATE_RULE)
    candidate = ServiceProcess(tmp_path / "candidate", candidate_config).start()
    services.append(candidate)
    live = ServiceProcess(tmp_path / "live", live_config,
                          extra=["--mirror", candidate.url]).start()
    services.append(live)
    plain = ServiceProcess(tmp_path / "plain", write_config(tmp_path / "plain.yaml")).start()
    services.append(plain)

    singles, batches, sent = traffic()
    with paused(candidate):
        refused_requests(live)
        answers = send(live, singles, batches)
        refused_requests(live)
    assert answers == send(plain, singles, batches)  # the mirror changes no live answer
    assert sum(a["duplicate"] for a in answers) == len(singles) - SINGLE

    state = settled(live, len(sent))
    assert state["enabled"] is True and state["url"] == candidate.url
    assert state["max_samples"] == 1000 and state["batch"] == MIRROR_BATCH
    # the first copy went alone (the candidate stopped), the others in batches of at most
    # MIRROR_BATCH events: as few requests as that allows
    sizes = [1] * len(singles) + [len(b) for b in batches]
    assert (batch_requests(sizes, MIRROR_BATCH) <= state["requests_sent"]
            <= 1 + batch_requests(sizes[1:], MIRROR_BATCH))
    expected = expected_mismatches(live_config, candidate_config, sent)
    assert len(expected) >= 20, "the traffic must exercise the changed rule"
    counts = state["counts"]
    assert counts == {"match": len(sent) - sum(e["times"] for e in expected.values()),
                      "mismatch": sum(e["times"] for e in expected.values()),
                      "error": 0, "dropped": 0}
    assert sum(counts.values()) == len(sent)
    got: dict[str, dict[str, Any]] = {}
    for sample in state["samples"]:
        entry = got.setdefault(sample["event_id"], {
            "live": sample["live"]["decision"], "candidate": sample["candidate"]["decision"],
            "live_score": sample["live"]["score"],
            "candidate_score": sample["candidate"]["score"],
            "only_candidate": sample["hits_only_candidate"], "times": 0})
        entry["times"] += 1
        assert sample["hits_only_live"] == []
        assert sample["live"]["duplicate"] == sample["candidate"]["duplicate"]
    assert got == expected
    # the same counts in the Prometheus metrics
    assert metric(live, "riskengine_mirror_total", 'result="match"') == counts["match"]
    assert metric(live, "riskengine_mirror_total", 'result="mismatch"') == counts["mismatch"]
    assert metric(live, "riskengine_mirror_queue_depth", "") == 0
    # the candidate decided every event once; duplicates and refused requests added none
    ready = httpx.get(candidate.url + "/readyz", timeout=10).json()
    assert ready["detail"]["lsn"] == SINGLE + BATCHED


def test_a_stricter_candidate_refuses_whole_batches_and_each_copy_with_batch_1(
        tmp_path: Path, services: list[ServiceProcess]) -> None:
    # the candidate requires device_id; every 20th transfer has none (the live service
    # takes it)
    candidate = ServiceProcess(tmp_path / "candidate", write_config(
        tmp_path / "candidate.yaml", device_required=True)).start()
    services.append(candidate)
    compared = 0
    for run, batch in enumerate((MIRROR_BATCH, 1)):
        live = ServiceProcess(tmp_path / f"live{batch}", write_config(
            tmp_path / f"live{batch}.yaml", mirror={"batch": batch, "timeout": "300s"}),
            extra=["--mirror", candidate.url]).start()
        services.append(live)
        # new ids, later times: the candidate's second stream is not late
        events = [{**e, "event_id": f"b{batch}-{i}", "timestamp": e["timestamp"] + run * DAY}
                  for i, e in enumerate(transfers(200, seed=batch))]
        for event in events[5::20]:
            del event["device_id"]
        offenders = len(events[5::20])
        with paused(candidate):
            send(live, events, [])
        state = settled(live, len(events))
        counts = state["counts"]
        assert sum(counts.values()) == len(events) and counts["dropped"] == 0
        assert state["errors"] == {"status 422": counts["error"]}
        if batch == 1:  # one request per copy: only the events the candidate refuses
            assert counts["error"] == offenders
            assert state["requests_sent"] == len(events)
        else:  # a refused batch: every event in it
            assert counts["error"] > offenders
            assert state["requests_sent"] < len(events)
        compared += counts["match"] + counts["mismatch"]
        # the candidate decided exactly the events compared; a refused batch changed nothing
        ready = httpx.get(candidate.url + "/readyz", timeout=10).json()
        assert ready["detail"]["lsn"] == compared


def test_candidate_down_or_silent_costs_only_errors_and_drops(
        tmp_path: Path, services: list[ServiceProcess]) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts connections (the kernel does), never answers
    try:
        down = f"http://127.0.0.1:{free_port()}"
        live_down = ServiceProcess(tmp_path / "down", extra=["--mirror", down]).start()
        services.append(live_down)
        live_silent = ServiceProcess(
            tmp_path / "silent",
            write_config(tmp_path / "silent.yaml",
                         mirror={"queue": 3, "timeout": "300ms"}),
            extra=["--mirror", f"http://127.0.0.1:{silent.getsockname()[1]}"]).start()
        services.append(live_silent)
        events = list(generate_transfers(60, seed=9))
        singles, batches = events[:40], [events[40:50], events[50:]]
        for service in (live_down, live_silent):
            send(service, singles, batches)
            state = settled(service, len(events))
            counts = state["counts"]
            assert counts["match"] == counts["mismatch"] == 0
            assert counts["error"] + counts["dropped"] == len(events)
            assert sum(state["errors"].values()) == counts["error"]
            assert httpx.get(service.url + "/readyz", timeout=10).status_code == 200
        down_state = mirror_state(live_down)
        assert down_state["errors"] == {"connect": down_state["counts"]["error"]}
        silent_state = mirror_state(live_silent)
        assert set(silent_state["errors"]) == {"timeout"}
        assert silent_state["counts"]["dropped"] > 0  # 3 waiting at most, 300 ms each
        # still serving, every answer a decision
        more = list(generate_transfers(5, seed=10))
        assert len(send(live_silent, more, [])) == 5
    finally:
        silent.close()


def test_candidate_refusing_counts_errors_with_status(
        tmp_path: Path, services: list[ServiceProcess]) -> None:
    # the candidate knows no `transfer` scene: 404 for every copy; and the events of a
    # refused batch count one by one
    login_only = yaml.safe_load(EXAMPLE.read_text())
    del login_only["scenes"]["transfer"]
    (tmp_path / "login.yaml").write_text(yaml.safe_dump(login_only))
    candidate = ServiceProcess(tmp_path / "candidate", tmp_path / "login.yaml").start()
    services.append(candidate)
    live = ServiceProcess(tmp_path / "live", extra=["--mirror", candidate.url + "/"]).start()
    services.append(live)
    events = list(generate_transfers(30, seed=3))
    send(live, events[:10], [events[10:]])
    state = settled(live, 30)
    assert state["counts"] == {"match": 0, "mismatch": 0, "error": 30, "dropped": 0}
    assert state["errors"] == {"status 404": 30}
    assert metric(live, "riskengine_mirror_errors_total", 'reason="status 404"') == 30


def test_a_mirror_pointed_at_itself_mirrors_each_request_once(
        tmp_path: Path, services: list[ServiceProcess]) -> None:
    port = free_port()
    live = ServiceProcess(tmp_path / "self", extra=["--mirror", f"http://127.0.0.1:{port}"])
    live.port, live.url = port, f"http://127.0.0.1:{port}"
    services.append(live.start())
    events = list(generate_transfers(20, seed=4))
    send(live, events, [])
    state = settled(live, 20)
    # the copy is the same event id again: the stored decision, the same answer
    assert state["counts"] == {"match": 20, "mismatch": 0, "error": 0, "dropped": 0}
    ready = httpx.get(live.url + "/readyz", timeout=10).json()
    assert ready["detail"]["lsn"] == 20


@pytest.mark.parametrize("url", ["candidate:8000", "ftp://candidate", "http://",
                                 "http://host:99999", "http://host:80?x=1", "http://a b"])
def test_a_malformed_mirror_url_stops_the_start(tmp_path: Path, url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "riskengine", "serve", "--port", str(free_port()),
         "--state-dir", str(tmp_path / "state"), "--mirror", url],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--mirror" in done.stderr and "candidate's base URL" in done.stderr
