"""`riskengine labels import`: JSONL and CSV, bad rows reported by line with the good
ones stored, and refusals of what cannot be used at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskengine.decisionlog import open_log
from riskengine.service.runtime import DECISIONS_FILE
from tests.cli.clitools import run


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    open_log(None, path_default=directory / DECISIONS_FILE).close()
    return directory


def stored(state_dir: Path) -> dict[str, str]:
    log = open_log(None, path_default=state_dir / DECISIONS_FILE)
    try:
        return {e: lab.label for e, lab in log.labels_for(
            ["e1", "e2", "e3", "e4", "e5"]).items()}
    finally:
        log.close()


def test_jsonl_with_bad_rows_stores_the_good_ones_and_exits_1(
        tmp_path: Path, state_dir: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"event_id": "e1", "label": "fraud"}\n'
                    "\n"
                    '{"event_id": "e2", "label": "no good"}\n'
                    "{broken\n"
                    '{"event_id": "e3", "label": "legit", "time": "2026-01-05T00:00:00Z", '
                    '"source": "feed"}\n', encoding="utf-8")
    result = run("labels", "import", path, "--state-dir", state_dir)
    assert result.exit_code == 1
    assert "line 3: label must be" in result.stderr and "line 4: not JSON" in result.stderr
    assert "2 labels stored, 2 bad rows of 4" in result.stdout
    assert stored(state_dir) == {"e1": "fraud", "e3": "legit"}


def test_csv_in_any_column_order(tmp_path: Path, state_dir: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("label,event_id,time\nfraud,e1,1767571200000\nlegit,e2,\n"
                    "chargeback,e4,soon\nmule_drain,e5\n", encoding="utf-8")
    result = run("labels", "import", path, "--decision-log",
                 f"sqlite:///{state_dir / DECISIONS_FILE}")
    assert result.exit_code == 1
    assert "line 4:" in result.stderr and "line 5: 2 cells" in result.stderr
    assert stored(state_dir) == {"e1": "fraud", "e2": "legit"}
    clean = tmp_path / "clean.csv"
    clean.write_text("event_id,label\ne3,fraud\n", encoding="utf-8")
    assert run("labels", "import", clean, "--state-dir", state_dir).exit_code == 0


def test_what_cannot_be_used_at_all_exits_2(tmp_path: Path, state_dir: Path) -> None:
    header = tmp_path / "bad.csv"
    header.write_text("id,label,colour\ne1,fraud,red\n", encoding="utf-8")
    result = run("labels", "import", header, "--state-dir", state_dir)
    assert result.exit_code == 2 and "missing event_id" in result.stderr
    binary = tmp_path / "labels.jsonl"
    binary.write_bytes(b"\xff\xfe{")
    assert run("labels", "import", binary, "--state-dir", state_dir).exit_code == 2
    assert run("labels", "import", tmp_path / "absent.csv", "--state-dir",
               state_dir).exit_code == 2
    good = tmp_path / "good.jsonl"
    good.write_text('{"event_id": "e1", "label": "fraud"}\n', encoding="utf-8")
    missing = run("labels", "import", good, "--state-dir", tmp_path / "no-state")
    assert missing.exit_code == 2 and "no decision log" in missing.stderr
    assert run("labels", "import", good, "--decision-log", "ftp://x/y").exit_code == 2
    assert stored(state_dir) == {}


def test_experiments_report_refusals(tmp_path: Path, state_dir: Path) -> None:
    assert run("experiments", "report", "--scene", "transfer", "--since", "soon",
               "--state-dir", state_dir).exit_code == 2
    empty = run("experiments", "report", "--scene", "transfer", "--state-dir", state_dir)
    assert empty.exit_code == 0 and "0 without one" in empty.stdout
