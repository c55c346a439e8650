"""`riskengine backtest`: live and candidate decided on the same events, compared, reported;
every mistake a clear message before anything runs, and nothing half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from riskengine.batch import backtest_report
from riskengine.batch.arms import ArmDecider
from riskengine.batch.backtest import BacktestRun, decide_rows
from riskengine.batch.candidate import load_candidate
from riskengine.batch.io import open_reader
from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.engine import Engine
from tests.cli.clitools import Generated, read_jsonl, run
from tests.example_config import example_rules_only

T0 = 1_767_571_200_000
EXAMPLE_CANDIDATE = EXAMPLE_CONFIG_PATH.parent / "candidate-transfer.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def live_ruleset(config: Path | None = None) -> dict[str, Any]:
    """The example's live transfer ruleset, as GET /v1/scenes/transfer/ruleset gives it."""
    return Engine.from_config(config).ruleset("transfer").to_dict()


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def with_card_testing_at(threshold: int, config: Path | None = None) -> dict[str, Any]:
    body = live_ruleset(config)
    rule = next(r for r in body["rules"] if r["id"] == "card_testing")
    assert rule["when"] == "small_tx_device_10m >= 5"
    rule["when"] = f"small_tx_device_10m >= {threshold}"
    return body


def rules_only(tmp_path: Path) -> Path:
    """The example config without its fraud model (which flags a card-testing burst from
    its first payments): the burst's decisions follow from the rules' thresholds alone."""
    return example_rules_only(tmp_path / "rules-only.yaml")


def card_test_burst(tmp_path: Path) -> Path:
    """Six payments below 10 from one device within five minutes (events c1..c6: the
    device's small-payment count is 1..6), two ordinary transfers, two bad rows."""
    labels = ["legit", "legit", "card_testing", "card_testing", "card_testing",
              "card_testing"]
    lines = [json.dumps({"event_id": f"c{i + 1}", "timestamp": T0 + i * 30_000,
                         "pay_account": "P1", "rcv_account": f"M{i}", "amount": 4.0,
                         "device_id": "dev-9", "label": label})
             for i, label in enumerate(labels)]
    lines += [
        json.dumps({"event_id": "o1", "timestamp": T0 + 400_000, "pay_account": "P2",
                    "rcv_account": "R2", "amount": 80.0, "label": "legit"}),
        '{"event_id": "broken", "timestamp": ',
        json.dumps({"event_id": "typed", "timestamp": T0 + 410_000, "pay_account": "P2",
                    "rcv_account": "R2", "amount": "lots", "label": "legit"}),
        json.dumps({"event_id": "o2", "timestamp": T0 + 420_000, "pay_account": "P3",
                    "rcv_account": "R3", "amount": 55.0, "label": "legit"}),
    ]
    path = tmp_path / "burst.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def example_report(generated: Generated, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Path, Any]:
    """The example candidate backtested on the session's generated traffic, with a report."""
    report = tmp_path_factory.mktemp("backtest") / "report"
    result = run("backtest", generated.jsonl, "--candidate", EXAMPLE_CANDIDATE,
                 "--report", report)
    assert result.exit_code == 0, result.output
    return report, result


# What it computes -------------------------------------------------------------------------


def test_live_arm_equals_replay_event_by_event(generated: Generated) -> None:
    engine = Engine.from_config(None)
    candidate = load_candidate(EXAMPLE_CANDIDATE, engine.scene("transfer"))
    decider = ArmDecider(engine, "transfer", {"candidate": candidate})
    run_info = BacktestRun("transfer", str(generated.jsonl), "local", decider.versions())
    limit = 4_000
    decided = list(decide_rows(decider, iter(open_reader(generated.jsonl)), run_info,
                               limit=limit))
    replayed = read_jsonl(generated.decisions)[:limit]
    assert len(decided) == len(replayed) == limit
    for ours, theirs in zip(decided, replayed, strict=True):
        live = ours.arms["live"]
        assert (ours.row, ours.event_id, ours.timestamp, ours.label) == (
            theirs["row"], theirs["event_id"], theirs["timestamp"], theirs["label"])
        assert (live.decision, live.score, list(live.hits), list(live.shadow_hits)) == (
            theirs["decision"], theirs["score"], theirs["hits"], theirs["shadow_hits"])


