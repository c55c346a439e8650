"""Opening: URL forms, reopening, bad locations, server outages, password masking."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest

from riskengine.decisionlog import DecisionLog, DecisionLogError, open_log
from riskengine.decisionlog.urls import mask_url
from tests.decisionlog.logsupport import record, write_all
from tests.servers import POSTGRES_PASSWORD, free_port, postgres_server

REPO = Path(__file__).resolve().parents[2]


def test_sqlite_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = tmp_path / "state" / "default.db"
    cases = [(None, default), ("", default), ("plain.db", tmp_path / "plain.db"),
             (str(tmp_path / "abs.db"), tmp_path / "abs.db"),
             ("sqlite:///relative/rel.db", tmp_path / "relative" / "rel.db"),
             (f"sqlite:///{tmp_path / 'four.db'}", tmp_path / "four.db"),
             (f"SQLITE:///{tmp_path / 'upper.db'}", tmp_path / "upper.db")]
    for lsn, (url, path) in enumerate(cases, 1):
        log = open_log(url, path_default=default)
        try:
            write_all(log, [record(lsn)])
        finally:
            log.close()
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT count(*) FROM decisions WHERE lsn = ?", (lsn,))
            assert found.fetchone() == (1,), url
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()


@pytest.mark.parametrize("url", ["mysql://root:hunter2@db/risk", "sqlite://", "sqlite://x.db",
                                 "redis://:hunter2@localhost:6379/0"])
def test_bad_urls_are_refused_without_the_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(DecisionLogError) as caught:
        open_log(url, path_default=tmp_path / "d.db")
    assert "hunter2" not in str(caught.value)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a SQLite database, it is just text" * 100)
    with pytest.raises(DecisionLogError, match="cannot open the decision log"):
        open_log(str(junk), path_default=junk)


def test_a_path_that_cannot_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(DecisionLogError, match="cannot open the decision log"):
        open_log(str(tmp_path / "taken" / "d.db"), path_default=tmp_path / "d.db")


def test_reopening_keeps_the_data(log_url: str, open_at: Any) -> None:
    first: DecisionLog = open_at(log_url)
    write_all(first, [record(n) for n in range(1, 51)])
    first.close()
    second: DecisionLog = open_at(log_url)
    assert second.count() == 50 and second.max_lsn() == 50
    write_all(second, [record(51)])
    assert [lsn for lsn, _, _ in second.events_after(48)] == [49, 50, 51]


def test_two_logs_on_one_database_share_it(log_url: str, open_at: Any) -> None:
    one: DecisionLog = open_at(log_url)
    two: DecisionLog = open_at(log_url)
    write_all(one, [record(1)])
    write_all(two, [record(2)])
    assert one.count() == two.count() == 2


def test_a_committed_sqlite_record_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{str(REPO)!r}]
        from pathlib import Path
        from tests.decisionlog.logsupport import record
        from riskengine.decisionlog import open_log
        log = open_log({str(path)!r}, path_default=Path("unused.db"))
        futures = [log.append(record(n)) for n in range(1, 301)]
        for future in futures:
            future.result(timeout=60)
        print("committed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.strip() == "committed", done.stderr
    assert done.returncode == -9
    log = open_log(str(path), path_default=path)
    try:
        assert log.count() == 300 and log.max_lsn() == 300
    finally:
        log.close()


def test_mask_url() -> None:
    assert mask_url("postgresql://u:p%40ss@h:1/d") == "postgresql://u:***@h:1/d"
    assert mask_url("postgresql://u@h/d") == "postgresql://u@h/d"
    assert mask_url("postgresql://h/d?user=u&PASSWORD=x&sslmode=require") == (
        "postgresql://h/d?user=u&PASSWORD=***&sslmode=require")


# ---- PostgreSQL outages --------------------------------------------------------------

def test_an_unreachable_server_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://riskengine:Sup3r-Secret@127.0.0.1:{free_port()}/riskengine"
    with pytest.raises(DecisionLogError) as caught:
        open_log(url, path_default=tmp_path / "d.db", connect_timeout=2)
    message = str(caught.value)
    assert "Sup3r-Secret" not in message
    assert "postgresql://riskengine:***@127.0.0.1" in message
    assert "cannot open the decision log" in message
    assert caught.value.__suppress_context__  # the driver's own error is not chained


def test_a_wrong_password_is_a_clear_error_without_the_password(
        postgres_url: str, tmp_path: Path) -> None:
    head, tail = postgres_url.split("@", 1)
    url = head.rsplit(":", 1)[0] + ":Wr0ng-Passw0rd@" + tail
    with pytest.raises(DecisionLogError, match="password authentication failed") as caught:
        open_log(url, path_default=tmp_path / "d.db")
    assert "Wr0ng-Passw0rd" not in str(caught.value)


def _drop_connections(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND application_name = 'riskengine-decisionlog'",
                     (database,))


def test_a_lost_connection_fails_one_batch_then_the_log_reconnects(
        postgres_url: str, fresh_postgres_url: str, open_at: Any) -> None:
    log: DecisionLog = open_at(fresh_postgres_url)
    write_all(log, [record(1)])
    assert log.count() == 1
    _drop_connections(postgres_url, fresh_postgres_url.rsplit("/", 1)[1])
    lost = log.append(record(2))
    with pytest.raises(DecisionLogError) as caught:
        lost.result(timeout=60)
    assert POSTGRES_PASSWORD not in str(caught.value) and "***" in str(caught.value)
    write_all(log, [record(3)])  # the writer reconnected
    assert log.count() == 2  # the reader reconnected too (one retry on a fresh connection)
    assert [lsn for lsn, _, _ in log.events_after(0)] == [1, 3]


def test_a_stopped_server_fails_queries_and_appends_cleanly(tmp_path: Path) -> None:
    with postgres_server() as url:
        log = open_log(url, path_default=tmp_path / "d.db", connect_timeout=2)
        write_all(log, [record(1)])
    # The server is gone now.
    future = log.append(record(2))
    with pytest.raises(DecisionLogError) as caught:
        future.result(timeout=60)
    assert POSTGRES_PASSWORD not in str(caught.value)
    with pytest.raises(DecisionLogError, match="counting decisions failed"):
        log.count()
    log.close()
