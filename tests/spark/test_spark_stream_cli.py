"""`riskengine spark-stream` refuses bad input before Spark starts: a clear message naming
the problem, exit code 2 for a mistake on the command line (URL, config, rules, scene,
checkpoint folder), 1 when a broker does not answer or the source topic is missing; and
nothing is written to the checkpoint folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from riskengine.spark import stream_settings
from riskengine.spark.kafka_sink import LEDGER_NAME
from riskengine.spark.stream_settings import JOB_FILE
from tests.cli.clitools import run
from tests.servers import free_port, kafka_server
from tests.stream.kafkatools import new_topics


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with kafka_server() as address:
        yield address


def _args(bootstrap: str, topics: dict[str, str], checkpoint: Path, *extra: str | Path
          ) -> list[str | Path]:
    return ["spark-stream", "--source", f"kafka://{bootstrap}/{topics['events']}",
            "--sink", f"kafka://{bootstrap}/{topics['decisions']}",
            "--checkpoint", checkpoint, *extra]


def _refused(args: list[str | Path], code: int, message: str) -> None:
    result = run(*args)
    assert result.exit_code == code, (args, result.output)
    assert message in result.stderr, (args, result.stderr)
    assert "Traceback" not in result.output


def test_command_line_mistakes_exit_2(bootstrap: str, tmp_path: Path) -> None:
    topics = new_topics(bootstrap, events=1, decisions=1)
    checkpoint = tmp_path / "ck"
    bad_rules = tmp_path / "bad-rules.yaml"
    bad_rules.write_text("scenes:\n  transfer:\n    features: ['count(pay_account.history,1h)']\n"
                         "    rules:\n      - {id: r1, when: '__import__(\"os\")', score: 1}\n")
    not_yaml = tmp_path / "not-yaml.yaml"
    not_yaml.write_text("scenes: [unclosed\n")
    source = f"kafka://{bootstrap}/{topics['events']}"
    cases: list[tuple[list[str | Path], str]] = [
        (["spark-stream", "--source", "http://x/y", "--sink", source, "--checkpoint",
          checkpoint], "--source: expected kafka://host:port/topic"),
        (["spark-stream", "--source", source, "--sink", f"kafka://{bootstrap}/",
          "--checkpoint", checkpoint], "--sink: "),
        (["spark-stream", "--source", source, "--sink", source, "--checkpoint", checkpoint],
         "cannot also be the sink"),
        (_args(bootstrap, topics, checkpoint, "--dead-letter", "kafka://nohost/t"),
         "--dead-letter: "),
        (_args(bootstrap, topics, checkpoint, "--scene", "nope"), "unknown scene 'nope'"),
        (_args(bootstrap, topics, checkpoint, "--config", tmp_path / "missing.yaml"),
         "does not exist"),
        (_args(bootstrap, topics, checkpoint, "--config", bad_rules), "rule 'r1'"),
        (_args(bootstrap, topics, checkpoint, "--config", not_yaml), "invalid config"),
        (_args(bootstrap, topics, checkpoint, "--once", "--available-now"),
         "not both"),
        (_args(bootstrap, topics, checkpoint, "-X", "novalue"), "expected KEY=VALUE"),
    ]
    for args, message in cases:
        _refused(args, 2, message)
    assert not checkpoint.exists()


def test_bad_checkpoint_folders_exit_2(bootstrap: str, tmp_path: Path) -> None:
    topics = new_topics(bootstrap, events=1, decisions=1)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    _refused(_args(bootstrap, topics, a_file), 2, "is a file")
    _refused(_args(bootstrap, topics, a_file / "below"), 2, "is a file")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _refused(_args(bootstrap, topics, foreign), 2, "is not empty and is not the checkpoint")
    other = tmp_path / "other-job"
    other.mkdir()
    (other / JOB_FILE).write_bytes(orjson.dumps({"source": "kafka://h:1/else",
                                                 "scene": "transfer"}))
    _refused(_args(bootstrap, topics, other), 2, "belongs to the job reading kafka://h:1/else")
    ahead = tmp_path / "ahead"  # Spark's logs deleted by hand, the ledger kept
    ahead.mkdir()
    (ahead / JOB_FILE).write_bytes(orjson.dumps({
        "source": f"kafka://{bootstrap}/{topics['events']}", "scene": "transfer"}))
    (ahead / LEDGER_NAME).write_bytes(orjson.dumps({"started": 3, "done": 3}))
    _refused(_args(bootstrap, topics, ahead), 2, "offset log in")
    (ahead / LEDGER_NAME).write_text("[")
    _refused(_args(bootstrap, topics, ahead), 2, "cannot be read")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / JOB_FILE).write_text("{not json")
    _refused(_args(bootstrap, topics, broken), 2, "cannot be read")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            _refused(_args(bootstrap, topics, locked / "ck"), 2, "cannot be written")
        finally:
            locked.chmod(0o700)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_an_unreachable_broker_or_missing_topic_exits_1(
        bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_settings, "BROKER_TIMEOUT_S", 1.0)
    topics = new_topics(bootstrap, events=1, decisions=1)
    checkpoint = tmp_path / "ck"
    away = f"127.0.0.1:{free_port()}"
    _refused(["spark-stream", "--source", f"kafka://{away}/t", "--sink",
              f"kafka://{bootstrap}/{topics['decisions']}", "--checkpoint", checkpoint],
             1, f"cannot reach the broker at {away}")
    _refused(_args(bootstrap, {**topics, "events": "no-such-topic"}, checkpoint), 1,
             "the source topic 'no-such-topic' does not exist")
    assert not checkpoint.exists()