def test_example_report_agrees_with_replay_and_shows_the_change(
        generated: Generated, example_report: tuple[Path, Any]) -> None:
    report, result = example_report
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    summary = generated.summary
    assert data["decisions"]["live"] == summary["decisions"]
    assert data["events"] == summary["evaluated"]
    assert data["run"]["rows"] == summary["rows"] and data["run"]["errors"] == 0
    live_rules = {r["rule_id"]: r["hits"] for r in summary["rules"]}
    assert {r["rule_id"]: r["hits"]["live"] for r in data["rules"]} == live_rules
    for rule in summary["rules"]:
        ours = next(r for r in data["rules"] if r["rule_id"] == rule["rule_id"])
        assert ours["detection"]["live"]["precision"] == rule["precision"]
        assert ours["detection"]["live"]["recall"] == rule["recall"]
    # the example candidate flags more (large transfers to new receivers, shorter card
    # testing bursts, shared devices); with the fraud model live that catches no attack
    # the live rules miss and flags more legitimate transfers
    assert data["changed"]["candidate"] > 0
    outcomes = data["label_outcomes"]
    for attack in ("mule_drain", "card_testing", "account_takeover"):
        assert outcomes["candidate"][attack]["caught"] == outcomes["live"][attack]["caught"]
    assert outcomes["candidate"]["legit"]["caught"] > outcomes["live"]["legit"]["caught"]
    shared = next(r for r in data["rules"] if r["rule_id"] == "shared_device")
    assert shared["mode"] == {"live": "shadow", "candidate": "active"}
    assert data["run"]["changes"]["rules"] == {"new_receiver_large": "score 30 → 50",
                                               "card_testing": "when",
                                               "shared_device": "mode shadow → active"}
    out = result.stdout
    for text in ("Decisions per ruleset", "Decisions that change against live",
                 "Rule hits", "shadow → active", "precision", "recall", "F1",
                 "Caught per label", "account_takeover", "report.md"):
        assert text in out, text


def test_report_directory_holds_markdown_json_and_charts(
        example_report: tuple[Path, Any]) -> None:
    report, _ = example_report
    assert sorted(p.name for p in report.iterdir()) == [
        "alert_rate_by_day.png", "decision_mix.png", "errors.jsonl", "report.json",
        "report.md", "rule_hits.png"]
    for chart in report.glob("*.png"):
        data = chart.read_bytes()
        assert data.startswith(PNG_MAGIC), chart
        assert len(data) > 5_000, chart
    markdown = (report / "report.md").read_text(encoding="utf-8")
    for link in ("(decision_mix.png)", "(alert_rate_by_day.png)", "(rule_hits.png)"):
        assert link in markdown
    for heading in ("## Decisions per ruleset", "## Precision and recall against the label",
                    "## Alert rate per UTC day"):
        assert heading in markdown
    assert (report / "errors.jsonl").read_text(encoding="utf-8") == ""
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")]


def test_a_candidate_identical_to_live_changes_nothing(generated: Generated,
                                                       tmp_path: Path) -> None:
    candidate = write_json(tmp_path / "same.json", live_ruleset())
    report = tmp_path / "report"
    result = run("backtest", generated.parquet, "--candidate", candidate, "--report", report,
                 "--limit", 3_000)
    assert result.exit_code == 0, result.output
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert data["events"] == 3_000
    assert data["transitions"] == {"candidate": []} and data["changed"] == {"candidate": 0}
    assert data["decisions"]["live"] == data["decisions"]["candidate"]
    assert all(rule["change"] == {"candidate": 0} for rule in data["rules"])
    assert data["run"]["versions"]["live"] == data["run"]["versions"]["candidate"]
    assert data["run"]["changes"] == {"rules": {}, "policy": None}


