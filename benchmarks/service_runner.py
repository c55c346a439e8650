"""The servers and wrk runs of ``benchmarks.bench_service``: one `Bench` per run."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from benchmarks.bench_engine import engine_config
from benchmarks.loadgen import BATCH, Load, Probe, WrkRun
from benchmarks.procs import (
    TICKS,
    Proc,
    core_jiffies,
    free_port,
    load_average,
    start,
    wait_port,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLE_CONFIG = ROOT / "riskengine" / "examples" / "config.yaml"
RULESET = "/v1/scenes/transfer/ruleset"
_T = {"scene": "transfer"}
METRICS = {
    "accept": ("riskengine_decisions_total", {**_T, "decision": "accept"}),
    "review": ("riskengine_decisions_total", {**_T, "decision": "review"}),
    "reject": ("riskengine_decisions_total", {**_T, "decision": "reject"}),
    "late": ("riskengine_late_events_total", _T),
    "duplicates": ("riskengine_duplicate_events_total", _T),
    "snapshots": ("riskengine_snapshots_total", {}),
    "request_errors": ("riskengine_request_errors_total", {}),
    "log_failures": ("riskengine_decision_log_failures_total", {}),
    "reloads": ("riskengine_ruleset_reloads_total", {}),
}

console = Console(stderr=True)


class Bench:
    """The servers of one benchmark run and the settings every wrk run shares."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.server_cpu = None if args.no_pin else args.server_cpu
        self.client_cpu = None if args.no_pin else args.client_cpu
        self.pool = tmp / "pool.tsv"
        self.rows: list[tuple[str, str, str]] = []
        self.procs: dict[str, Proc] = {}
        self.offsets: dict[str, int] = {}
        self.runs = 0

    # -- servers

    def riskengine(self, name: str, *extra: str, pin: bool = True) -> Proc:
        port = free_port_for(self)
        state = self.tmp / f"state-{name}"
        cmd = [sys.executable, "-m", "riskengine", "serve", "--port", str(port),
               "--state-dir", str(state), "--log-level", "warning", *self.config(), *extra]
        proc = start(name, cmd, port=port, cpu=self.server_cpu if pin else None,
                     log_dir=self.tmp, cwd=ROOT)
        self.procs[name] = proc
        wait_ready(proc, timeout_s=120)
        return proc

    def config(self) -> list[str]:
        """The `--config` of every riskengine server of the run: none (the example
        config), or the seed's three features and its rule (`--features seed`)."""
        if getattr(self.args, "features", "example") != "seed":
            return []
        path = self.tmp / "seed-config.yaml"
        if not path.exists():
            path.write_text(yaml.safe_dump(engine_config(schema=True)))
        return ["--config", str(path)]

    def peer(self, name: str, module: str, env: dict[str, str] | None = None) -> Proc:
        port = free_port_for(self)
        cmd = [sys.executable, "-m", "uvicorn", f"benchmarks.peers.{module}:app",
               "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
               "--http", "httptools", "--workers", "1", "--no-access-log",
               "--log-level", "warning"]
        proc = start(name, cmd, port=port, cpu=self.server_cpu, log_dir=self.tmp, env=env,
                     cwd=ROOT)
        self.procs[name] = proc
        wait_ready(proc)
        return proc

    def redis(self, name: str = "redis", *extra: str) -> Proc:
        port = free_port_for(self)
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(self.tmp), *extra]
        proc = start(name, cmd, port=port, cpu=self.server_cpu, log_dir=self.tmp)
        self.procs[name] = proc
        wait_port(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.procs.clear()

    # -- load

    def load(self, proc: Proc, *, batch: int = 0) -> Load:
        a = self.args
        return Load(port=proc.port, pool=self.pool, cpu=self.client_cpu,
                    connections=a.batch_connections if batch else a.connections,
                    threads=a.threads, batch=batch,
                    path=BATCH if batch else "/v1/transfer/evaluate")

    def wrk(self, name: str, load: Load, seconds: float) -> WrkRun:
        self.runs += 1
        offset = self.offsets.get(name, 0)
        return WrkRun(load, seconds, offset=offset, tag=f"r{self.runs}", out_dir=self.tmp)

    def wait_quiet(self) -> float:
        """Wait (up to --quiet-wait s) until the machine's other work leaves both cores
        nearly idle; the servers are idle here. Returns the seconds waited."""
        if self.server_cpu is None or self.client_cpu is None:
            return 0.0
        started = time.perf_counter()
        while time.perf_counter() - started < self.args.quiet_wait:
            before = [core_jiffies(c) for c in (self.server_cpu, self.client_cpu)]
            time.sleep(1.0)
            after = [core_jiffies(c) for c in (self.server_cpu, self.client_cpu)]
            busy = max(100 * (a[0] - b[0]) / max(a[1] - b[1], 1)
                       for a, b in zip(after, before, strict=True))
            if busy <= self.args.max_foreign:
                break
        return time.perf_counter() - started

    def measure(self, name: str, load: Load, seconds: float,
                procs: Sequence[Proc], warmup: float = 0.0) -> dict[str, Any]:
        """A (warm-up and) measured run, repeated while other processes took more than
        --max-foreign % of the servers' core (at most --attempts times; the cleanest is
        kept)."""
        tries: list[dict[str, Any]] = []
        for attempt in range(1, max(self.args.attempts, 1) + 1):
            waited = self.wait_quiet()
            if warmup:
                self.wrk(name, load, warmup).result()
            result = self.measure_once(name, load, seconds, procs)
            result["attempt"] = attempt
            result["waited_for_quiet_s"] = round(waited, 1)
            tries.append(result)
            foreign = result.get("server_core_foreign_pct", 0.0)
            if foreign <= self.args.max_foreign:
                break
            console.print(f"  [yellow]other processes took {foreign:.0f} % of the servers' "
                          f"core: run again[/]")
        return min(tries, key=lambda r: r.get("server_core_foreign_pct", 0.0))

    def measure_once(self, name: str, load: Load, seconds: float,
                     procs: Sequence[Proc]) -> dict[str, Any]:
        """One wrk run with the server side's CPU time (and wrk's) around it."""
        before = [p.cpu_seconds() for p in procs]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        loadavg = load_average()
        core = core_jiffies(self.server_cpu) if self.server_cpu is not None else None
        started = time.perf_counter()
        result = self.wrk(name, load, seconds).result()
        wall = time.perf_counter() - started
        after = [p.cpu_seconds() for p in procs]
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.offsets[name] = self.offsets.get(name, 0) + result["requests"] * max(load.batch, 1)
        cpu = sum(after) - sum(before)
        if core is not None and self.server_cpu is not None:
            busy, total = core_jiffies(self.server_cpu)
            core_s = (total - core[1]) / TICKS
            result["server_core_busy_pct"] = round(100 * (busy - core[0]) / (total - core[1]), 1)
            # What other processes of the machine took from the servers' core.
            result["server_core_foreign_pct"] = round(
                max(0.0, 100 * ((busy - core[0]) / TICKS - cpu) / core_s), 1)
        items = max(result["ok_requests"] * max(load.batch, 1), 1)
        result.pop("wrk_output", None)
        result.update({
            "server_cpu_s": round(cpu, 3),
            "server_cpu_pct": round(100 * cpu / result["seconds"], 1),
            "server_cpu_us_per_event": round(1e6 * cpu / items, 1),
            "server_cpu_by_process": {p.name: round(a - b, 3)
                                      for p, a, b in zip(procs, after, before, strict=True)},
            "wrk_cpu_pct": round(100 * ((done.ru_utime - children.ru_utime)
                                        + (done.ru_stime - children.ru_stime)) / wall, 1),
            "loadavg_before": loadavg,
        })
        return result


def add_bench_options(p: argparse.ArgumentParser, *, attempts: int,
                      quiet_wait: float) -> None:
    """The options `Bench` reads (load, workload, pinning, quiet-machine checks), with a
    benchmark's own defaults for `attempts` and `quiet_wait`."""
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--pool-events", type=int, default=400_000)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--max-foreign", type=float, default=10.0,
                   help="%% of the servers' core other processes may take in a kept run")
    p.add_argument("--attempts", type=int, default=attempts,
                   help="tries per run while other processes take more than --max-foreign")
    p.add_argument("--quiet-wait", type=float, default=quiet_wait,
                   help="seconds to wait for an idle machine before each run")


def free_port_for(bench: Bench) -> int:
    used = {p.port for p in bench.procs.values()}
    while (port := free_port()) in used:
        pass
    return port


def state_lsn(proc: Proc) -> int | None:
    """Events the service holds (its LSN), from /readyz."""
    probe = Probe(proc.port)
    try:
        status, body = probe.call("GET", "/readyz")
    finally:
        probe.close()
    return int(body["detail"]["lsn"]) if status == 200 else None


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread: the main thread by name, the others by tid."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        name = "main thread" if task.name == str(pid) else f"thread {task.name}"
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


