"""Load for the HTTP benchmark: the event pool, wrk runs, and a one-connection probe client.

wrk (``benchmarks/wrk/transfer.lua``) sends the events; each request carries a new
``event_id`` and the wall clock as its event time, on accounts taken in order from a pool
built by ``benchmarks.workload`` (Zipf-skewed payers and merchants, payroll accounts,
drains, mule hubs, smurfing, takeovers). The probe client is plain ``http.client`` on one
keep-alive connection, for the reload measurements.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.procs import BenchError, pinned
from benchmarks.workload import WorkloadSpec, generate

LUA = Path(__file__).resolve().parent / "wrk" / "transfer.lua"
EVALUATE = "/v1/transfer/evaluate"
BATCH = "/v1/transfer/evaluate/batch"
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def write_pool(path: Path, events: int, seed: int) -> list[tuple[str, str, str]]:
    """Write the pool of (pay_account, rcv_account, amount) rows wrk reads; return it."""
    rows = [(str(e["pay_account"]), str(e["rcv_account"]), repr(float(e["amount"])))  # type: ignore[arg-type]
            for e in generate(WorkloadSpec(events=events, seed=seed))]
    path.write_text("".join(f"{p}\t{r}\t{a}\n" for p, r, a in rows), encoding="utf-8")
    return rows


@dataclass(frozen=True)
class Load:
    """What one wrk run sends."""

    port: int
    pool: Path
    connections: int
    threads: int
    path: str = EVALUATE
    batch: int = 0
    cpu: int | None = None


class WrkRun:
    """One wrk process; `result()` waits for it and returns its numbers."""

    def __init__(self, load: Load, seconds: float, *, offset: int, tag: str,
                 out_dir: Path) -> None:
        self.load = load
        self.out = out_dir / f"wrk-{tag}.json"
        env = {**os.environ,
               "RISKBENCH_POOL": str(load.pool), "RISKBENCH_OFFSET": str(offset),
               "RISKBENCH_THREADS": str(load.threads), "RISKBENCH_BATCH": str(load.batch),
               "RISKBENCH_TAG": tag, "RISKBENCH_PATH": load.path,
               "RISKBENCH_OUT": str(self.out)}
        cmd = ["wrk", "-t", str(load.threads), "-c", str(load.connections),
               "-d", f"{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
               "-s", str(LUA), f"http://127.0.0.1:{load.port}"]
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(pinned(cmd, load.cpu), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def interrupt(self) -> None:
        """Stop early (wrk prints and reports what it did so far)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)

    def result(self, timeout_s: float = 600.0) -> dict[str, Any]:
        try:
            stdout, _ = self.popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            stdout, _ = self.popen.communicate()
            raise BenchError("wrk did not finish in time") from None
        text = stdout.decode(errors="replace")
        if self.popen.returncode != 0 or not self.out.exists():
            raise BenchError(f"wrk failed (exit {self.popen.returncode}):\n{text}")
        data: dict[str, Any] = json.loads(self.out.read_text())
        seconds = data["duration_us"] / 1e6
        errors = data["errors"]
        data["seconds"] = seconds
        data["requests_per_s"] = data["requests"] / seconds if seconds else 0.0
        data["non_2xx"] = errors["status"]
        data["socket_errors"] = errors["connect"] + errors["read"] + errors["write"] \
            + errors["timeout"]
        ok = data["requests"] - data["non_2xx"] - errors["timeout"]
        data["ok_requests"] = max(ok, 0)
        data["events_per_s"] = data["ok_requests"] * max(self.load.batch, 1) / seconds \
            if seconds else 0.0
        data["latency_ms"] = {k: v / 1000.0 for k, v in data.pop("latency_us").items()}
        data["wrk_output"] = text
        return data


class Probe:
    """One keep-alive connection for single requests outside the wrk load."""

    def __init__(self, port: int, *, token: str | None = None) -> None:
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None, *,
             admin: bool = False) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if admin and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None if body is None else json.dumps(body).encode()
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            raise
        ctype = response.getheader("content-type", "")
        return response.status, json.loads(raw) if "json" in ctype else raw.decode()

    def close(self) -> None:
        self.conn.close()


def probe_event(row: tuple[str, str, str], event_id: str) -> dict[str, Any]:
    pay, rcv, amount = row
    return {"event_id": event_id, "timestamp": int(time.time() * 1000),
            "pay_account": pay, "rcv_account": rcv, "amount": float(amount)}


def parse_metrics(text: str, wanted: Mapping[str, tuple[str, Mapping[str, str]]]
                  ) -> dict[str, float]:
    """Sum Prometheus samples: `wanted` maps an output key to a sample name and the labels
    a sample must carry (others may be present)."""
    totals = dict.fromkeys(wanted, 0.0)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        name, _, rest = sample.partition("{")
        labels = dict(_LABEL.findall(rest))
        for key, (want, need) in wanted.items():
            if name == want and all(labels.get(k) == v for k, v in need.items()):
                with contextlib.suppress(ValueError):
                    totals[key] += float(value)
    return totals