def test_one_changed_threshold_gives_the_transitions_computed_by_hand(tmp_path: Path) -> None:
    config = rules_only(tmp_path)
    candidate = write_json(tmp_path / "c.json", with_card_testing_at(3, config))
    report = tmp_path / "report"
    result = run("backtest", card_test_burst(tmp_path), "--candidate", candidate,
                 "--report", report, "--config", config)
    assert result.exit_code == 0, result.output
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    # live: card_testing (score 60 >= review_at 50) from the 5th small payment on;
    # candidate: from the 3rd, so c3 and c4 go from accept to review, nothing else moves
    assert data["transitions"] == {"candidate": [
        {"from": "accept", "to": "review", "count": 2, "samples": ["c3", "c4"]}]}
    assert data["decisions"] == {"live": {"accept": 6, "review": 2, "reject": 0},
                                 "candidate": {"accept": 4, "review": 4, "reject": 0}}
    card = next(r for r in data["rules"] if r["rule_id"] == "card_testing")
    assert card["hits"] == {"live": 2, "candidate": 4} and card["change"] == {"candidate": 2}
    assert data["run"]["changes"] == {"rules": {"card_testing": "when"}, "policy": None}
    # labels: c3..c6 are the positives; live flags c5, c6, the candidate c3..c6
    assert data["labelled"] == 8 and data["positives"] == 4
    assert data["detection"]["live"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3})
    assert data["detection"]["candidate"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    # the two bad rows are counted, shown and kept, as replay does
    assert data["run"]["rows"] == 10 and data["run"]["errors_by_kind"] == {"input": 1,
                                                                           "event": 1}
    errors = read_jsonl(report / "errors.jsonl")
    assert [(e["row"], e["kind"], e["field"]) for e in errors] == [
        (8, "input", None), (9, "event", "amount")]
    assert "row 8:" in result.stderr and "row 9:" in result.stderr
    assert "## Bad rows" in (report / "report.md").read_text(encoding="utf-8")


def test_yaml_candidate_and_a_label_column_of_another_name(tmp_path: Path) -> None:
    source = card_test_burst(tmp_path)
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text(source.read_text(encoding="utf-8").replace('"label"', '"truth"'),
                       encoding="utf-8")
    candidate = tmp_path / "c.yaml"
    config = rules_only(tmp_path)
    body = with_card_testing_at(3, config)
    candidate.write_text("# lower card-testing threshold\n" + json.dumps(body),
                         encoding="utf-8")
    report = tmp_path / "report"
    result = run("backtest", renamed, "--candidate", candidate, "--label-column", "truth",
                 "--report", report, "--config", config)
    assert result.exit_code == 0, result.output
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert data["labelled"] == 8 and data["changed"] == {"candidate": 2}


def test_without_the_label_column_there_is_no_precision(tmp_path: Path) -> None:
    config = rules_only(tmp_path)
    candidate = write_json(tmp_path / "c.json", with_card_testing_at(3, config))
    report = tmp_path / "report"
    result = run("backtest", card_test_burst(tmp_path), "--candidate", candidate,
                 "--label-column", "verdict", "--report", report, "--config", config)
    assert result.exit_code == 0, result.output
    assert "Precision and recall" not in result.stdout and "F1" not in result.stdout
    assert "no 'verdict' column: no precision or recall" in result.stdout
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert data["labelled"] == 0 and "detection" not in data
    assert data["changed"] == {"candidate": 2}
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "## Precision" not in markdown and "F1" not in markdown


def test_without_report_only_the_terminal_summary(tmp_path: Path) -> None:
    config = rules_only(tmp_path)
    candidate = write_json(tmp_path / "c.json", with_card_testing_at(3, config))
    result = run("backtest", card_test_burst(tmp_path), "--candidate", candidate,
                 "--config", config)
    assert result.exit_code == 0, result.output
    assert "accept" in result.stdout and "c3, c4" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["burst.jsonl", "c.json",
                                                          "rules-only.yaml"]


# Mistakes -------------------------------------------------------------------------------


def test_mistakes_exit_2_naming_the_problem_before_anything_runs(tmp_path: Path) -> None:
    source = card_test_burst(tmp_path)
    good = write_json(tmp_path / "good.json", live_ruleset())
    unknown_feature = live_ruleset()
    unknown_feature["rules"][2]["when"] = 'features["median_amount_1h"] > 3'
    syntax = live_ruleset()
    syntax["rules"][4]["when"] = "small_tx_device_10m >= "
    other_scene = live_ruleset() | {"scene": "login"}
    non_utf8 = tmp_path / "latin1.json"
    non_utf8.write_bytes(b'{"rules": [], "reason": "caf\xe9"}')
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("rules: [unclosed\n", encoding="utf-8")
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.md").write_text("x", encoding="utf-8")
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    cases: list[tuple[list[str | Path], str]] = [
        ([tmp_path / "missing.jsonl", "--candidate", good], "does not exist"),
        ([tmp_path / "in.xml", "--candidate", good], "cannot tell the format"),
        ([source, "--candidate", tmp_path / "nope.json"], "does not exist"),
        ([source, "--candidate", tmp_path], "is not a file"),
        ([source, "--candidate", write_json(tmp_path / "list.json", [1])],
         "a ruleset is a JSON object"),
        ([source, "--candidate", write_json(tmp_path / "no-rules.json", {"policy": {}})],
         "'rules' must be a list"),
        ([source, "--candidate", write_json(tmp_path / "extra.json",
                                            {"rules": [], "whatever": 1})],
         "unknown ruleset keys"),
        ([source, "--candidate", write_json(tmp_path / "types.json", {"rules": [
            {"id": "x", "when": "amount > 1", "score": "high"}]})],
         "rule 'x': score must be a finite number"),
        ([source, "--candidate", write_json(tmp_path / "policy-list.json",
                                            {"rules": [], "policy": [50, 80]})],
         "'policy' must be an object"),
        ([source, "--candidate", non_utf8], "not UTF-8"),
        ([source, "--candidate", bad_yaml], "invalid YAML at line 2"),
        ([source, "--candidate", write_json(tmp_path / "feature.json", unknown_feature)],
         "rule 'amount_spike' at line 1, column 10: unknown feature 'median_amount_1h'"),
        ([source, "--candidate", write_json(tmp_path / "syntax.json", syntax)],
         "rule 'card_testing' at line 1"),
        ([source, "--candidate", write_json(tmp_path / "policy.json", live_ruleset() | {
            "policy": {"review_at": 90, "reject_at": 10}})], "review_at (90) must not exceed"),
        ([source, "--candidate", write_json(tmp_path / "scene.json", other_scene)],
         "is for scene 'login'"),
        ([source, "--candidate", good, "--scene", "payout"], "unknown scene 'payout'"),
        ([source, "--candidate", good, "--runner", "flink"], "unknown runner 'flink'"),
        ([source, "--candidate", good, "-c", tmp_path / "nope.yaml"], "does not exist"),
        ([source, "--candidate", good, "--report", full], "already exists and is not empty"),
        ([source, "--candidate", good, "--report", a_file / "report"], "cannot write"),
        ([source, "--candidate", good, "--report", tmp_path / "no" / "such" / "report"],
         "does not exist"),
    ]
    (tmp_path / "in.xml").write_text("<a/>", encoding="utf-8")
    for args, message in cases:
        result = run("backtest", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
        assert result.stdout == "", args
    assert sorted(p.name for p in full.iterdir()) == ["old.md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_parquet_columns_that_cannot_hold_the_scene_are_refused_first(tmp_path: Path) -> None:
    source = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"event_id": ["e1"], "timestamp": [T0], "pay_account": ["P1"],
                             "rcv_account": ["R1"], "amount": ["12.5"]}), source)
    report = tmp_path / "report"
    result = run("backtest", source, "--candidate", EXAMPLE_CANDIDATE, "--report", report)
    assert result.exit_code == 2
    assert "column 'amount' holds string" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typed.parquet"]


