"""`riskengine replay --runner spark` equals `--runner local`, record for record, and
refuses bad input before writing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from tests.cli.clitools import read_jsonl, run
from tests.features.test_oracle_hypothesis import (
    HISTORY_FEATURES,
    LATENESS,
    RULES,
    event_streams,
)
from tests.hostile import HOSTILE_SEEDS, hostile_config, hostile_stream
from tests.streams import scene_config


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return path


def spark_records(path: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        row["features"] = json.loads(row["features"])
    return rows


def same_records(local: list[dict[str, Any]], spark: list[dict[str, Any]]) -> None:
    """Every field of every local record equals Spark's (Parquet has a null label column
    where JSON Lines leaves the key out)."""
    assert [r["row"] for r in spark] == [r["row"] for r in local]
    for mine, theirs in zip(local, spark, strict=True):
        assert {k: theirs[k] for k in mine} == mine
        assert all(theirs[k] is None for k in theirs if k not in mine)


def both(tmp: Path, source: Path, *args: Any) -> tuple[list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
    local, spark = tmp / "local.jsonl", tmp / "spark.parquet"
    result = run("replay", source, "--output", local, *args)
    assert result.exit_code == 0, result.output
    result = run("replay", source, "--output", spark, "--runner", "spark", *args)
    assert result.exit_code == 0, result.output
    assert read_jsonl(tmp / "local.errors.jsonl") == read_jsonl(tmp / "spark.errors.jsonl")
    return read_jsonl(local), spark_records(spark)


@pytest.mark.parametrize("seed", HOSTILE_SEEDS)
def test_hostile_streams_equal_the_local_replay(spark: Any, tmp_path: Path, seed: int
                                                ) -> None:
    events, _ = hostile_stream(seed, 2_000, prefix="s")
    source = write_jsonl(tmp_path / "events.jsonl", events)
    config = write_config(tmp_path / "hostile.yaml", hostile_config())
    local, got = both(tmp_path, source, "--config", config, "--scene", "s")
    assert sum(r["late"] for r in local) > 50
    assert len({r["event_id"] for r in local}) < len(local)  # duplicates answered
    same_records(local, got)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(event_streams(max_size=30))
def test_hypothesis_streams_equal_the_local_replay(spark: Any, tmp_path_factory: Any,
                                                   events: list[dict[str, Any]]) -> None:
    tmp = tmp_path_factory.mktemp("hyp")
    source = write_jsonl(tmp / "events.jsonl", events)
    config = write_config(tmp / "c.yaml", scene_config(HISTORY_FEATURES, LATENESS,
                                                       rules=RULES))
    local, got = both(tmp, source, "--config", config, "--scene", "s")
    same_records(local, got)


def test_demo_traffic_from_parquet_with_labels_and_bad_rows(spark: Any, tmp_path: Path
                                                            ) -> None:
    source = tmp_path / "t.parquet"
    assert run("generate", "--events", 4_000, "--seed", 9, "--output", source).exit_code == 0
    table = pq.read_table(source)
    amounts = table.column("amount").to_pylist()
    amounts[10] = None  # the example's schema requires an amount: refused
    table = table.set_column(table.schema.get_field_index("amount"), "amount",
                             pa.array(amounts, pa.float64()))
    ts = table.column("timestamp").to_pylist()
    ts[20] = None  # no time: refused, reported with its row
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp",
                             pa.array(ts, pa.int64()))
    pq.write_table(table, source, row_group_size=700)
    local, got = both(tmp_path, source)
    assert [e["row"] for e in read_jsonl(tmp_path / "spark.errors.jsonl")] == [11, 21]
    assert any(r["decision"] != "accept" for r in local) and local[0]["label"]
    same_records(local, got)


def test_jsonl_with_malformed_rows_reports_the_same_errors(spark: Any, tmp_path: Path
                                                           ) -> None:
    lines = [json.dumps({"event_id": "a", "timestamp": 1_700_000_000_000,
                         "pay_account": "P", "rcv_account": "R", "amount": 5}),
             "{not json", "", "[1, 2]", json.dumps({"timestamp": "yesterday"}),
             json.dumps({"event_id": 7, "timestamp": 1_700_000_000_001}),
             json.dumps({"timestamp": 1_700_000_000_002, "pay_account": "P",
                         "rcv_account": "R", "amount": "x"}),
             json.dumps({"event_id": "a", "timestamp": 1_700_000_000_000,
                         "pay_account": "P", "rcv_account": "R", "amount": 5})]
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    local, got = both(tmp_path, source)
    assert [r["row"] for r in local] == [1, 8]
    assert len(read_jsonl(tmp_path / "spark.errors.jsonl")) == 5
    same_records(local, got)


def parquet_with(tmp: Path, **columns: pa.Array) -> Path:
    base: dict[str, pa.Array] = {
        "event_id": pa.array(["a", "b"]),
        "timestamp": pa.array([1_700_000_000_000, 1_700_000_000_001], pa.int64()),
        "pay_account": pa.array(["P", "P"]), "rcv_account": pa.array(["R", "S"]),
        "amount": pa.array([1.0, 2.0])}
    base.update(columns)
    table = pa.table({k: v for k, v in base.items() if v is not None})
    path = tmp / "in.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("runner", ["local", "spark"])
@pytest.mark.parametrize(("columns", "message"), [
    ({"timestamp": None}, "no column 'timestamp'"),
    ({"amount": pa.array(["1", "2"])}, "column 'amount' holds string"),
])
def test_a_missing_or_mistyped_column_is_named_and_nothing_is_written(
        spark: Any, tmp_path: Path, runner: str, columns: dict[str, Any], message: str
        ) -> None:
    source = parquet_with(tmp_path, **columns)
    output = tmp_path / ("out.parquet" if runner == "spark" else "out.jsonl")
    result = run("replay", source, "--output", output, "--runner", runner)
    assert result.exit_code == 2
    assert message in result.output
    assert not output.exists()


def test_unreadable_input_existing_output_and_unknown_scene_are_refused(
        spark: Any, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet")
    out = tmp_path / "out.parquet"
    result = run("replay", garbage, "--output", out, "--runner", "spark")
    assert result.exit_code == 2 and "garbage.parquet" in result.output
    assert "not readable Parquet" in result.output and not out.exists()
    source = parquet_with(tmp_path)
    out.mkdir()
    result = run("replay", source, "--output", out, "--runner", "spark")
    assert result.exit_code == 2 and "exists" in result.output
    result = run("replay", source, "--output", tmp_path / "o2.parquet", "--runner", "spark",
                 "--scene", "nope")
    assert result.exit_code == 2 and "unknown scene 'nope'" in result.output
    result = run("replay", source, "--output", tmp_path / "o.jsonl", "--runner", "spark")
    assert result.exit_code == 2 and "Parquet directory" in result.output
    result = run("replay", tmp_path / "missing.jsonl", "--output", tmp_path / "o3.parquet",
                 "--runner", "spark")
    assert result.exit_code == 2 and "does not exist" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.parquet", "in.parquet",
                                                          "out.parquet"]


def test_a_parquet_directory_on_local_star_numbers_rows_by_file(tmp_path: Path) -> None:
    """Spark paths pass through: a directory of Parquet files, its rows numbered file by
    file (in path order), on another master, in a process of its own."""
    whole = tmp_path / "all.parquet"
    assert run("generate", "--events", 3_000, "--seed", 4, "--output", whole).exit_code == 0
    table = pq.read_table(whole)
    folder = tmp_path / "history"
    folder.mkdir()
    pq.write_table(table.slice(0, 1_000), folder / "part-a.parquet")
    pq.write_table(table.slice(1_000), folder / "part-b.parquet")
    local = tmp_path / "local.jsonl"
    assert run("replay", whole, "--output", local).exit_code == 0
    out = tmp_path / "spark.parquet"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run(
        [sys.executable, "-m", "riskengine", "replay", f"file://{folder}", "--output",
         str(out), "--runner", "spark", "--master", "local[*]", "--partitions", "3"],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    same_records(read_jsonl(local), spark_records(out))
