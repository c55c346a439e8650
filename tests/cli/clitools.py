"""Fixtures for the command-line tests: a runner and one generated, replayed data set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from riskengine.cli import app

EVENTS = 12_000
SEED = 11


def run(*args: str | Path | int) -> Result:
    """Invoke the CLI in-process; exceptions other than exits propagate to the test."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass(frozen=True)
class Generated:
    """The same generated traffic in the three formats, and its JSONL replay."""

    jsonl: Path
    csv: Path
    parquet: Path
    decisions: Path
    summary: dict[str, Any]
    stdout: str


