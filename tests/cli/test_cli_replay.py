"""`riskengine replay`: every row decided in file order, bad rows counted, never fatal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import yaml

from riskengine.engine import Engine
from tests.cli.clitools import Generated, read_jsonl, run
from tests.engine.test_experiment import example_with, experiment
from tests.example_config import example_config

T0 = 1_767_571_200_000


def transfer(**fields: Any) -> dict[str, Any]:
    event = {"timestamp": T0, "pay_account": "A1", "rcv_account": "B1", "amount": 10.0}
    event.update(fields)
    return event


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def bad_rule_config(tmp_path: Path) -> Path:
    raw = example_config()
    raw["scenes"]["transfer"]["rules"][2]["when"] = "amount >= "
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


# Generated traffic ----------------------------------------------------------------------


def test_replay_writes_one_decision_per_row_in_order(generated: Generated) -> None:
    events = read_jsonl(generated.jsonl)
    decisions = read_jsonl(generated.decisions)
    assert [d["event_id"] for d in decisions] == [e["event_id"] for e in events]
    assert [d["row"] for d in decisions] == list(range(1, len(events) + 1))
    assert [d["label"] for d in decisions] == [e["label"] for e in events]
    first = decisions[0]
    for key in ("event_id", "decision", "score", "features", "hits", "shadow_hits", "late",
                "label", "ruleset_version", "lsn"):
        assert key in first
    assert first["decision"] in ("accept", "review", "reject")
    assert all(isinstance(h, str) for d in decisions for h in d["hits"] + d["shadow_hits"])
    assert generated.summary["errors"] == 0
    assert generated.summary["rows"] == len(events)


def test_mule_drain_bursts_are_rejected(generated: Generated) -> None:
    decisions = [d for d in read_jsonl(generated.decisions) if d["label"] == "mule_drain"]
    caught = [d for d in decisions if "mule_drain" in d["hits"]]
    assert len(caught) / len(decisions) > 0.9
    assert all(d["decision"] == "reject" for d in caught)
    rule = next(r for r in generated.summary["rules"] if r["rule_id"] == "mule_drain")
    assert rule["recall_by_label"]["mule_drain"] > 0.9
    assert rule["precision"] > 0.5
    assert generated.summary["labels"]["mule_drain"]["caught_rate"] > 0.9


def test_summary_shows_decisions_rules_and_precision_recall(generated: Generated) -> None:
    out = generated.stdout
    for text in ("Decisions", "accept", "review", "reject", "throughput", "late events",
                 "precision", "recall", "mule_drain", "card_testing", "account_takeover",
                 "shared_device", "shadow", "Decisions by label"):
        assert text in out
    decided = generated.summary["decisions"]
    assert sum(decided.values()) == generated.summary["evaluated"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_all_formats_give_identical_decisions(generated: Generated, tmp_path: Path,
                                              fmt: str) -> None:
    source = getattr(generated, fmt)
    output = tmp_path / "decisions.jsonl"
    result = run("replay", source, "-o", output)
    assert result.exit_code == 0, result.output
    assert read_jsonl(output) == read_jsonl(generated.decisions)


def test_parquet_output_holds_the_same_records(generated: Generated, tmp_path: Path) -> None:
    output = tmp_path / "decisions.parquet"
    result = run("replay", generated.jsonl, "-o", output)
    assert result.exit_code == 0, result.output
    rows = pq.read_table(output).to_pylist()
    for row in rows:
        row["features"] = json.loads(row["features"])
        assert row.pop("arms") is None  # a column of every row; JSONL has it with arms only
    assert rows == read_jsonl(generated.decisions)
    assert (tmp_path / "decisions.errors.jsonl").read_text(encoding="utf-8") == ""


def test_limit_stops_after_n_rows(generated: Generated, tmp_path: Path) -> None:
    output = tmp_path / "d.jsonl"
    result = run("replay", generated.parquet, "-o", output, "--limit", 250)
    assert result.exit_code == 0, result.output
    assert read_jsonl(output) == read_jsonl(generated.decisions)[:250]


# Bad rows -------------------------------------------------------------------------------


def test_bad_jsonl_rows_are_counted_reported_and_skipped(tmp_path: Path) -> None:
    huge = json.dumps(transfer(event_id="huge", note="x" * (2 << 20)))
    source = write_lines(tmp_path / "in.jsonl", [
        json.dumps(transfer(event_id="e1")),                       # 1 good
        '{"event_id": "e2", "timestamp": ',                        # 2 not JSON
        json.dumps(transfer(event_id="e3", amount="abc")),         # 3 wrong type
        json.dumps({"event_id": "e4", "timestamp": T0, "pay_account": "A1", "amount": 1.0}),
        huge,                                                      # 5 too long
        "[1, 2, 3]",                                               # 6 not an object
        "",                                                        # 7 blank: skipped
        json.dumps(transfer(timestamp=T0 + 1_000)),                # 8 good, no event_id
        json.dumps(transfer(event_id="e9", timestamp="2026-01-05T00:00:00")),
        '{"event_id": "e10", "timestamp": 1, "amount": NaN}',      # 10 NaN
        json.dumps(transfer(event_id="e11", timestamp=T0 + 2_000)),
    ])
    output = tmp_path / "out.jsonl"
    result = run("replay", source, "-o", output)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    decisions = read_jsonl(output)
    assert [d["event_id"] for d in decisions] == ["e1", "row-8", "e11"]
    assert [d["row"] for d in decisions] == [1, 8, 11]
    assert "label" not in decisions[0]
    errors = {e["row"]: e for e in read_jsonl(tmp_path / "out.errors.jsonl")}
    assert sorted(errors) == [2, 3, 4, 5, 6, 9, 10]
    assert errors[2]["kind"] == "input" and "invalid JSON" in errors[2]["error"]
    assert errors[3]["kind"] == "event" and errors[3]["field"] == "amount"
    assert errors[3]["event_id"] == "e3"
    assert errors[4]["field"] == "rcv_account" and "required" in errors[4]["error"]
    assert "longer than" in errors[5]["error"]
    assert "JSON object" in errors[6]["error"]
    assert errors[9]["field"] == "timestamp"
    assert "NaN" in errors[10]["error"]
    assert "row 2:" in result.stderr and "row 3:" in result.stderr
    assert "'amount'" in result.stderr
    assert re.search(r"errors\s+│\s+7 \(input 4, event 3", result.stdout)
    assert "precision" not in result.stdout  # no labels, no precision/recall


def test_csv_values_are_typed_by_the_scene_schema(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "event_id,timestamp,pay_account,rcv_account,amount,device_id,ip,label\n"
        f"1,{T0},0012,345,12.5,,,legit\n"              # ids stay text, empty -> null
        f"2,{T0 + 1},A1,B1,abc,d1,,legit\n"            # amount not a number
        f"3,{T0 + 2},A1,B1,7\n"                         # too few values
        f",2026-01-05T00:00:03Z,A1,B1,7,d1,1.2.3.4,card_testing\n",  # ISO time, no id
        encoding="utf-8")
    output = tmp_path / "out.jsonl"
    result = run("replay", source, "-o", output)
    assert result.exit_code == 0, result.output
    decisions = read_jsonl(output)
    assert [d["event_id"] for d in decisions] == ["1", "row-4"]
    assert decisions[1]["timestamp"] == T0 + 3_000
    assert decisions[0]["features"]["small_tx_device_10m"] is None
    errors = read_jsonl(tmp_path / "out.errors.jsonl")
    assert [(e["row"], e["field"]) for e in errors] == [(2, "amount"), (3, None)]
    assert "5 values for 8 columns" in errors[1]["error"]


def test_replay_other_scene(tmp_path: Path) -> None:
    events = [{"event_id": f"l{i}", "timestamp": T0 + i * 1_000, "account": "u1",
               "result": "fail", "ip": "10.0.0.1"} for i in range(6)]
    source = write_lines(tmp_path / "logins.jsonl", [json.dumps(e) for e in events])
    output = tmp_path / "out.jsonl"
    result = run("replay", source, "-o", output, "--scene", "login")
    assert result.exit_code == 0, result.output
    decisions = read_jsonl(output)
    assert decisions[-1]["decision"] == "reject"
    assert "brute_force" in decisions[-1]["hits"]


def test_engine_failure_on_a_row_is_reported_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Engine.evaluate

    def flaky(self: Engine, scene: str, event: Any) -> Any:
        if event.get("event_id") == "boom":
            raise RuntimeError("simulated failure")
        return original(self, scene, event)

    monkeypatch.setattr(Engine, "evaluate", flaky)
    source = write_lines(tmp_path / "in.jsonl", [
        json.dumps(transfer(event_id="ok1")), json.dumps(transfer(event_id="boom")),
        json.dumps(transfer(event_id="ok2"))])
    result = run("replay", source, "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 1
    assert [d["event_id"] for d in read_jsonl(tmp_path / "out.jsonl")] == ["ok1", "ok2"]
    (error,) = read_jsonl(tmp_path / "out.errors.jsonl")
    assert error["kind"] == "internal" and "simulated failure" in error["error"]
    assert "bug" in result.stderr


# Usage mistakes -------------------------------------------------------------------------


def test_usage_mistakes_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    good = write_lines(tmp_path / "in.jsonl", [json.dumps(transfer(event_id="e1"))])
    out = tmp_path / "out.jsonl"
    cases: list[tuple[list[str | Path], str]] = [
        (["replay", tmp_path / "missing.jsonl", "-o", out], "does not exist"),
        (["replay", good, "-o", out, "--scene", "payout"], "unknown scene 'payout'"),
        (["replay", good, "-o", out, "-c", tmp_path / "nope.yaml"], "does not exist"),
        (["replay", good, "-o", out, "-c", bad_rule_config(tmp_path)], "amount_spike"),
        (["replay", good, "-o", tmp_path / "out.txt"], "cannot tell the format"),
        (["replay", good, "-o", tmp_path / "out.csv"], ".jsonl or .parquet"),
        (["replay", good, "-o", good], "overwrite the input"),
        (["replay", write_lines(tmp_path / "in.xml", ["<a/>"]), "-o", out], "format"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    assert not out.exists()


def test_unreadable_parquet_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    source.write_bytes(b"not parquet at all")
    result = run("replay", source, "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 2
    assert "not a readable Parquet file" in result.stderr


# Experiments --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_replay_of_an_experiment_writes_the_arm_and_the_other_arms(
        generated: Generated, tmp_path: Path, suffix: str) -> None:
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(example_with(experiment())), encoding="utf-8")
    output = tmp_path / f"decisions.{suffix}"
    result = run("replay", generated.jsonl, "-o", output, "--config", config)
    assert result.exit_code == 0, result.output
    if suffix == "parquet":
        rows = pq.read_table(output).to_pylist()
        for row in rows:
            row["arms"] = json.loads(row["arms"])
    else:
        rows = read_jsonl(output)
    engine = Engine.from_config(config)
    for row, event in zip(rows, read_jsonl(generated.jsonl), strict=True):
        event.pop("label")
        decision = engine.evaluate("transfer", event)
        assert (row["arm"], row["decision"], row["ruleset_version"]) == (
            decision.arm, decision.decision, decision.ruleset_version)
        assert row["arms"] == {a.arm: a.to_dict() for a in decision.arms}
    assert {row["arm"] for row in rows} == {"champion", "strict", "loose"}
