"""`riskengine generate`: deterministic, labelled, realistic enough to exercise the rules."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from riskengine.synth import FIELDS, LABELS, generate_transfers
from tests.cli.clitools import EVENTS, Generated, read_jsonl, run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, fmt: str) -> None:
    paths = [tmp_path / f"{name}.{fmt}" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (5, 5, 6), strict=True):
        result = run("generate", "--events", 3_000, "--seed", seed, "-o", path)
        assert result.exit_code == 0, result.output
    first, again, other = (p.read_bytes() for p in paths)
    assert first == again
    assert first != other


def test_events_have_the_transfer_fields_and_every_label(generated: Generated) -> None:
    events = read_jsonl(generated.jsonl)
    assert len(events) == EVENTS
    assert all(tuple(e) == FIELDS for e in events)
    assert {e["label"] for e in events} == set(LABELS)
    assert len({e["event_id"] for e in events}) == EVENTS
    assert all(e["type"] == "transfer" and isinstance(e["timestamp"], int) for e in events)
    assert all(isinstance(e["amount"], float) and e["amount"] > 0 for e in events)


def test_three_formats_hold_the_same_events(generated: Generated) -> None:
    events = read_jsonl(generated.jsonl)
    assert pq.read_table(generated.parquet).to_pylist() == events
    lines = generated.csv.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(FIELDS)
    assert len(lines) == EVENTS + 1


def test_time_increases_with_a_few_events_up_to_two_minutes_late(generated: Generated) -> None:
    latest = 0
    late = []
    for event in read_jsonl(generated.jsonl):
        if event["timestamp"] < latest:
            late.append(latest - event["timestamp"])
        latest = max(latest, event["timestamp"])
    assert 0 < len(late) < EVENTS * 0.01
    assert max(late) <= 2 * 60_000


def test_attack_patterns_have_their_shape(generated: Generated) -> None:
    events = read_jsonl(generated.jsonl)
    drains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["label"] == "mule_drain":
            drains[event["pay_account"]].append(event)
        if event["label"] == "card_testing":
            assert event["amount"] < 10
        if event["label"] == "account_takeover":
            assert event["amount"] >= 2_000
    assert drains
    for burst in drains.values():
        times = [e["timestamp"] for e in burst]
        assert len(burst) >= 100
        assert max(times) - min(times) < 3_600_000
        assert len({e["rcv_account"] for e in burst}) <= 2
        assert all(950 <= e["amount"] <= 1_500 for e in burst)
    # The victims do nothing else while they are being drained.
    victims = set(drains)
    assert not any(e["pay_account"] in victims and e["label"] == "legit"
                   and min(x["timestamp"] for x in drains[e["pay_account"]])
                   <= e["timestamp"] <= max(x["timestamp"] for x in drains[e["pay_account"]])
                   for e in events)


def test_generator_is_a_stream_with_exact_count() -> None:
    for n in (0, 1, 999, 1_000, 2_500):
        assert sum(1 for _ in generate_transfers(n, seed=3)) == n


def test_start_sets_the_first_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    result = run("generate", "-n", 10, "-o", path, "--start", "2030-06-01T12:00:00+02:00")
    assert result.exit_code == 0, result.output
    first = read_jsonl(path)[0]["timestamp"]
    start = 1_906_538_400_000  # 2030-06-01T10:00:00Z
    assert start <= first < start + 3_600_000


@pytest.mark.parametrize(("args", "message"), [
    (["--scene", "login"], "transfer traffic only"),
    (["--start", "yesterday"], "--start"),
    (["-o", "events.txt"], "cannot tell the format"),
    (["-o", "no/such/dir/events.jsonl"], "does not exist"),
])
def test_generate_usage_mistakes_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    if "-o" not in args:
        args = [*args, "-o", "events.jsonl"]
    result = run("generate", "-n", 10, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "riskengine", "--version"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("riskengine ")
    done = subprocess.run([sys.executable, "-m", "riskengine", "--help"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for command in ("generate", "replay", "validate", "demo"):
        assert command in done.stdout
