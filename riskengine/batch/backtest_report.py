"""A backtest's report: tables in the terminal, and a report directory.

The tables are built once (`tables`) from the report document — the run (`BacktestRun`)
under ``run`` beside the comparison (`ArmComparison.to_dict`), exactly what
``report.json`` holds — and rendered with rich for the terminal or as Markdown.

A report directory holds ``report.md`` (the tables, the charts linked), ``report.json``,
the charts (riskengine/batch/charts.py) and ``errors.jsonl`` (the bad rows, the replay's
error records). It is written in a temporary directory beside DIR, made before the run
starts (so a DIR that cannot be written fails first), and renamed to DIR when complete:
DIR holds a whole report or does not exist.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from riskengine.batch.charts import CHARTS, mode_text, write_charts
from riskengine.batch.io import RecordWriter, open_writer
from riskengine.batch.metrics import LEGIT
from riskengine.batch.replay import ERROR_FIELDS
from riskengine.batch.report import percent
from riskengine.exceptions import RiskEngineError

__all__ = ["ReportDir", "ReportError", "ReportTable", "comparison_tables", "experiment_tables",
           "markdown_report", "render_backtest", "render_tables", "tables"]

TERMINAL_TRANSITIONS = 10
TERMINAL_DAYS = 10
TERMINAL_SAMPLES = 3


class ReportError(RiskEngineError):
    """The report directory cannot be used or written."""


@dataclass
class ReportTable:
    """One table: title, column headers, rows of text; `align` per column (l or r)."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    align: str = ""
    caption: str = ""
    chart: str | None = None  # the CHARTS name drawn beside it in the Markdown report
    event_ids: dict[int, list[str]] = field(default_factory=dict)
    """Row index → the event ids its last column lists (a page links each of them)."""

    def column_align(self, index: int) -> str:
        return self.align[index] if index < len(self.align) else "r"


def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


def _detection_cells(detection: dict[str, float | None]) -> list[str]:
    return [percent(detection["precision"]), percent(detection["recall"]),
            "–" if detection["f1"] is None else f"{detection['f1']:.3f}"]


def _overview(doc: dict[str, Any]) -> ReportTable:
    run = doc["run"]
    table = ReportTable("Backtest", ["", ""], align="ll")
    rows = table.rows
    rows.append(["input", run["input"]])
    rows.append(["scene", run["scene"]])
    for arm, version in run["versions"].items():
        source = f" from {run['candidate']}" if arm == "candidate" and run["candidate"] else ""
        rows.append([f"{arm} ruleset", f"version {version}{source}"])
    changes = run.get("changes")
    if changes:
        changed = len(changes["rules"])
        rows.append(["candidate changes", f"{changed} rule{'s' if changed != 1 else ''}, "
                                          f"policy {changes['policy'] or 'unchanged'}"])
    rows.append(["rows read", f"{run['rows']:,}"])
    rows.append(["events decided", f"{doc['events']:,}"])
    errors = f"{run['errors']:,}"
    if run["errors"]:
        errors += " (" + ", ".join(f"{kind} {n:,}" for kind, n in
                                   sorted(run["errors_by_kind"].items())) + ")"
    rows.append(["errors", errors])
    for arm, changed in doc["changed"].items():
        rows.append([f"changed by {arm}", f"{changed:,} ({percent(changed, doc['events'])})"])
    if doc["labelled"]:
        rows.append(["labels", f"column {run['label_column']!r}: {doc['labelled']:,} "
                               f"labelled, {doc['positives']:,} not {LEGIT}"])
    else:
        rows.append(["labels", f"no {run['label_column']!r} column: no precision or recall"])
    rows.append(["runner", f"{run['runner']}, {run['elapsed_s']:.2f} s"])
    return table


def _decisions(doc: dict[str, Any]) -> ReportTable:
    arms, base, events = doc["arms"], doc["baseline"], doc["events"]
    others = [arm for arm in arms if arm != base]
    headers = ["decision"]
    for arm in arms:
        headers += [arm, f"{arm} %"]
    headers += [f"{arm} − {base}" for arm in others]
    table = ReportTable("Decisions per ruleset", headers, align="l", chart="decision_mix")
    for decision in doc["decisions"][base]:
        counts = {arm: doc["decisions"][arm].get(decision, 0) for arm in arms}
        row = [decision]
        for arm in arms:
            row += [f"{counts[arm]:,}", percent(counts[arm], events)]
        row += [_signed(counts[arm] - counts[base]) for arm in others]
        table.rows.append(row)
    alerts = {arm: round((doc["alert_rate"][arm] or 0.0) * events) for arm in arms}
    row = ["alerts (review + reject)"]
    for arm in arms:
        row += [f"{alerts[arm]:,}", percent(doc["alert_rate"][arm])]
    row += [_signed(alerts[arm] - alerts[base]) for arm in others]
    table.rows.append(row)
    return table


