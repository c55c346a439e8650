"""The data of the console's comparison charts, from an `ArmComparison.to_dict` document
(a live experiment's or a backtest's report.json): one JSON-ready spec per chart, which
``static/charts.js`` draws with uPlot.

A ``bars`` spec has category names and one series of values per arm (grouped bars; the
decision mix on a log scale, as accept dwarfs the rest; rule hits sideways, so long rule
ids stay readable); a ``lines`` spec has x values (epoch seconds) and one series per arm.
The same sections of the document as the PNG charts of a backtest report
(riskengine/batch/charts.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

__all__ = ["alert_rate_chart", "comparison_charts", "decision_mix_chart", "rule_hits_chart"]

Chart = dict[str, Any]


def _series(arms: list[str], values: dict[str, list[float]]) -> list[dict[str, Any]]:
    return [{"label": arm, "values": values[arm]} for arm in arms]


def decision_mix_chart(doc: dict[str, Any]) -> Chart:
    """Events per decision (accept, review, reject, …), one bar per arm."""
    arms: list[str] = doc["arms"]
    decisions = list(doc["decisions"][doc["baseline"]])
    return {"kind": "bars", "title": "Decision mix per arm", "y_label": "events (log scale)",
            "log": True, "categories": decisions,
            "series": _series(arms, {arm: [doc["decisions"][arm].get(d, 0) for d in decisions]
                                     for arm in arms})}


def rule_hits_chart(doc: dict[str, Any]) -> Chart:
    """Events each rule hit (active or shadow), one bar per arm."""
    arms: list[str] = doc["arms"]
    rules = doc["rules"]
    return {"kind": "bars", "title": "Hits per rule and arm", "y_label": "events hit",
            "horizontal": True, "categories": [rule["rule_id"] for rule in rules],
            "series": _series(arms, {arm: [rule["hits"][arm] for rule in rules]
                                     for arm in arms})}


def alert_rate_chart(doc: dict[str, Any]) -> Chart:
    """Each arm's alert rate (review + reject, % of the day's events) per UTC day."""
    arms: list[str] = doc["arms"]
    days = doc["daily"]
    return {"kind": "lines", "title": "Alert rate per UTC day",
            "y_label": "% of the day's events",
            "x": [_day_seconds(day["day"]) for day in days],
            "series": _series(arms, {arm: [round(100.0 * day["alert_rate"][arm], 4)
                                           for day in days] for arm in arms})}


def comparison_charts(doc: dict[str, Any]) -> dict[str, Chart]:
    """Every chart of a comparison, by name."""
    return {"decision_mix": decision_mix_chart(doc), "rule_hits": rule_hits_chart(doc),
            "alert_rate": alert_rate_chart(doc)}


def _day_seconds(day: str) -> int:
    """Midnight UTC of an ISO day, in epoch seconds (uPlot's time axis)."""
    midnight = datetime.combine(date.fromisoformat(day), time(), UTC)
    return int(midnight.timestamp())
