"""A directory of backtest reports, as the service's console reads it: one report
directory per backtest (what ``riskengine backtest --report DIR`` writes, riskengine/
batch/backtest_report.py), each named by its directory and holding ``report.json``.

Names come from users (a query string), so every read is confined to the directory: a
name is one path component of letters, digits and ``_ . -`` not starting with a dot
(the report writer's staging directories do), and a name whose directory or
report.json resolves outside (a symbolic link) is unknown. A report.json that is not
JSON, is too large, or lacks the sections the tables read is `ReportUnreadableError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from riskengine.exceptions import RiskEngineError

__all__ = ["MAX_REPORT_BYTES", "ReportNotFoundError", "ReportStore", "ReportSummary",
           "ReportUnreadableError", "check_report"]

REPORT_FILE = "report.json"
MAX_REPORT_BYTES = 32 * 1024 * 1024
MAX_LISTED = 500
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\Z")
_SECTIONS = ("run", "arms", "baseline", "events", "decisions", "alert_rate", "changed",
             "transitions", "rules", "rule_errors", "daily", "labelled")


class ReportNotFoundError(RiskEngineError):
    """No report of that name in the directory (or a name that may not be read)."""


class ReportUnreadableError(RiskEngineError):
    """The report's report.json cannot be read as a backtest report."""


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """One line of the report list."""

    name: str
    modified_ms: int
    scene: str | None = None
    versions: dict[str, str] | None = None
    events: int | None = None
    changed: dict[str, int] | None = None
    errors: int | None = None
    problem: str | None = None
    """Why the report cannot be shown (the other fields are then None)."""


def check_report(doc: object) -> dict[str, Any]:
    """`doc` when it has the sections of a backtest report; `ReportUnreadableError`
    naming the first one missing or of the wrong kind."""
    if not isinstance(doc, dict):
        raise ReportUnreadableError("report.json holds no JSON object")
    for section in _SECTIONS:
        if section not in doc:
            raise ReportUnreadableError(f"report.json has no {section!r} section")
    run = doc["run"]
    if not isinstance(run, dict) or not isinstance(run.get("versions"), dict):
        raise ReportUnreadableError("report.json's 'run' section has no 'versions'")
    arms = doc["arms"]
    if not isinstance(arms, list) or not arms or doc["baseline"] not in arms:
        raise ReportUnreadableError("report.json's 'arms' do not include its 'baseline'")
    return doc


class ReportStore:
    """The report directories under `root` (made when first written to)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        """Where report `name` is (or goes); `ReportNotFoundError` for a name that may not
        be used."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ReportNotFoundError(f"no report named {name[:100]!r}: a report name is "
                                      "letters, digits and _ . - (not starting with .)")
        return self.root / name

    def _report_file(self, name: str) -> Path:
        directory = self.path(name)
        root = self.root.resolve()
        try:
            found = (directory / REPORT_FILE).resolve(strict=True)
        except (OSError, RuntimeError):
            raise ReportNotFoundError(f"no report named {name!r}") from None
        if found.parent.parent != root or not found.is_file():
            raise ReportNotFoundError(f"no report named {name!r}")
        return found

    def read(self, name: str) -> dict[str, Any]:
        """The checked report.json of report `name`."""
        path = self._report_file(name)
        try:
            size = path.stat().st_size
            if size > MAX_REPORT_BYTES:
                raise ReportUnreadableError(
                    f"report.json of {name!r} is {size:,} bytes, more than the "
                    f"{MAX_REPORT_BYTES:,} the console shows")
            text = path.read_bytes().decode("utf-8")
            doc = json.loads(text)
        except OSError as exc:
            raise ReportUnreadableError(f"cannot read report.json of {name!r}: "
                                        f"{exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ReportUnreadableError(f"report.json of {name!r} is not UTF-8 text (byte "
                                        f"{exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ReportUnreadableError(f"report.json of {name!r} is not JSON: {exc.msg} at "
                                        f"line {exc.lineno}, column {exc.colno}") from None
        except RecursionError:
            raise ReportUnreadableError(f"report.json of {name!r} is nested too "
                                        "deeply") from None
        try:
            return check_report(doc)
        except ReportUnreadableError as exc:
            raise ReportUnreadableError(f"report {name!r}: {exc}") from None

    def names(self) -> list[str]:
        """The report names, newest first (at most `MAX_LISTED`)."""
        try:
            entries = [(entry.stat().st_mtime, entry.name) for entry in self.root.iterdir()
                       if _NAME.match(entry.name) and (entry / REPORT_FILE).is_file()]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ReportUnreadableError(f"cannot list {str(self.root)!r}: "
                                        f"{exc.strerror or exc}") from None
        entries.sort(reverse=True)
        return [name for _, name in entries[:MAX_LISTED]]

    def summaries(self) -> list[ReportSummary]:
        """A summary of every report, newest first; an unreadable one says why."""
        found = []
        for name in self.names():
            try:
                modified = int((self.root / name).stat().st_mtime * 1000)
            except OSError:
                continue  # removed meanwhile
            try:
                doc = self.read(name)
                run = doc["run"]
                found.append(ReportSummary(
                    name, modified, str(run.get("scene")), dict(run["versions"]),
                    int(doc["events"]), dict(doc["changed"]), int(run.get("errors", 0))))
            except (ReportNotFoundError, ReportUnreadableError, TypeError, ValueError) as exc:
                found.append(ReportSummary(name, modified, problem=str(exc)))
        return found

    def new_name(self, stem: str, now_ms: int) -> str:
        """A name for a new report: `stem` (made safe), the UTC time, a number if taken."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".")[:120] or "backtest"
        when = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"{safe}-{when}"
        number = 1
        while (self.root / name).exists() or any(self.root.glob(f".{name}.*")):
            number += 1
            name = f"{safe}-{when}-{number}"
        return name
