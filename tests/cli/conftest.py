"""The session's generated traffic, shared by the CLI tests."""

from __future__ import annotations

import json

import pytest

from tests.cli.clitools import EVENTS, SEED, Generated, run

__all__ = ["generated"]


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("generated")
    paths = {fmt: root / f"transfers.{fmt}" for fmt in ("jsonl", "csv", "parquet")}
    for path in paths.values():
        result = run("generate", "--events", EVENTS, "--seed", SEED, "--output", path)
        assert result.exit_code == 0, result.output
    decisions = root / "decisions.jsonl"
    summary = root / "summary.json"
    result = run("replay", paths["jsonl"], "--output", decisions, "--summary-json", summary)
    assert result.exit_code == 0, result.output
    return Generated(paths["jsonl"], paths["csv"], paths["parquet"], decisions,
                     json.loads(summary.read_text(encoding="utf-8")), result.stdout)