def _transitions(doc: dict[str, Any], limit: int | None, samples: int | None) -> ReportTable:
    several = len(doc["transitions"]) > 1
    headers = (["ruleset"] if several else []) + ["from", "to", "events", "% of events",
                                                  "sample event ids"]
    table = ReportTable(f"Decisions that change against {doc['baseline']}", headers,
                        align=("l" if several else "") + "llrrl")
    for arm, steps in doc["transitions"].items():
        for step in steps[:limit]:
            ids = step["samples"][:samples]
            table.event_ids[len(table.rows)] = list(ids)
            table.rows.append(([arm] if several else []) + [
                step["from"], step["to"], f"{step['count']:,}",
                percent(step["count"], doc["events"]), ", ".join(ids)])
    if not table.rows:
        table.caption = "no decision changes"
    elif limit is not None and any(len(steps) > limit for steps in doc["transitions"].values()):
        table.caption = f"the {limit} most frequent; all of them in report.json"
    return table


def _rules(doc: dict[str, Any]) -> ReportTable:
    arms, base = doc["arms"], doc["baseline"]
    others = [arm for arm in arms if arm != base]
    changes = doc.get("run", {}).get("changes", {}).get("rules", {})
    headers = ["rule", "mode", "rule change", *(f"hits {arm}" for arm in arms),
               *(f"{arm} − {base}" for arm in others)]
    table = ReportTable("Rule hits (active and shadow)", headers, align="lll",
                        chart="rule_hits")
    for rule in doc["rules"]:
        table.rows.append([rule["rule_id"], mode_text(rule, arms),
                           changes.get(rule["rule_id"], ""),
                           *(f"{rule['hits'][arm]:,}" for arm in arms),
                           *(_signed(rule["change"][arm]) for arm in others)])
    errors = {arm: counts for arm, counts in doc["rule_errors"].items() if counts}
    if errors:
        table.caption = "rules that raised (counted as not hit): " + "; ".join(
            f"{arm}: " + ", ".join(f"{rule} {n:,}" for rule, n in counts.items())
            for arm, counts in errors.items())
    return table


def _detection(doc: dict[str, Any]) -> ReportTable:
    table = ReportTable("Precision and recall against the label",
                        ["ruleset", "precision", "recall", "F1", "alert rate",
                         f"{LEGIT} flagged"], align="l",
                        caption="flagged = review or reject; positive = a label other than "
                                f"{LEGIT}")
    for arm in doc["arms"]:
        legit = doc["label_outcomes"][arm].get(LEGIT)
        table.rows.append([arm, *_detection_cells(doc["detection"][arm]),
                           percent(doc["alert_rate"][arm]),
                           percent(legit["caught_rate"]) if legit else "–"])
    return table


def _rule_detection(doc: dict[str, Any]) -> ReportTable:
    arms = doc["arms"]
    headers = ["rule"]
    for arm in arms:
        headers += [f"{arm} precision", f"{arm} recall", f"{arm} F1"]
    table = ReportTable("Rules: precision and recall against the label", headers, align="l",
                        caption="a rule flags the events it hits")
    for rule in doc["rules"]:
        row = [rule["rule_id"]]
        for arm in arms:
            row += (_detection_cells(rule["detection"][arm]) if rule["mode"][arm] is not None
                    else ["–", "–", "–"])
        table.rows.append(row)
    return table


def _money(doc: dict[str, Any]) -> ReportTable:
    money = doc["money"]
    total = money["positive_amount"]
    table = ReportTable("Money of the positives: caught (review or reject) and blocked "
                        "(reject)", ["ruleset", "caught", "% caught", "blocked", "% blocked"],
                        align="l", caption=f"positives' amount {total:,.2f}")
    for arm in doc["arms"]:
        caught, blocked = money["caught"][arm], money["blocked"][arm]
        table.rows.append([arm, f"{caught:,.2f}", percent(caught / total if total else None),
                           f"{blocked:,.2f}", percent(blocked / total if total else None)])
    if money["positives_without_amount"]:
        table.caption += f"; {money['positives_without_amount']:,} positives had no amount"
    return table


