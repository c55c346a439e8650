"""deploy/grafana: the dashboard is valid JSON written by scripts/build_dashboard.py, its
panels read the provisioned data source and only series the service or worker exports,
and it covers what operations watches."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY, ROOT, Exported
from tests.deploy.promql import metric_names

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "riskengine.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "riskengine.yml"
LABEL_VALUES = re.compile(r"^label_values\((?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*),\s*"
                          r"(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")
SHOWN = ("riskengine_decisions_total", "riskengine_request_seconds_bucket",
         "riskengine_decision_seconds_bucket", "riskengine_rule_hits_total",
         "riskengine_degraded_decisions_total", "riskengine_decision_log_failures_total",
         "riskengine_decision_log_pending", "riskengine_guard_rollbacks_total",
         "riskengine_mirror_total", "riskengine_mirror_queue_depth",
         "riskengine_model_failures_total", "riskengine_stream_messages_total",
         "riskengine_stream_consumer_lag", "riskengine_stream_batch_seconds_bucket",
         "riskengine_review_queue_size", "riskengine_review_queue_oldest_age_seconds")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_the_file_is_the_generators_output() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_dashboard.py"),
                             "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_use_the_provisioned_data_source() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert len(provisioned) == 1
    source = provisioned[0]
    assert source["type"] == "prometheus"
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]
    for variable in dashboard()["templating"]["list"]:
        assert variable["datasource"]["uid"] == source["uid"]


def test_every_series_read_is_exported(exported: Exported) -> None:
    problems = {f'{panel["title"]} {target["refId"]}': exported.problems(target["expr"])
                for panel in panels() for target in panel["targets"]}
    assert {k: v for k, v in problems.items() if v} == {}
    for variable in dashboard()["templating"]["list"]:
        match = LABEL_VALUES.match(variable["query"]["query"])
        assert match is not None, variable["query"]
        assert match["label"] in exported.labels[match["metric"]]


def test_the_panels_show_what_operations_watches() -> None:
    read = set().union(*(metric_names(t["expr"]) for p in panels() for t in p["targets"]))
    assert set(SHOWN) <= read


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells


def test_the_provider_loads_the_folder_compose_mounts_it_in() -> None:
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/riskengine.json:{provider['options']['path']}/riskengine.json:ro" \
        in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