def test_invalid_json_candidate_names_line_and_column(tmp_path: Path) -> None:
    candidate = tmp_path / "c.json"
    candidate.write_text('{"rules": [\n  {"id": "x",}\n]}', encoding="utf-8")
    result = run("backtest", card_test_burst(tmp_path), "--candidate", candidate)
    assert result.exit_code == 2
    assert f"candidate {str(candidate)!r}: invalid JSON at line 2" in result.stderr


def test_a_report_that_fails_midway_leaves_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(data: dict[str, Any], directory: Path) -> dict[str, str]:
        (directory / "decision_mix.png").write_bytes(PNG_MAGIC)
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(backtest_report, "write_charts", disk_full)
    config = rules_only(tmp_path)
    candidate = write_json(tmp_path / "c.json", with_card_testing_at(3, config))
    report = tmp_path / "report"
    result = run("backtest", card_test_burst(tmp_path), "--candidate", candidate,
                 "--report", report, "--config", config)
    assert result.exit_code == 1
    assert "cannot write the report" in result.stderr and "No space left" in result.stderr
    assert not report.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["burst.jsonl", "c.json",
                                                          "rules-only.yaml"]


def test_an_existing_empty_directory_is_filled(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    candidate = write_json(tmp_path / "c.json", live_ruleset())
    result = run("backtest", card_test_burst(tmp_path), "--candidate", candidate,
                 "--report", report)
    assert result.exit_code == 0, result.output
    assert (report / "report.md").is_file()


def test_an_empty_input_gives_an_empty_report(tmp_path: Path) -> None:
    source = tmp_path / "empty.csv"
    source.write_text("event_id,timestamp,pay_account,rcv_account,amount\n", encoding="utf-8")
    report = tmp_path / "report"
    result = run("backtest", source, "--candidate", EXAMPLE_CANDIDATE, "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert data["events"] == 0 and data["daily"] == [] and data["alert_rate"]["live"] is None
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in report.glob("*.png"))


def test_an_engine_failure_on_a_row_is_reported_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = ArmDecider.decide

    def flaky(self: ArmDecider, event: Any) -> Any:
        if event.get("event_id") == "c2":
            raise RuntimeError("simulated failure")
        return original(self, event)

    monkeypatch.setattr(ArmDecider, "decide", flaky)
    report = tmp_path / "report"
    result = run("backtest", card_test_burst(tmp_path), "--candidate", EXAMPLE_CANDIDATE,
                 "--report", report)
    assert result.exit_code == 1
    assert "bug" in result.stderr and "simulated failure" in result.stderr
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert data["run"]["errors_by_kind"] == {"input": 1, "event": 1, "internal": 1}
    assert data["events"] == 7
