"""Unit tests of `backfill`'s two steps with a target of the test's own: what is
committed, what is abandoned, and a summary that cannot read the state back."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from riskengine.batch.backfill import BackfillStoppedError, backfill, render_backfill
from riskengine.batch.io import open_reader
from riskengine.engine import Engine
from tests.backfilling import write_jsonl
from tests.service.helpers import transfer


class Recorder:
    """A target in memory that records what `backfill` asked of it."""

    description = "recorder"

    def __init__(self, *, commit_fails: bool = False, keys_fail: bool = False) -> None:
        self.calls: list[str] = []
        self.commit_fails = commit_fails
        self.keys_fail = keys_fail

    def open(self, scene: str) -> Engine:
        self.calls.append("open")
        return Engine.from_config(None)

    def commit(self, engine: Engine, scene: str) -> None:
        self.calls.append(f"commit lsn {engine.lsn}")
        if self.commit_fails:
            raise OSError(28, "No space left on device")

    def abandon(self, engine: Engine, scene: str) -> str:
        self.calls.append("abandon")
        return "nothing kept"

    def keys(self, engine: Engine, scene: str) -> int:
        if self.keys_fail:
            raise ConnectionError("gone")
        return int(engine.stats()[scene]["entities"])


def history(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "h.jsonl", [transfer(i) for i in range(5)])


def test_the_state_is_committed_once_every_row_went_through(tmp_path: Path) -> None:
    target = Recorder()
    summary = backfill(target, "transfer", open_reader(history(tmp_path)))
    assert target.calls == ["open", "commit lsn 5"]
    assert (summary.rows, summary.events, summary.lsn, summary.keys) == (5, 5, 5, 3)
    assert summary.clock == transfer(4)["timestamp"]


def test_a_commit_that_fails_is_abandoned_and_says_what_is_left(tmp_path: Path) -> None:
    target = Recorder(commit_fails=True)
    with pytest.raises(BackfillStoppedError, match="No space left on device; nothing kept"):
        backfill(target, "transfer", open_reader(history(tmp_path)))
    assert target.calls == ["open", "commit lsn 5", "abandon"]


def test_a_summary_that_cannot_read_the_state_back_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = backfill(Recorder(keys_fail=True), "transfer", open_reader(history(tmp_path)))
    assert summary.unread == "ConnectionError: gone"
    render_backfill(summary, Console(width=120))
    assert "not read back: ConnectionError: gone" in capsys.readouterr().out
