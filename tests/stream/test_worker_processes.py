"""`riskengine worker --processes N`: N consumers of one group in N processes, each with
the in-memory state of its partitions."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from riskengine.cli import app
from riskengine.engine import Engine
from riskengine.stream import StreamError, WorkerStats
from riskengine.stream.processes import check_processes, process_settings, total
from riskengine.stream.runner import build_settings
from riskengine.stream.section import WorkerSection, worker_section
from riskengine.synth import generate_transfers
from tests.servers import free_port
from tests.stream.kafkatools import finish, metric, new_topics, produce_events, read_all

ROOT = Path(__file__).resolve().parents[2]
SCENE: dict[str, Any] = {  # every feature keyed by the payer: the topic's key
    "lateness": "5m",
    "features": [
        "count(pay_account.history,1h)",
        "sum(amount#pay_account.history,24h)",
        "count_distinct(rcv_account#pay_account.history,1h)",
        {"name": "pay_30d", "func": "count", "by": ["pay_account"], "window": "30d",
         "kind": "window", "hop": "1h"},
    ],
    "rules": [{"id": "busy", "when": 'features["count(pay_account.history,1h)"] > 3',
               "score": 60}],
    "policy": {"review_at": 50, "reject_at": 80},
}


def _consecutive_free_ports(n: int) -> int:
    """A port P such that P … P+n−1 on 127.0.0.1 are free right now."""
    for _ in range(100):
        first = free_port()
        if first + n - 1 > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + n):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise AssertionError(f"no {n} consecutive free ports")


def _wait_assigned(ports: list[int], timeout: float = 90.0) -> None:
    """Until each process reports one partition of its own (the group has settled)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = [metric(port, "riskengine_stream_assigned_partitions") for port in ports]
        if seen == [1.0] * len(ports):
            return
        assert time.monotonic() < deadline, f"assigned partitions per process: {seen}"
        time.sleep(0.2)


def test_two_processes_over_two_partitions_decide_each_event_once(
        bootstrap: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"scenes": {"transfer": SCENE}}), encoding="utf-8")
    topics = new_topics(bootstrap, events=2, decisions=1)
    port = _consecutive_free_ports(2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "riskengine", "worker", "--processes", "2",
         "--config", str(config), "--group", "two",
         "--source", f"kafka://{bootstrap}/{topics['events']}",
         "--sink", f"kafka://{bootstrap}/{topics['decisions']}",
         "--state-dir", str(tmp_path / "state"), "--metrics-port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_assigned([port, port + 1])
        events = [{k: v for k, v in e.items() if k != "label"}
                  for e in generate_transfers(3000, 8)]
        produce_events(bootstrap, topics["events"], events)  # keyed by pay_account
        messages = read_all(bootstrap, topics["decisions"], 1, len(events), timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
    out, _ = finish(worker)
    decisions = [orjson.loads(m.value() or b"") for m in messages]
    assert len(decisions) == len(events)  # each event decided once
    assert {d["event_id"] for d in decisions} == {e["event_id"] for e in events}
    assert not any(d["redelivery"] for d in decisions)
    # each partition's decisions are a replay of that partition alone, in its order
    by_id = {e["event_id"]: e for e in events}
    partitions = {d["source"]["partition"] for d in decisions}
    assert partitions == {0, 1}
    for partition in partitions:
        mine = sorted((d for d in decisions if d["source"]["partition"] == partition),
                      key=lambda d: d["source"]["offset"])
        alone = Engine.from_config(config)
        expected = [alone.evaluate("transfer", by_id[d["event_id"]]) for d in mine]
        assert [d["features"] for d in mine] == [e.features for e in expected]
        assert [d["decision"] for d in mine] == [e.decision for e in expected]
    lines = out.splitlines()
    each = [int(line.split("decided ")[1].split(" ")[0].replace(",", ""))
            for line in lines if line.startswith("worker process ")]
    assert len(each) == 2 and all(n > 0 for n in each) and sum(each) == len(events)
    assert f"decided {len(events):,} events" in lines[-1]
    for index in (0, 1):  # each process checkpointed its own state
        assert (tmp_path / "state" / f"worker-{index}" / "snapshot.pkl").is_file()


def _settings(**extra: Any) -> Any:
    options: dict[str, Any] = {"state_dir": None, **extra}
    return build_settings(source="kafka://h:1/in", sink="kafka://h:1/out", dead_letter=None,
                          group="g", scene="transfer", max_events=None, idle_exit_s=None,
                          batch_size=10, kafka_options=[], **options)


def test_each_process_has_its_own_checkpoint_folder_and_metrics_port(
        tmp_path: Path) -> None:
    settings = _settings(state_dir=tmp_path, metrics_port=9100)
    second = process_settings(settings, 1)
    assert (second.state_dir, second.metrics_port) == (tmp_path / "worker-1", 9101)
    assert process_settings(_settings(), 3).state_dir is None


@pytest.mark.parametrize(("n", "extra", "message"), [
    (0, {}, "between 1 and 64"),
    (65, {}, "between 1 and 64"),
    (2, {"from_offset": 0}, "replay"),
    (3, {"metrics_port": 65534}, "no room"),
])
def test_process_counts_that_cannot_work_are_refused(n: int, extra: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(StreamError, match=message):
        check_processes(_settings(**extra), n)


def test_the_config_key_and_its_bad_values() -> None:
    assert worker_section({"processes": 4}) == WorkerSection(processes=4)
    for bad in (0, -1, 65, True, "2", 2.0, [2]):
        with pytest.raises(StreamError, match="worker processes"):
            worker_section({"processes": bad})


def test_the_stats_of_the_processes_add_up() -> None:
    one = WorkerStats(decided=3, redelivered=1, commits=2, by_decision={"accept": 3})
    two = WorkerStats(decided=2, dead_lettered=1, by_decision={"accept": 1, "review": 1})
    both = total([one, two])
    assert (both.decided, both.redelivered, both.dead_lettered, both.commits) == (5, 1, 1, 2)
    assert both.by_decision == {"accept": 4, "review": 1}


def test_processes_are_for_kafka_sources(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["worker", "--processes", "2", "--source",
                                      "redis-stream://127.0.0.1:1/0/in", "--sink",
                                      "redis-stream://127.0.0.1:1/0/out"])
    assert result.exit_code == 2
    assert "kafka://" in result.output and "Traceback" not in result.output