def _rule_money(doc: dict[str, Any]) -> ReportTable:
    arms = doc["arms"]
    headers = ["rule"]
    for arm in arms:
        headers += [f"{arm} caught", f"{arm} blocked"]
    table = ReportTable("Rules: money of the positives they hit", headers, align="l",
                        caption="blocked: where the ruleset rejected")
    for rule in doc["rules"]:
        row = [rule["rule_id"]]
        for arm in arms:
            money = rule["money"][arm]
            row += ([f"{money['caught']:,.2f}", f"{money['blocked']:,.2f}"]
                    if rule["mode"][arm] is not None else ["–", "–"])
        table.rows.append(row)
    return table


def _answered(doc: dict[str, Any]) -> ReportTable:
    table = ReportTable("Answered events and their latency (ms)",
                        ["arm", "answered", "% of events", "mean", "p50", "p99", "max"],
                        align="l", caption="p50 and p99 within 2.2 %")

    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    for arm in doc["arms"]:
        latency = doc["latency_ms"][arm]
        table.rows.append([arm, f"{doc['answered'][arm]:,}",
                           percent(doc["answered"][arm], doc["events"]),
                           ms(latency["mean"]), ms(latency["p50"]), ms(latency["p99"]),
                           ms(latency["max"])])
    return table


def _labels(doc: dict[str, Any]) -> ReportTable:
    arms = doc["arms"]
    table = ReportTable("Caught per label (review or reject)",
                        ["label", "events", *(f"caught {arm}" for arm in arms)], align="l")
    for label, count in doc["labels"].items():
        table.rows.append([label, f"{count:,}", *(
            percent(doc["label_outcomes"][arm][label]["caught_rate"]) for arm in arms)])
    return table


def _daily(doc: dict[str, Any], limit: int | None) -> ReportTable:
    arms = doc["arms"]
    table = ReportTable("Alert rate per UTC day",
                        ["day", "events", *(f"alert rate {arm}" for arm in arms)],
                        align="l", chart="alert_rate")
    days = doc["daily"]
    shown = days if limit is None or len(days) <= limit else days[-limit:]
    for day in shown:
        table.rows.append([day["day"], f"{day['events']:,}",
                           *(percent(day["alert_rate"][arm]) for arm in arms)])
    if len(shown) < len(days):
        table.caption = f"the last {limit} of {len(days)} days; all of them in report.md"
    return table


def tables(doc: dict[str, Any], *, terminal: bool = False) -> list[ReportTable]:
    """The report's tables; `terminal` keeps the long ones short."""
    return [_overview(doc), *comparison_tables(doc, terminal=terminal)]


def experiment_tables(scene: str, tally: dict[str, Any], *, terminal: bool = False
                      ) -> list[ReportTable]:
    """The tables of one experiment version of a live comparison (an entry of
    `compare_experiments`' ``experiments``): an overview, then its comparison's."""
    doc = tally["comparison"]
    overview = ReportTable(f"Experiment {tally['version']}", ["", ""], align="ll")
    overview.rows += [["scene", scene], ["events", f"{doc['events']:,}"],
                      ["first event", str(tally["first_event"])],
                      ["last event", str(tally["last_event"])],
                      ["labelled", f"{doc['labelled']:,}"]]
    overview.rows += [[f"{arm} ruleset", ", ".join(versions)]
                      for arm, versions in tally["ruleset_versions"].items()]
    if tally.get("skipped"):
        overview.rows.append(["skipped", f"{tally['skipped']:,} decisions with other arms"])
    return [overview, *comparison_tables(doc, terminal=terminal)]


def comparison_tables(doc: dict[str, Any], *, terminal: bool = False) -> list[ReportTable]:
    """The tables of an `ArmComparison.to_dict` document (a backtest's or a live
    experiment's): the sections it holds."""
    built = [_decisions(doc),
             _transitions(doc, TERMINAL_TRANSITIONS if terminal else None,
                          TERMINAL_SAMPLES if terminal else None),
             _rules(doc)]
    if "answered" in doc:
        built.append(_answered(doc))
    if doc["labelled"]:
        built += [_detection(doc), _rule_detection(doc), _labels(doc)]
        if "money" in doc:
            built += [_money(doc), _rule_money(doc)]
    built.append(_daily(doc, TERMINAL_DAYS if terminal else None))
    return built


