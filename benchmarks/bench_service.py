"""HTTP load benchmark: riskengine's service against two FastAPI peers, driven by wrk.

Starts, each as its own process on a free port:

- riskengine: ``python -m riskengine serve`` (example config, scene ``transfer``, SQLite
  decision log in a temporary state dir), one worker;
- peer A (``benchmarks/peers/noop_app.py``): FastAPI + Pydantic body, no work;
- peer B (``benchmarks/peers/seed_style_app.py``): FastAPI + Pydantic body + one Redis
  Lua velocity check per request, against a private ``redis-server``;
- the ceiling (``benchmarks/peers/asgi_ceiling_app.py``): a bare ASGI app answering
  constant JSON, what uvicorn itself costs per request;

all on uvicorn with uvloop and httptools. wrk (``benchmarks/wrk/transfer.lua``) posts
transfers with new event ids, wall-clock event times and accounts from a
``benchmarks.workload`` pool. The servers (and Redis) are pinned to one core, wrk and this
script to the other.

Measures: single-event evaluate (requests/s, latency percentiles, non-2xx, server CPU per
request), batch evaluate (events/s), rule reload latency under load (admin API and config
file watcher), a py-spy profile of riskengine under the same load, and the event-loop
stalls (full garbage collections, snapshots) of a fresh service as its state grows. Writes
``benchmarks/results/service.json`` (or ``--output``; the profile files beside it) and
prints Markdown tables.

``--state-redis`` adds to the single-event runs riskengine with its state in Redis
(``--state redis://...``), once per ``--workers`` count, each with its own private
redis-server (``hash-max-listpack-value 256``, pinned with the servers; a service with more
than one worker is not pinned, so its workers share both cores with wrk), and reports the
Redis memory its state took per event (``used_memory`` after the runs minus after start,
over the events evaluated; every event stays within the 1 h windows during the runs).
With ``--workers 1`` among them, the profile phase profiles that Redis-state service
(``service_redis_profile.txt`` / ``.svg``) instead of the in-memory one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import service_report
from benchmarks.loadgen import Probe, parse_metrics, write_pool
from benchmarks.procs import (
    BenchError,
    Proc,
    machine,
    tool_version,
)
from benchmarks.service_phases import (
    batch_runs,
    profile_run,
    reload_runs,
    single_runs,
    stall_runs,
)
from benchmarks.service_runner import (
    METRICS,
    RESULTS,
    ROOT,
    Bench,
    add_bench_options,
    console,
    state_lsn,
)

TARGETS = {"requests_per_s": 5000, "p99_ms": 15.0, "ratio_to_seed_style": 2.5,
           "batch_events_per_s": 50_000, "reload_s": 1.0}

def redis_used_memory(port: int) -> int:
    import redis

    client = redis.Redis(port=port)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


# -- setup and report -----------------------------------------------------------------

def check_tools(install: bool) -> None:
    missing = [tool for tool in ("wrk", "redis-server") if shutil.which(tool) is None]
    if missing and install and shutil.which("apt-get"):
        packages = ["wrk" if t == "wrk" else "redis-server" for t in missing]
        console.print(f"installing {' '.join(packages)} with apt-get")
        subprocess.run(["apt-get", "install", "-y", *packages], check=False)
        missing = [tool for tool in missing if shutil.which(tool) is None]
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: apt-get install -y wrk redis-server "
                         "(or run with --install-tools)")


def code_fingerprint() -> str:
    """A hash of riskengine's sources: which code was measured."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "riskengine").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic",
                 "orjson", "redis", "hiredis", "py-spy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["wrk"] = tool_version(["wrk", "--version"])
    out["redis-server"] = tool_version(["redis-server", "--version"])
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_service", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up per run")
    p.add_argument("--reps", type=int, default=3, help="measured runs per target")
    add_bench_options(p, attempts=3, quiet_wait=120.0)
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[100, 500])
    p.add_argument("--batch-connections", type=int, default=4)
    p.add_argument("--reload-trials", type=int, default=5)
    p.add_argument("--profile-seconds", type=int, default=15)
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["peers", "batch", "reload", "profile", "stalls"])
    p.add_argument("--stall-runs", type=int, default=6,
                   help="back-to-back runs of the stall phase")
    p.add_argument("--stall-snapshot-interval", type=float, default=60.0,
                   help="the traced service's snapshot interval (s)")
    p.add_argument("--install-tools", action="store_true",
                   help="apt-get install wrk / redis-server when missing")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--state-redis", action="store_true",
                   help="also measure riskengine with its state in a private redis-server")
    p.add_argument("--workers", type=int, nargs="*", default=[1],
                   help="with --state-redis: the worker counts to measure")
    p.add_argument("--features", choices=("example", "seed"), default="example",
                   help="riskengine's config: the example config (12 features, lists, a "
                        "model, 5 rules), or the seed's three features and its rule, like "
                        "for like with peer B")
    p.add_argument("--output", type=Path, default=None,
                   help="default: results/service.json (service_redis.json with --state-redis)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.output is None:
        name = "service_redis" if args.state_redis else "service"
        suffix = "_seed" if args.features == "seed" else ""
        args.output = RESULTS / f"{name}{suffix}.json"
    check_tools(args.install_tools)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        args.no_pin = True
    if not args.no_pin:
        os.sched_setaffinity(0, {args.client_cpu})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="riskbench-"))
    bench = Bench(args, tmp)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench_service " + " ".join(argv or sys.argv[1:]),
        "machine": machine(), "versions": versions(), "code_fingerprint": code_fingerprint(),
        "pinning": None if args.no_pin else {"servers_and_redis": args.server_cpu,
                                             "wrk_and_probe": args.client_cpu},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": TARGETS,
    }
    try:
        console.print(f"pool: {args.pool_events:,} workload events (seed {args.seed})")
        bench.rows = write_pool(bench.pool, args.pool_events, args.seed)
        console.print("starting servers")
        targets: dict[str, list[Proc]] = {"riskengine": [bench.riskengine("riskengine")]}
        if "peers" not in args.skip:
            redis = bench.redis()
            targets["noop"] = [bench.peer("noop", "noop_app")]
            targets["asgi_ceiling"] = [bench.peer("asgi_ceiling", "asgi_ceiling_app")]
            targets["seed_style"] = [bench.peer(
                "seed_style", "seed_style_app",
                {"RISKBENCH_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}), redis]
        shared: dict[str, Any] = {}
        if args.state_redis:
            for workers in args.workers:
                name = f"riskengine_redis_w{workers}"
                store = bench.redis(f"redis-{name}", "--hash-max-listpack-value", "256")
                url = f"redis://127.0.0.1:{store.port}/0"
                targets[name] = [bench.riskengine(name, "--state", url, "--workers",
                                                  str(workers), pin=workers == 1), store]
                shared[name] = {"workers": workers, "pinned": workers == 1,
                                "used_memory_at_start": redis_used_memory(store.port),
                                "lsn_at_start": state_lsn(targets[name][0])}
        engine = targets["riskengine"][0]
        console.print(f"single-event evaluate: {args.connections} connections, "
                      f"{args.reps} x {args.duration:.0f} s")
        report["single"] = single_runs(bench, targets)
        for name, info in shared.items():
            info["used_memory_after"] = redis_used_memory(targets[name][1].port)
            info["lsn_after"] = state_lsn(targets[name][0])
            events = (info["lsn_after"] or 0) - (info["lsn_at_start"] or 0)
            info["events"] = events
            info["bytes_per_event"] = round(
                (info["used_memory_after"] - info["used_memory_at_start"]) / max(events, 1), 1)
            console.print(f"  {name}: {events:,} events, {info['bytes_per_event']:.0f} B of "
                          f"Redis used_memory per event")
        if shared:
            report["redis_state"] = shared
        if "batch" not in args.skip:
            console.print("batch evaluate")
            report["batch"] = batch_runs(bench, engine)
        probe = Probe(engine.port)
        _, text = probe.call("GET", "/metrics")
        probe.close()
        report["riskengine_after_load"] = {"metrics": parse_metrics(text, METRICS),
                                           "rss_mb": round(engine.rss_mb(), 1)}
        if "profile" not in args.skip:
            console.print("profile (py-spy)")
            if "riskengine_redis_w1" in targets:  # the one-worker service on Redis state
                report["profile"] = profile_run(bench, targets["riskengine_redis_w1"][0],
                                                "service_redis_profile")
            else:
                report["profile"] = profile_run(bench, engine)
        if "reload" not in args.skip:
            console.print("rule reload under load")
            report["reload"] = reload_runs(bench)
        if "stalls" not in args.skip:
            console.print("event-loop stalls (GC, snapshots) of a fresh service under load")
            report["stalls"] = stall_runs(bench)
    finally:
        bench.stop_all()
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["verdicts"] = service_report.verdicts(report)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(service_report.markdown(report))
    console.print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        console.print(f"[red]{exc}[/]")
        sys.exit(1)
