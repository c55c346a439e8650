"""The Kafka worker's consumer group: the session timeout (option, config key, librdkafka's
own setting) and a first assignment within seconds with the defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import OFFSET_INVALID
from typer.testing import CliRunner

from riskengine.cli import app
from riskengine.config import load_config
from riskengine.exceptions import ConfigError
from riskengine.stream import StreamError, WorkerSettings
from riskengine.stream.runner import build_settings
from riskengine.stream.section import WorkerSection, worker_section, worker_state_timeout
from riskengine.synth import generate_transfers
from tests.servers import free_port
from tests.stream.kafkatools import committed, finish, new_topics, produce_events, read_all

ROOT = Path(__file__).resolve().parents[2]
FIRST_DECISION_WITHIN_S = 15.0
"""A bound far above what a worker needs (start, a 3 s join window on the test broker,
one decision) and far below the 23 s librdkafka's own 45 s session timeout costs."""


def _settings(*options: str, session_timeout: str | None = None,
              section: WorkerSection | None = None, source: str = "kafka://h:1/in"
              ) -> Any:
    return build_settings(source=source, sink=source.replace("in", "out"),
                          dead_letter=None, group="g", scene="transfer", state_dir=None,
                          max_events=None, idle_exit_s=None, batch_size=10,
                          kafka_options=list(options), session_timeout=session_timeout,
                          section=section)


def test_a_worker_with_the_defaults_is_assigned_and_decides_within_seconds(
        bootstrap: str) -> None:
    event = {k: v for k, v in next(generate_transfers(1, 3)).items() if k != "label"}
    topics = new_topics(bootstrap, events=1, decisions=1)
    produce_events(bootstrap, topics["events"], [event])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "riskengine", "worker",
         "--source", f"kafka://{bootstrap}/{topics['events']}",
         "--sink", f"kafka://{bootstrap}/{topics['decisions']}",
         "--group", "first-assignment", "--max-events", "1"],  # no group options at all
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, _ = finish(worker, timeout=FIRST_DECISION_WITHIN_S)
    assert "decided 1 events" in out
    [message] = read_all(bootstrap, topics["decisions"], 1, 1)
    assert orjson.loads(message.value() or b"")["event_id"] == event["event_id"]


def test_the_session_timeout_defaults_to_six_seconds() -> None:
    settings = _settings()
    assert isinstance(settings, WorkerSettings)
    assert settings.session_timeout_ms == 6000
    assert "session.timeout.ms" not in settings.consumer_options


def test_the_option_wins_over_the_config_key() -> None:
    assert _settings(section=WorkerSection(8000)).session_timeout_ms == 8000
    assert _settings(session_timeout="10s",
                     section=WorkerSection(8000)).session_timeout_ms == 10_000
    assert _settings(session_timeout="2500ms").session_timeout_ms == 2500


def test_librdkafkas_own_setting_is_the_session_timeout() -> None:
    settings = _settings("consumer:session.timeout.ms=7000",
                         section=WorkerSection(8000))
    assert settings.session_timeout_ms == 7000
    assert "session.timeout.ms" not in settings.consumer_options  # set once, by the worker
    with pytest.raises(StreamError, match="not both"):
        _settings("consumer:session.timeout.ms=7000", session_timeout="7s")


@pytest.mark.parametrize(("options", "timeout", "named"), [
    ((), "0s", "--session-timeout"),
    ((), "2h", "--session-timeout"),
    ((), "soon", "--session-timeout"),
    ((), "-5s", "--session-timeout"),
    ((), "9" * 400 + "s", "--session-timeout"),
    (("consumer:session.timeout.ms=abc",), None, "session.timeout.ms"),
    (("consumer:session.timeout.ms=-1",), None, "session.timeout.ms"),
    (("consumer:session.timeout.ms=999",), None, "session.timeout.ms"),
])
def test_bad_session_timeouts_are_refused_naming_the_option(
        options: tuple[str, ...], timeout: str | None, named: str) -> None:
    with pytest.raises(StreamError, match=named):
        _settings(*options, session_timeout=timeout)


def test_a_redis_stream_has_no_session_timeout() -> None:
    with pytest.raises(StreamError, match="kafka://"):
        _settings(source="redis-stream://h:1/0/in", session_timeout="6s")


def test_the_worker_section() -> None:
    assert worker_section(None) == WorkerSection()
    assert worker_section({"session_timeout": "9s"}) == WorkerSection(9000)
    assert worker_section({"session_timeout": 12000}) == WorkerSection(12000)
    assert worker_section({"state_timeout": "2s"}) == WorkerSection(state_timeout_ms=2000)
    assert worker_section({"state_timeout": 250}) == WorkerSection(state_timeout_ms=250)


