"""Writes deploy/grafana/riskengine.json, the Grafana dashboard of the decision service
and the stream worker (run it after changing a panel here; a test checks that the file
is this script's output).

Every query reads the Prometheus data source provisioned by
deploy/grafana/provisioning/datasources/prometheus.yml (uid ``riskengine-prometheus``)
and names only metrics that the service's or the worker's /metrics exports.

    python scripts/build_dashboard.py            # writes the file
    python scripts/build_dashboard.py --check    # exit 1 when the file differs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "deploy" / "grafana" / "riskengine.json"
DATASOURCE = {"type": "prometheus", "uid": "riskengine-prometheus"}
SCENE = 'scene=~"$scene"'
RATE = "[$__rate_interval]"
WIDTH, HEIGHT = 12, 8


def quantiles(metric: str, selector: str, by: str = "le") -> list[tuple[str, str]]:
    """p50, p95 and p99 of histogram `metric` (its ``_bucket`` series)."""
    return [(f"p{int(q * 100)}",
             f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{selector}{RATE})))")
            for q in (0.5, 0.95, 0.99)]


# (title, unit, [(legend, query)]): one time series panel
Panel = tuple[str, str, list[tuple[str, str]]]
SERVICE: list[Panel] = [
    ("Decisions/s by outcome", "reqps", [
        ("{{decision}}", f"sum by (decision) (rate(riskengine_decisions_total{{{SCENE}}}{RATE}))"),
    ]),
    ("Reject share", "percentunit", [
        ("{{scene}}", f"sum by (scene) (rate(riskengine_decisions_total"
                      f'{{{SCENE},decision="reject"}}{RATE})) / sum by (scene) '
                      f"(rate(riskengine_decisions_total{{{SCENE}}}{RATE}))"),
    ]),
    ("Request latency (body read to response)", "s",
     quantiles("riskengine_request_seconds", f"{{{SCENE}}}")),
    ("Decision latency (engine)", "s", quantiles("riskengine_decision_seconds", f"{{{SCENE}}}")),
    ("Top 10 rule hits/s", "reqps", [
        ("{{rule}} ({{mode}})", f"topk(10, sum by (rule, mode) (rate(riskengine_rule_hits_total"
                                f"{{{SCENE}}}{RATE})))"),
    ]),
    ("Degraded decisions/s and the state breaker", "short", [
        ("degraded {{scene}}",
         f"sum by (scene) (rate(riskengine_degraded_decisions_total{{{SCENE}}}{RATE}))"),
        ("breaker open {{instance}}", "max by (instance) (riskengine_state_breaker_open)"),
        ("breaker opened {{instance}}",
         f"sum by (instance) (increase(riskengine_state_breaker_opens_total{RATE}))"),
    ]),
    ("Decision log", "short", [
        ("failed writes/s", f"sum(rate(riskengine_decision_log_failures_total{RATE}))"),
        ("pending {{instance}}", "sum by (instance) (riskengine_decision_log_pending)"),
    ]),
    ("Refused or failed requests/s by status", "reqps", [
        ("{{status}}", f"sum by (status) (rate(riskengine_request_errors_total{RATE}))"),
    ]),
    ("Late and duplicate events/s", "reqps", [
        ("late {{scene}}", f"sum by (scene) (rate(riskengine_late_events_total{{{SCENE}}}{RATE}))"),
        ("duplicate {{scene}}",
         f"sum by (scene) (rate(riskengine_duplicate_events_total{{{SCENE}}}{RATE}))"),
    ]),
    ("Rulesets put live and refused", "short", [
        ("live {{scene}} ({{source}})",
         f"sum by (scene, source) (increase(riskengine_ruleset_reloads_total{RATE}))"),
        ("refused ({{source}})",
         f"sum by (source) (increase(riskengine_ruleset_reload_failures_total{RATE}))"),
    ]),
    ("Guard rollbacks", "short", [
        ("{{scene}} {{kind}}",
         f"sum by (scene, kind) (increase(riskengine_guard_rollbacks_total{RATE}))"),
    ]),
    ("Model failures/s", "reqps", [
        ("{{scene}} {{model}}",
         f"sum by (scene, model) (rate(riskengine_model_failures_total{{{SCENE}}}{RATE}))"),
    ]),
    ("Mirror: results/s", "reqps", [
        ("{{result}}", f"sum by (result) (rate(riskengine_mirror_total{RATE}))"),
        ("not compared: {{reason}}",
         f"sum by (reason) (rate(riskengine_mirror_errors_total{RATE}))"),
    ]),
    ("Mirror: queue", "short", [
        ("{{instance}}", "sum by (instance) (riskengine_mirror_queue_depth)"),
    ]),
    # the queue is in the shared decision log: every worker reports the same value
    ("Review queue: decisions waiting", "short", [
        ("{{scene}}", f"max by (scene) (riskengine_review_queue_size{{{SCENE}}})"),
    ]),
    ("Review queue: oldest waiting", "s", [
        ("{{scene}}", f"max by (scene) (riskengine_review_queue_oldest_age_seconds{{{SCENE}}})"),
    ]),
    ("Entities in memory", "short", [
        ("{{scene}}", f"sum by (scene) (riskengine_entities{{{SCENE}}})"),
    ]),
]
STREAM: list[Panel] = [
    ("Stream: messages/s by outcome", "reqps", [
        ("{{outcome}}", f"sum by (outcome) (rate(riskengine_stream_messages_total{RATE}))"),
    ]),
    ("Stream: decisions/s", "reqps", [
        ("{{decision}}", f"sum by (decision) (rate(riskengine_stream_decisions_total{RATE}))"),
    ]),
    ("Stream: consumer lag (messages)", "short", [
        ("{{topic}}/{{partition}}", "sum by (topic, partition) (riskengine_stream_consumer_lag)"),
    ]),
    ("Stream: batch time", "s", quantiles("riskengine_stream_batch_seconds", "")),
    ("Stream: holds for the shared state and partitions", "short", [
        ("holds/s", f"sum(rate(riskengine_stream_state_waits_total{RATE}))"),
        ("partitions {{instance}}", "sum by (instance) (riskengine_stream_assigned_partitions)"),
    ]),
]


def timeseries(panel_id: int, x: int, y: int, panel: Panel) -> dict[str, Any]:
    title, unit, queries = panel
    return {
        "id": panel_id, "type": "timeseries", "title": title, "datasource": DATASOURCE,
        "gridPos": {"h": HEIGHT, "w": WIDTH, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                     "legendFormat": legend}
                    for i, (legend, expr) in enumerate(queries)],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row_title, group in (("Decision service", SERVICE), ("Stream worker", STREAM)):
        panels.append({"id": len(panels) + 1, "type": "row", "title": row_title,
                       "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                       "panels": []})
        y += 1
        for i, panel in enumerate(group):
            panels.append(timeseries(len(panels) + 1, (i % 2) * WIDTH, y + (i // 2) * HEIGHT,
                                     panel))
        y += ((len(group) + 1) // 2) * HEIGHT
    scene_variable = {
        "name": "scene", "label": "scene", "type": "query", "datasource": DATASOURCE,
        "query": {"query": "label_values(riskengine_decisions_total, scene)",
                  "refId": "scene"},
        "definition": "label_values(riskengine_decisions_total, scene)",
        "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
        "current": {"text": "All", "value": "$__all"}}
    return {
        "uid": "riskengine", "title": "riskengine", "tags": ["riskengine"],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
        "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [scene_variable]}, "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} differs: run python scripts/build_dashboard.py")
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
