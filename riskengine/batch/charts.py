"""PNG charts of an arm comparison (the dict of `ArmComparison.to_dict`), for reports.

matplotlib comes with the ``report`` extra (``pip install 'riskengine[report]'``); it is
imported inside `write_charts` only, and draws on the Agg canvas (no display, no global
backend switch).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from riskengine.exceptions import RiskEngineError

__all__ = ["CHARTS", "ChartsUnavailableError", "check_charts", "mode_text", "write_charts"]

CHARTS = {
    "decision_mix": ("decision_mix.png", "Decision mix per ruleset"),
    "alert_rate": ("alert_rate_by_day.png", "Alert rate (review + reject) per UTC day"),
    "rule_hits": ("rule_hits.png", "Hits per rule"),
}
"""Chart name → (file name, title)."""

_DPI = 110
_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


class ChartsUnavailableError(RiskEngineError):
    """matplotlib is not installed."""


def check_charts() -> None:
    """Raise `ChartsUnavailableError` when matplotlib cannot be imported."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ChartsUnavailableError("charts need matplotlib: pip install 'riskengine[report]'")


def write_charts(data: dict[str, Any], directory: Path) -> dict[str, str]:
    """Draw every chart of `CHARTS` into `directory`; returns chart name → file name."""
    check_charts()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arms: list[str] = data["arms"]
    drawn = {}
    for name, draw in (("decision_mix", _decision_mix), ("alert_rate", _alert_rate),
                       ("rule_hits", _rule_hits)):
        file_name, title = CHARTS[name]
        figure = Figure(figsize=(8, 4.5) if name != "rule_hits" else
                        (8, 1.6 + 0.45 * max(1, len(data["rules"])) * max(1, len(arms)) / 2))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        draw(axes, data, arms)
        axes.set_title(title)
        if len(arms) > 1:
            axes.legend(frameon=False)
        figure.tight_layout()
        figure.savefig(directory / file_name, format="png", dpi=_DPI)
        drawn[name] = file_name
    return drawn


def _bar_offsets(arms: list[str]) -> tuple[float, list[float]]:
    width = 0.8 / len(arms)
    return width, [(i - (len(arms) - 1) / 2) * width for i in range(len(arms))]


def _decision_mix(axes: Any, data: dict[str, Any], arms: list[str]) -> None:
    decisions = list(data["decisions"][arms[0]])
    width, offsets = _bar_offsets(arms)
    for i, (arm, offset) in enumerate(zip(arms, offsets, strict=True)):
        counts = [data["decisions"][arm].get(d, 0) for d in decisions]
        bars = axes.bar([x + offset for x in range(len(decisions))], counts, width,
                        label=arm, color=_COLOURS[i % len(_COLOURS)])
        axes.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=8, padding=2)
    axes.set_xticks(range(len(decisions)), decisions)
    top = max((n for arm in arms for n in data["decisions"][arm].values()), default=0)
    if top > 0:
        axes.set_yscale("log")  # accept dwarfs the rest; every count stays readable
        axes.set_ylim(0.8, top * 6)  # room for the labels and the legend
        axes.set_ylabel("events (log scale)")
    else:
        axes.set_ylim(0, 1)
        axes.set_ylabel("events")


def _alert_rate(axes: Any, data: dict[str, Any], arms: list[str]) -> None:
    days = data["daily"]
    labels = [day["day"] for day in days]
    for i, arm in enumerate(arms):
        rates = [100.0 * day["alert_rate"][arm] for day in days]
        axes.plot(range(len(days)), rates, marker="o", label=arm,
                  color=_COLOURS[i % len(_COLOURS)])
    axes.set_xticks(range(len(days)), labels, rotation=45 if len(days) > 6 else 0,
                    ha="right" if len(days) > 6 else "center")
    axes.set_ylabel("% of the day's events")
    top = max((100.0 * day["alert_rate"][arm] for day in days for arm in arms), default=0.0)
    axes.set_ylim(0, top * 1.25 or 1.0)
    if not days:
        axes.text(0.5, 0.5, "no events", ha="center", va="center", transform=axes.transAxes)


def _rule_hits(axes: Any, data: dict[str, Any], arms: list[str]) -> None:
    rules = data["rules"]
    names = [f"{rule['rule_id']}\n{mode_text(rule, arms)}" for rule in rules]
    width, offsets = _bar_offsets(arms)
    for i, (arm, offset) in enumerate(zip(arms, offsets, strict=True)):
        hits = [rule["hits"][arm] for rule in rules]
        bars = axes.barh([y + offset for y in range(len(names))], hits, width, label=arm,
                         color=_COLOURS[i % len(_COLOURS)])
        axes.bar_label(bars, labels=[f"{h:,}" for h in hits], fontsize=8, padding=2)
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()  # the first rule on top, as in the tables
    axes.set_xlabel("events the rule hit (active or shadow)")
    axes.margins(x=0.12)
    if not names:
        axes.text(0.5, 0.5, "no rules", ha="center", va="center", transform=axes.transAxes)


def mode_text(rule: dict[str, Any], arms: list[str]) -> str:
    """The rule's mode, or how it changes across the arms (``shadow → active``)."""
    modes = [rule["mode"][arm] or "absent" for arm in arms]
    return modes[0] if len(set(modes)) == 1 else " → ".join(modes)