def test_the_state_timeout_option_wins_and_needs_shared_state() -> None:
    url, section = "redis://127.0.0.1:6379/0", WorkerSection(state_timeout_ms=500)
    assert worker_state_timeout("2s", url, section) == 2000
    assert worker_state_timeout(None, url, section) == 500
    assert worker_state_timeout(None, url, WorkerSection()) is None  # the engine's 50 ms
    assert worker_state_timeout(None, None, section) == 500  # unused in memory
    with pytest.raises(StreamError, match="needs --state"):
        worker_state_timeout("2s", None, WorkerSection())
    for bad in ("0ms", "2m", "soon", "-1s", "9" * 400 + "s"):
        with pytest.raises(StreamError, match="--state-timeout"):
            worker_state_timeout(bad, url, WorkerSection())


@pytest.mark.parametrize(("section", "named"), [
    ({"session_timeout": "fast"}, "worker session_timeout"),
    ({"session_timeout": True}, "worker session_timeout"),
    ({"session_timeout": [6]}, "worker session_timeout"),
    ({"session_timeout": 10}, "worker session_timeout"),
    ({"session_timeout": "<script>alert(1)</script>"}, "worker session_timeout"),
    ({"sesion_timeout": "6s"}, "unknown keys"),
    ({"state_timeout": "0ms"}, "worker state_timeout"),
    ({"state_timeout": "5m"}, "worker state_timeout"),
    ({"state_timeout": True}, "worker state_timeout"),
    ({"state_timeout": "later"}, "worker state_timeout"),
])
def test_bad_worker_sections_are_refused(section: dict[str, Any], named: str) -> None:
    with pytest.raises(StreamError, match=named):
        worker_section(section)


def test_the_config_keeps_the_worker_section(tmp_path: Path) -> None:
    base = yaml.safe_load((ROOT / "riskengine/examples/config.yaml").read_text())
    assert load_config(base).worker == {}
    assert load_config({**base, "worker": {"session_timeout": "7s"}}).worker == {
        "session_timeout": "7s"}
    with pytest.raises(ConfigError, match="'worker' must be a mapping"):
        load_config({**base, "worker": "7s"})


def test_the_cli_refuses_a_bad_session_timeout_clearly(tmp_path: Path) -> None:
    base = {"scenes": {"transfer": {"features": ["count(pay_account.history,1h)"],
                                    "rules": []}}}
    for args, config in (
            (["--session-timeout", "forever"], None),
            ([], {**base, "worker": {"session_timeout": "1ms"}})):
        extra: list[str] = []
        if config is not None:
            path = tmp_path / "config.yaml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            extra = ["--config", str(path)]
        result = CliRunner().invoke(app, ["worker", "--source", "kafka://127.0.0.1:1/in",
                                          "--sink", "kafka://127.0.0.1:1/out", *extra,
                                          *args])
        assert result.exit_code != 0
        assert "session" in result.output and "Traceback" not in result.output


def test_the_cli_refuses_a_bad_state_timeout_clearly(tmp_path: Path) -> None:
    """Refused before anything connects: without --state, out of range, or from the
    config's worker section."""
    config = tmp_path / "config.yaml"
    base = {"scenes": {"transfer": {"features": ["count(pay_account.history,1h)"],
                                    "rules": []}},
            "worker": {"state_timeout": "2h"}}
    config.write_text(yaml.safe_dump(base), encoding="utf-8")
    for args, named in ((["--state-timeout", "1s"], "needs --state"),
                        (["--state", "redis://127.0.0.1:1/0", "--state-timeout", "0ms"],
                         "--state-timeout must be from 1ms to 60s"),
                        (["--config", str(config)], "worker state_timeout"),
                        (["--state", "redis://127.0.0.1:1/0?buckets=-1"],
                         "buckets must be a whole number")):
        result = CliRunner().invoke(app, ["worker", "--source", "kafka://127.0.0.1:1/in",
                                          "--sink", "kafka://127.0.0.1:1/out", *args])
        assert result.exit_code == 2, result.output
        assert named in result.output and "Traceback" not in result.output


def test_decisions_the_broker_did_not_take_stop_the_worker_and_commit_nothing(
        bootstrap: str) -> None:
    # delivery reports come for failures only: a sink nobody listens on must still fail
    events = [{k: v for k, v in e.items() if k != "label"} for e in generate_transfers(20, 5)]
    topics = new_topics(bootstrap, events=1)
    produce_events(bootstrap, topics["events"], events)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "riskengine", "worker",
         "--source", f"kafka://{bootstrap}/{topics['events']}",
         "--sink", f"kafka://127.0.0.1:{free_port()}/decisions",
         "--group", "nobody-listens", "--max-events", "20",
         "-X", "producer:message.timeout.ms=2000"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 1, err[-2000:]
    assert "the broker did not take the decisions" in err
    assert committed(bootstrap, "nobody-listens", topics["events"], 1) == [OFFSET_INVALID]