# Terminal -------------------------------------------------------------------------------


def render_backtest(doc: dict[str, Any], console: Console) -> None:
    """Print the report's tables (the overview first, without headers)."""
    render_tables(tables(doc, terminal=True), console)


def render_tables(built: list[ReportTable], console: Console) -> None:
    """Print `built` (the first, an overview, without headers)."""
    parts: list[Any] = []
    for index, table in enumerate(built):
        rich = Table(title=table.title, title_justify="left", show_header=index > 0,
                     caption=table.caption or None, caption_justify="left")
        for column, header in enumerate(table.headers):
            left = table.column_align(column) == "l"
            rich.add_column(header, justify="left" if left else "right",
                            no_wrap=column == 0, overflow="fold",
                            style="bold" if index == 0 and column == 0 else None)
        for row in table.rows:
            rich.add_row(*row)
        if parts:
            parts.append("")
        parts.append(rich)
    console.print(Group(*parts))


# Markdown -------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(table: ReportTable) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |",
             "| " + " | ".join("---:" if table.column_align(i) == "r" else "---"
                               for i in range(len(table.headers))) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return lines


def markdown_report(doc: dict[str, Any], charts: dict[str, str]) -> str:
    """``report.md``: every table, each chart of `charts` (name → file) after its table."""
    run = doc["run"]
    candidate = run["candidate"] or "the candidate"
    lines = [f"# Backtest of {candidate} against live, scene {run['scene']}", ""]
    overview, *rest = tables(doc)
    lines += [f"- **{key}**: {_cell(value)}" for key, value in overview.rows]
    for table in rest:
        lines += ["", f"## {table.title}", ""]
        if table.rows:
            lines += _markdown_table(table)
        if table.caption:
            lines += ["", f"*{table.caption}*"]
        if table.chart is not None and table.chart in charts:
            lines += ["", f"![{CHARTS[table.chart][1]}]({charts[table.chart]})"]
    if run["errors"]:
        lines += ["", "## Bad rows", "",
                  f"{run['errors']:,} rows were not decided; each is in "
                  "[errors.jsonl](errors.jsonl) with its row number and the reason."]
    return "\n".join(lines) + "\n"


# The directory --------------------------------------------------------------------------


class ReportDir:
    """A report directory in the making (see the module docstring). Made before the run:
    `errors` takes the bad rows as they come; `finish` writes the rest and renames the
    whole to DIR; leaving the `with` block otherwise removes everything."""

    def __init__(self, directory: Path,
                 draw: Callable[[dict[str, Any], Path], dict[str, str]] | None = None
                 ) -> None:
        self.directory = directory
        self.draw = draw
        where = str(directory)
        if directory.exists() and not (directory.is_dir() and not any(directory.iterdir())):
            raise ReportError(f"report directory {where!r} already exists and is not empty; "
                              "give a new one")
        parent = directory.absolute().parent
        if not parent.is_dir():
            raise ReportError(f"cannot write the report {where!r}: directory {str(parent)!r} "
                              "does not exist")
        try:
            self.staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
            os.chmod(self.staging, 0o777 & ~_umask())  # mkdtemp's is private (0700)
        except OSError as exc:
            raise ReportError(f"cannot write the report {where!r}: "
                              f"{exc.strerror or exc}") from None
        try:
            self.errors: RecordWriter = open_writer(self.staging / "errors.jsonl",
                                                    ERROR_FIELDS)
        except BaseException:
            self.discard()
            raise
        self._errors_open = True

    def _close_errors(self) -> None:
        if self._errors_open:
            self._errors_open = False
            self.errors.close()

    def finish(self, doc: dict[str, Any]) -> None:
        """Write report.json, the charts and report.md, then put the whole at DIR."""
        staging = self.staging
        self._close_errors()
        (staging / "report.json").write_text(json.dumps(doc, indent=2) + "\n",
                                             encoding="utf-8")
        charts = (self.draw or write_charts)(doc, staging)
        (staging / "report.md").write_text(markdown_report(doc, charts), encoding="utf-8")
        try:
            os.rename(staging, self.directory)
        except OSError as exc:
            raise ReportError(f"cannot put the report at {str(self.directory)!r}: "
                              f"{exc.strerror or exc}") from None

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> ReportDir:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.staging.exists():  # not renamed: the run or the report failed
            self._close_errors()
            self.discard()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
