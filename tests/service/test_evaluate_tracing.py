"""Tracing of the evaluate requests: the spans read from the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from riskengine.exceptions import ConfigError
from riskengine.service import ServiceSettings, create_app
from riskengine.service.runtime import ServiceRuntime
from riskengine.tracing import TracingSettings, tracing_settings
from tests.service.helpers import ADMIN, transfer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def runtime(tmp_path: Path, exporter: InMemorySpanExporter) -> ServiceRuntime:
    return ServiceRuntime(ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                                          watch_config=False,
                                          tracing=TracingSettings(exporter=exporter)))


@pytest.fixture
def client(runtime: ServiceRuntime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as client:
        yield client


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_one_event_is_a_request_span_with_features_rules_and_log_children(
        client: TestClient, exporter: InMemorySpanExporter) -> None:
    reply = client.post("/v1/transfer/evaluate", json=transfer(1))
    assert reply.status_code == 200
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"riskengine.evaluate", "riskengine.features", "riskengine.rules",
                          "riskengine.decision_log"}
    root = spans["riskengine.evaluate"]
    assert root.parent is None and root.kind is SpanKind.SERVER
    for name in ("riskengine.features", "riskengine.rules", "riskengine.decision_log"):
        child = spans[name]
        assert parent_of(child) == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    features, rules = spans["riskengine.features"], spans["riskengine.rules"]
    assert root.start_time <= features.start_time <= features.end_time  # type: ignore[operator]
    assert features.end_time == rules.start_time
    assert rules.end_time <= root.end_time  # type: ignore[operator]
    body = reply.json()
    attrs = root.attributes or {}
    assert attrs["riskengine.scene"] == "transfer"
    assert attrs["riskengine.event_id"] == "e1"
    assert attrs["riskengine.decision"] == body["decision"]
    assert attrs["riskengine.score"] == body["score"]
    assert attrs["riskengine.arm"] == body["arm"]
    assert attrs["riskengine.ruleset_version"] == body["ruleset_version"]
    assert attrs["riskengine.duplicate"] is False
    assert attrs["riskengine.degraded"] is False
    assert attrs["riskengine.late"] is False
    assert attrs["http.response.status_code"] == 200
    assert root.status.status_code is StatusCode.UNSET


def test_a_duplicate_has_no_features_rules_or_log_span(
        client: TestClient, exporter: InMemorySpanExporter) -> None:
    assert client.post("/v1/transfer/evaluate", json=transfer(1)).status_code == 200
    exporter.clear()
    assert client.post("/v1/transfer/evaluate", json=transfer(1)).status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "riskengine.evaluate"
    assert (span.attributes or {})["riskengine.duplicate"] is True


def test_an_incoming_traceparent_is_the_parent(client: TestClient,
                                              exporter: InMemorySpanExporter) -> None:
    reply = client.post("/v1/transfer/evaluate", json=transfer(1),
                        headers={"traceparent": TRACEPARENT, "tracestate": "vendor=x"})
    assert reply.status_code == 200
    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    root = by_name(spans)["riskengine.evaluate"]
    assert root.parent is not None and root.parent.is_remote
    assert format(root.parent.span_id, "016x") == PARENT_ID
    assert root.context.trace_state.get("vendor") == "x"


@pytest.mark.parametrize("value", [
    "garbage", "", "00-" + "0" * 32 + "-" + PARENT_ID + "-01",  # all-zero trace id
    "00-xyz-abc-01", "ff-" + TRACE_ID + "-" + PARENT_ID + "-01",  # version ff is invalid
    TRACEPARENT[:-1], "00-" + TRACE_ID + "-" + PARENT_ID + "-01-" + "a" * 10_000,
    b"\xe9\xe9", TRACEPARENT + "," + TRACEPARENT])
def test_a_malformed_traceparent_starts_a_new_trace(
        client: TestClient, exporter: InMemorySpanExporter, value: str | bytes) -> None:
    reply = client.post("/v1/transfer/evaluate", json=transfer(1),
                        headers={"traceparent": value, "tracestate": "=,,=\x7f"})
    assert reply.status_code == 200
    root = by_name(exporter.get_finished_spans())["riskengine.evaluate"]
    assert root.parent is None
    assert format(root.context.trace_id, "032x") != TRACE_ID


def test_a_batch_is_one_span_with_a_bounded_number_of_children(
        client: TestClient, exporter: InMemorySpanExporter) -> None:
    events = [transfer(i, amount=10.0 + i) for i in range(200)]
    reply = client.post("/v1/transfer/evaluate/batch", json=events,
                        headers={"traceparent": TRACEPARENT})
    assert reply.status_code == 200
    decisions = reply.json()
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"riskengine.evaluate", "riskengine.decide",
                          "riskengine.decision_log"}
    root = spans["riskengine.evaluate"]
    assert format(root.context.trace_id, "032x") == TRACE_ID
    attrs = root.attributes or {}
    assert attrs["riskengine.batch"] is True
    assert attrs["riskengine.events"] == 200
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d["decision"]] = counts.get(d["decision"], 0) + 1
    assert {k.rsplit(".", 1)[1]: v for k, v in attrs.items()
            if k.startswith("riskengine.decisions.")} == counts
    decide = spans["riskengine.decide"]
    assert parent_of(decide) == root.context.span_id
    assert (decide.attributes or {})["riskengine.events"] == 200
    assert (spans["riskengine.decision_log"].attributes or {})["riskengine.records"] == 200


def test_a_decision_log_failure_is_recorded_on_the_spans(
        client: TestClient, runtime: ServiceRuntime, exporter: InMemorySpanExporter) -> None:
    runtime.log.close()
    reply = client.post("/v1/transfer/evaluate", json=transfer(1))
    assert reply.status_code == 503
    spans = by_name(exporter.get_finished_spans())
    log_span = spans["riskengine.decision_log"]
    assert log_span.status.status_code is StatusCode.ERROR
    assert any(event.name == "exception" for event in log_span.events)
    root = spans["riskengine.evaluate"]
    assert root.status.status_code is StatusCode.ERROR
    attrs = root.attributes or {}
    assert attrs["http.response.status_code"] == 503
    assert "decision log is unavailable" in str(attrs["riskengine.error"])


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400), (b"[1, 2]", 422), (b'{"event_id": 5, "amount": "x"}', 422)])
def test_a_refused_request_is_a_span_with_its_status_and_reason(
        client: TestClient, exporter: InMemorySpanExporter, body: bytes, status: int) -> None:
    reply = client.post("/v1/transfer/evaluate", content=body,
                        headers={"content-type": "application/json",
                                 "traceparent": TRACEPARENT})
    assert reply.status_code == status
    (span,) = exporter.get_finished_spans()
    attrs = span.attributes or {}
    assert attrs["http.response.status_code"] == status
    assert attrs["riskengine.error"]
    assert span.status.status_code is StatusCode.UNSET  # a client's error, not ours
    assert client.post("/v1/transfer/evaluate", json=transfer(2)).status_code == 200


TRACING_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter",
                   "riskengine.tracing.otel", "riskengine.service.traced_lane")
"""What tracing loads. Other parts of OpenTelemetry are our dependencies' own: FastAPI
imports the API package, and redis-py the SDK's metrics when the SDK is installed,
whatever riskengine does; they only make spans or metrics once configured."""


def _modules_after(argv: list[str], env: dict[str, Any]) -> str:
    code = ("import sys\n"
            "from riskengine.cli import app\n"
            f"sys.argv = {['riskengine', *argv]!r}\n"
            "import riskengine.service.server as server\n"
            "def stop(settings, **kw):\n"
            "    srv, rt = build(settings, **kw)\n"
            "    srv.run = lambda: print(sorted(m for m in sys.modules "
            f"if m.startswith({TRACING_MODULES!r})))\n"
            "    return srv, rt\n"
            "build = server.build_server\n"
            "server.build_server = stop\n"
            "try:\n"
            "    app()\n"
            "except SystemExit:\n"
            "    pass\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_serve_without_tracing_loads_neither_the_sdk_nor_the_traced_lane(
        tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "RISKENGINE_ADMIN_TOKEN": ADMIN}
    argv = ["serve", "--state-dir", str(tmp_path / "s1"), "--no-watch"]
    assert _modules_after(argv, env) == "[]"
    on = _modules_after([*argv, "--otel-endpoint", "http://127.0.0.1:9"], env)
    assert "opentelemetry.sdk.trace" in on and "riskengine.service.traced_lane" in on
    env_on = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    assert "opentelemetry.sdk.trace" in _modules_after(argv, env_on)
    disabled = {**env_on, "OTEL_SDK_DISABLED": "true"}
    assert _modules_after(argv, disabled) == "[]"


@pytest.mark.parametrize("url", ["127.0.0.1:4318", "ftp://x", "http://", "not a url"])
def test_serve_refuses_an_endpoint_that_is_not_an_http_url(tmp_path: Path, url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "riskengine", "serve", "--state-dir",
                           str(tmp_path / "s"), "--otel-endpoint", url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "--otel-endpoint" in done.stderr


def test_tracing_is_on_with_the_flag_or_an_endpoint_variable() -> None:
    assert tracing_settings(None, "svc", {}) is None
    assert tracing_settings(None, "svc", {"OTEL_SERVICE_NAME": "x"}) is None
    on = tracing_settings(None, "svc", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert on == TracingSettings(endpoint=None, service="svc")
    assert tracing_settings(None, "svc", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c"})
    assert tracing_settings(None, "svc", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                          "OTEL_SDK_DISABLED": "TRUE"}) is None
    flag = tracing_settings("https://c:4318/", "svc", {"OTEL_SDK_DISABLED": "true"})
    assert flag == TracingSettings(endpoint="https://c:4318", service="svc")
    for bad in ("c:4318", "ftp://c", "http://", ""):
        with pytest.raises(ConfigError, match="--otel-endpoint"):
            tracing_settings(bad, "svc", {})


def test_the_workers_of_a_multi_process_service_trace_too() -> None:
    settings = ServiceSettings(tracing=TracingSettings(endpoint="http://c:4318"))
    assert ServiceSettings.from_env(settings.to_env()).tracing == \
        TracingSettings(endpoint="http://c:4318")
    assert ServiceSettings.from_env(ServiceSettings().to_env()).tracing is None


def test_requests_the_sampler_leaves_out_make_no_spans(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    exporter = InMemorySpanExporter()
    runtime = ServiceRuntime(ServiceSettings(state_dir=tmp_path / "state", admin_token=ADMIN,
                                             watch_config=False,
                                             tracing=TracingSettings(exporter=exporter)))
    with TestClient(create_app(runtime=runtime)) as client:
        assert client.post("/v1/transfer/evaluate", json=transfer(1)).status_code == 200
        batch = client.post("/v1/transfer/evaluate/batch", json=[transfer(2), transfer(3)])
        assert batch.status_code == 200 and len(batch.json()) == 2
        # a sampled parent is still followed
        assert client.post("/v1/transfer/evaluate", json=transfer(4),
                           headers={"traceparent": TRACEPARENT}).status_code == 200
    assert {s.name for s in exporter.get_finished_spans()} == {
        "riskengine.evaluate", "riskengine.features", "riskengine.rules",
        "riskengine.decision_log"}
    assert {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()} == \
        {TRACE_ID}
