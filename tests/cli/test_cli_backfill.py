"""`riskengine backfill`: every input format, bad rows counted and never fatal, usage
mistakes refused before anything is written, failures midway leaving nothing behind."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from riskengine.engine import Engine
from tests.backfilling import write_jsonl
from tests.cli.clitools import Generated, read_jsonl, run
from tests.cli.test_cli_replay import T0, bad_rule_config, transfer, write_lines
from tests.servers import free_port


def restored(state_dir: Path) -> Engine:
    return Engine.from_config(None).restore(state_dir / "snapshot.pkl")


def replayed_engine(events: list[dict[str, Any]]) -> Engine:
    engine = Engine.from_config(None)
    for event in events:
        engine.evaluate("transfer", {k: v for k, v in event.items() if k != "label"})
    return engine


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_format_gives_the_state_of_a_replay(generated: Generated, tmp_path: Path,
                                                  fmt: str) -> None:
    state_dir = tmp_path / "state"
    result = run("backfill", getattr(generated, fmt), "--state-dir", state_dir,
                 "--limit", 1_500)
    assert result.exit_code == 0, result.output
    engine = restored(state_dir)
    reference = replayed_engine(read_jsonl(generated.jsonl)[:1_500])
    assert engine.lsn == reference.lsn == 1_500
    assert engine.stats() == reference.stats()
    assert engine.clock("transfer") == reference.clock("transfer")
    keys = reference.stats()["transfer"]["entities"]
    for text in ("rows read", "1,500", "keys", f"{keys:,}", "scene clock", "last LSN"):
        assert text in result.stdout


def test_bad_rows_are_counted_printed_and_skipped(tmp_path: Path) -> None:
    good = [transfer(event_id="e1"), transfer(event_id="e11", timestamp=T0 + 2_000)]
    source = write_lines(tmp_path / "in.jsonl", [
        json.dumps(good[0]),                                       # 1 good
        '{"event_id": "e2", "timestamp": ',                        # 2 not JSON
        json.dumps(transfer(event_id="e3", amount="abc")),         # 3 wrong type
        "[1, 2, 3]",                                               # 4 not an object
        json.dumps(transfer(event_id="e5", timestamp="2026-01-05T00:00:00")),
        json.dumps(good[1]),                                       # 6 good
    ])
    state_dir = tmp_path / "state"
    errors = tmp_path / "bad.jsonl"
    result = run("backfill", source, "--state-dir", state_dir, "--errors", errors)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "row 2:" in result.stderr and "row 3:" in result.stderr
    assert "'amount'" in result.stderr
    assert re.search(r"bad rows\s+│\s+4 \(event 2, input 2\)", result.stdout)
    assert [e["row"] for e in read_jsonl(errors)] == [2, 3, 4, 5]
    engine = restored(state_dir)
    assert engine.lsn == 2
    assert engine.stats() == replayed_engine(good).stats()


def test_more_bad_rows_than_shown_say_where_the_rest_go(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", ["{not json"] * 13)
    result = run("backfill", source, "--state-dir", tmp_path / "state")
    assert result.exit_code == 0, result.output
    assert "row 10:" in result.stderr and "row 11:" not in result.stderr
    assert "--errors FILE" in result.stderr
    assert "none (no event taken on time)" in result.stdout
    assert restored(tmp_path / "state").lsn == 0


def test_usage_mistakes_exit_2_and_write_nothing(tmp_path: Path) -> None:
    good = write_lines(tmp_path / "in.jsonl", [json.dumps(transfer(event_id="e1"))])
    state = tmp_path / "state"
    a_file = write_lines(tmp_path / "file.txt", ["x"])
    cases: list[tuple[list[str | Path], str]] = [
        (["backfill", good], "--state-dir DIR"),
        (["backfill", good, "--state-dir", state, "--state", "redis://127.0.0.1:1/0"],
         "one of them"),
        (["backfill", good, "--state", "redis://127.0.0.1:1/0", "--decision-log",
          "x.db"], "--decision-log goes with --state-dir"),
        (["backfill", tmp_path / "missing.jsonl", "--state-dir", state], "does not exist"),
        (["backfill", good, "--state-dir", state, "--scene", "payout"],
         "unknown scene 'payout'"),
        (["backfill", good, "--state-dir", state, "-c", tmp_path / "nope.yaml"],
         "does not exist"),
        (["backfill", good, "--state-dir", state, "-c", bad_rule_config(tmp_path)],
         "amount_spike"),
        (["backfill", write_lines(tmp_path / "in.xml", ["<a/>"]), "--state-dir", state],
         "cannot tell the format"),
        (["backfill", good, "--state-dir", a_file], "not a directory"),
        (["backfill", good, "--state", "http://x"], "expected redis://"),
        (["backfill", good, "--state", "redis://127.0.0.1:1/0?buckets=lots"],
         "buckets must be a whole number"),
        (["backfill", good, "--state", "redis://127.0.0.1:1/0?buckets=0"],
         "buckets must be a whole number"),
        (["backfill", good, "--state-dir", state, "--errors", good], "overwrite the input"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    assert not state.exists()


def test_a_state_dir_holding_a_snapshot_is_refused_without_force(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "first.jsonl", [transfer(event_id="a1")])
    second = write_jsonl(tmp_path / "second.jsonl",
                         [transfer(event_id=f"b{i}", timestamp=T0 + i) for i in range(3)])
    state = tmp_path / "state"
    assert run("backfill", first, "--state-dir", state).exit_code == 0
    refused = run("backfill", second, "--state-dir", state)
    assert refused.exit_code == 2
    assert "already holds state (a snapshot (snapshot.pkl))" in refused.stderr
    assert restored(state).lsn == 1
    assert run("backfill", second, "--state-dir", state, "--force").exit_code == 0
    assert restored(state).lsn == 3


def test_unreachable_redis_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    good = write_lines(tmp_path / "in.jsonl", [json.dumps(transfer(event_id="e1"))])
    result = run("backfill", good, "--state", f"redis://127.0.0.1:{free_port()}/0")
    assert result.exit_code == 2, result.output
    assert "cannot" in result.stderr and "127.0.0.1" in result.stderr
    assert "Traceback" not in result.output
    result = run("backfill", good, "--state", "redis://:secret@127.0.0.1:1/0")
    assert result.exit_code == 2 and "secret" not in result.stderr


def test_an_engine_failure_stops_the_run_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Engine.evaluate

    def flaky(self: Engine, scene: str, event: Any, **options: Any) -> Any:
        if event.get("event_id") == "boom":
            raise RuntimeError("simulated failure")
        return original(self, scene, event, **options)

    monkeypatch.setattr(Engine, "evaluate", flaky)
    source = write_lines(tmp_path / "in.jsonl", [
        json.dumps(transfer(event_id="ok1")), json.dumps(transfer(event_id="boom")),
        json.dumps(transfer(event_id="ok2"))])
    result = run("backfill", source, "--state-dir", tmp_path / "state")
    assert result.exit_code == 1
    assert "backfill stopped" in result.stderr and "bug" in result.stderr
    assert "nothing was written" in result.stderr
    assert not (tmp_path / "state").exists()


def test_unreadable_parquet_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    source.write_bytes(b"not parquet at all")
    result = run("backfill", source, "--state-dir", tmp_path / "state")
    assert result.exit_code == 2
    assert "not a readable Parquet file" in result.stderr


def test_a_parquet_column_of_the_wrong_type_is_refused_before_any_row(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"event_id": ["e1"], "timestamp": [T0], "pay_account": ["A"],
                             "rcv_account": ["B"], "amount": ["ten"]}), source)
    result = run("backfill", source, "--state-dir", tmp_path / "state")
    assert result.exit_code == 2
    assert "column 'amount'" in result.stderr
    assert not (tmp_path / "state").exists()
