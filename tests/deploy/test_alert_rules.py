"""deploy/prometheus: the alert rules and the scrape config are valid (promtool when it is
installed, and always this test's own reading), every series they read is one the
service or the worker exports, and the alerts fire on the series of alerts_test.yml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, Exported
from tests.deploy.promql import metric_names

PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
SCRAPE = PROMETHEUS / "prometheus.yml"
RULE_TESTS = Path(__file__).parent / "alerts_test.yml"
DURATION = re.compile(r"^(\d+(ms|[smhdwy]))+$")
RECORD_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# what the alerts must watch, by the series they read (through recording rules too)
WATCHED = ("riskengine_degraded_decisions_total", "riskengine_state_breaker_open",
           "riskengine_stream_consumer_lag", "riskengine_decision_log_failures_total",
           "riskengine_decisions_total", "riskengine_guard_rollbacks_total",
           "riskengine_model_failures_total", "riskengine_review_queue_oldest_age_seconds")


def promtool() -> str | None:
    """promtool on the PATH, or in this venv's bin (scripts/install_services.sh)."""
    beside = Path(sys.executable).parent / "promtool"
    return shutil.which("promtool") or (str(beside) if beside.exists() else None)


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def recorded() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def test_rule_file_structure() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    groups = [group["name"] for group in document["groups"]]
    assert len(groups) == len(set(groups))
    alerts = [rule["alert"] for rule in rules() if "alert" in rule]
    assert len(alerts) == len(set(alerts)) >= len(WATCHED)
    for rule in rules():
        assert ("alert" in rule) != ("record" in rule), rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        metric_names(rule["expr"])  # parses
        if "record" in rule:
            assert RECORD_NAME.match(rule["record"]) and ":" in rule["record"]
            assert set(rule) == {"record", "expr"}
            continue
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert DURATION.match(str(rule.get("for", "0s"))), rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["runbook"].strip(), rule["alert"]


def test_every_series_read_is_exported(exported: Exported) -> None:
    names = frozenset(recorded())
    problems = {rule.get("alert", rule.get("record")): exported.problems(rule["expr"], names)
                for rule in rules()}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_alerts_watch_what_operations_needs() -> None:
    through = recorded()
    read: set[str] = set()
    for rule in rules():
        if "alert" in rule:
            for name in metric_names(rule["expr"]):
                read |= metric_names(through[name]) if name in through else {name}
    assert set(WATCHED) <= read


def test_scrape_config_structure() -> None:
    config = yaml.safe_load(SCRAPE.read_text())
    for rule_file in config["rule_files"]:
        assert (SCRAPE.parent / rule_file).resolve() == ALERTS.resolve()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"riskengine", "riskengine-stream"} <= set(jobs)
    for key in ("scrape_interval", "evaluation_interval"):
        assert DURATION.match(config["global"][key])


@pytest.mark.skipif(promtool() is None, reason="promtool not installed "
                                               "(scripts/install_services.sh puts it in .venv)")
def test_promtool_accepts_rules_and_config_and_the_alerts_fire(tmp_path: Path) -> None:
    tool = str(promtool())
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(SCRAPE)]):
        result = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    unit = yaml.safe_load(RULE_TESTS.read_text())
    unit["rule_files"] = [str(ALERTS)]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(unit))
    result = subprocess.run([tool, "test", "rules", str(tmp_path / "alerts_test.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(promtool() is None, reason="promtool not installed")
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a rule with a broken expression is refused."""
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"alert": "A", "expr": "sum(rate(x[5m])"}]}]}))
    result = subprocess.run([str(promtool()), "check", "rules", str(broken)],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
