"""The measured phases of ``benchmarks.bench_service``: single-event and batch load,
rule reload under load, the py-spy profile, and the event-loop stall trace."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.loadgen import Probe, parse_metrics, probe_event
from benchmarks.procs import (
    BenchError,
    Proc,
    start,
    wait_ready,
)
from benchmarks.service_runner import (
    EXAMPLE_CONFIG,
    METRICS,
    ROOT,
    RULESET,
    Bench,
    console,
    free_port_for,
    state_lsn,
    thread_cpu,
)
from benchmarks.spyprofile import render, summarise

# -- phases -----------------------------------------------------------------------------

def single_runs(bench: Bench, targets: dict[str, list[Proc]]) -> dict[str, Any]:
    """Interleaved repetitions: every target once per round, warm-up before each run."""
    a = bench.args
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for rep in range(a.reps):
        for name, procs in targets.items():
            load = bench.load(procs[0])
            result = bench.measure(name, load, a.duration, procs, warmup=a.warmup)
            if name == "riskengine":
                result["lsn_after"] = state_lsn(procs[0])
            runs[name].append(result)
            console.print(f"  {name:<12} run {rep + 1}/{a.reps}: "
                          f"{result['requests_per_s']:8,.0f} req/s, p99 "
                          f"{result['latency_ms']['p99']:6.1f} ms, non-2xx "
                          f"{result['non_2xx']}, server CPU {result['server_cpu_pct']:.0f} %, "
                          f"others on its core {result.get('server_core_foreign_pct', 0):.0f} %")
    return {name: {"runs": r, **aggregate(r)} for name, r in runs.items()}


def batch_runs(bench: Bench, proc: Proc) -> dict[str, Any]:
    a = bench.args
    out: dict[str, Any] = {}
    for size in a.batch_sizes:
        load = bench.load(proc, batch=size)
        runs = []
        for rep in range(a.reps):
            result = bench.measure("riskengine", load, a.duration, [proc],
                                   warmup=max(2.0, a.warmup / 2))
            runs.append(result)
            console.print(f"  batch {size:<5} run {rep + 1}/{a.reps}: "
                          f"{result['events_per_s']:9,.0f} events/s, p99 "
                          f"{result['latency_ms']['p99']:6.1f} ms, non-2xx {result['non_2xx']}")
        out[str(size)] = {"runs": runs, **aggregate(runs)}
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["requests_per_s"] for r in runs]
    eps = [r["events_per_s"] for r in runs]
    lat = {k: statistics.median(r["latency_ms"][k] for r in runs)
           for k in ("p50", "p90", "p99", "p99_9", "max")}
    return {
        "best_requests_per_s": round(max(rps), 1),
        "median_requests_per_s": round(statistics.median(rps), 1),
        "best_events_per_s": round(max(eps), 1),
        "median_events_per_s": round(statistics.median(eps), 1),
        "median_latency_ms": lat,
        "worst_p99_ms": max(r["latency_ms"]["p99"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "median_server_cpu_pct": statistics.median(r["server_cpu_pct"] for r in runs),
        "median_server_cpu_us_per_event": statistics.median(
            r["server_cpu_us_per_event"] for r in runs),
        "max_server_core_foreign_pct": max(
            (r.get("server_core_foreign_pct", 0.0) for r in runs), default=0.0),
    }


def reload_runs(bench: Bench) -> dict[str, Any]:
    """Under wrk load, put new rulesets live through the admin API and by editing the
    config file, and time each until a response carries the new version."""
    a = bench.args
    config = bench.tmp / "reload" / "config.yaml"
    config.parent.mkdir()
    shutil.copy(EXAMPLE_CONFIG, config)
    # the config names its model by a path relative to itself
    shutil.copytree(EXAMPLE_CONFIG.parent / "models", config.parent / "models")
    proc = bench.riskengine("riskengine-reload", "--config", str(config))
    token = (bench.tmp / "state-riskengine-reload" / "admin-token").read_text().strip()
    probe = Probe(proc.port, token=token)
    load = bench.load(proc)
    bench.wrk("reload", load, a.warmup).result()
    background = bench.wrk("reload", load, 600)
    time.sleep(2.0)
    counter = iter(range(10**9))

    def until(t0: float, *, new: str | None = None, old: str | None = None
              ) -> dict[str, Any]:
        """Probe until a response carries version `new` (or any version but `old`)."""
        probes = 0
        while time.perf_counter() - t0 < 10.0:
            row = bench.rows[next(counter) % len(bench.rows)]
            status, body = probe.call("POST", "/v1/transfer/evaluate",
                                      probe_event(row, f"probe-{next(counter)}"))
            probes += 1
            version = body["ruleset_version"] if status == 200 else None
            if version is not None and (version == new if new else version != old):
                return {"live_s": time.perf_counter() - t0, "probes": probes,
                        "version": body["ruleset_version"]}
        return {"live_s": None, "probes": probes, "version": None}

    api, files = [], []
    try:
        for i in range(a.reload_trials):
            _, current = probe.call("GET", RULESET, admin=True)
            body = {"rules": rescored(current["rules"], 41 + i), "policy": current["policy"]}
            t0 = time.perf_counter()
            status, answer = probe.call("PUT", RULESET, body, admin=True)
            put_s = time.perf_counter() - t0
            if status != 200:
                raise BenchError(f"PUT {RULESET} answered {status}: {answer}")
            expected = answer["version"]
            api.append({"put_s": put_s, **until(t0, new=expected)})
            time.sleep(1.0)
        document = yaml.safe_load(EXAMPLE_CONFIG.read_text())
        for i in range(a.reload_trials):
            _, current = probe.call("GET", RULESET, admin=True)
            old = current["version"]
            scene = document["scenes"]["transfer"]
            scene["rules"] = rescored(scene["rules"], 61 + i)
            text = yaml.safe_dump(document, sort_keys=False)
            fresh = config.with_suffix(".tmp")
            fresh.write_text(text)
            t0 = time.perf_counter()
            os.replace(fresh, config)  # as editors save
            files.append(until(t0, old=old))
            time.sleep(1.0)
    finally:
        background.interrupt()
        under_load = background.result()
        _, text = probe.call("GET", "/metrics")
        probe.close()
    under_load.pop("wrk_output", None)
    return {"api": summarise_reloads(api), "file": summarise_reloads(files),
            "load": {k: under_load[k] for k in ("requests", "seconds", "requests_per_s",
                                                 "non_2xx", "socket_errors", "latency_ms")},
            "metrics": parse_metrics(text, METRICS)}


def rescored(rules: list[dict[str, Any]], score: int) -> list[dict[str, Any]]:
    """The rules with `amount_spike` given another score: a new ruleset version."""
    out = []
    for rule in rules:
        rule = dict(rule)
        if rule["id"] == "amount_spike":
            rule["score"] = score
        out.append(rule)
    return out


def summarise_reloads(trials: list[dict[str, Any]]) -> dict[str, Any]:
    live = [t["live_s"] for t in trials if t["live_s"] is not None]
    return {"trials": trials, "missed": len(trials) - len(live),
            "median_s": statistics.median(live) if live else None,
            "max_s": max(live) if live else None}


def profile_run(bench: Bench, proc: Proc, stem: str = "service_profile") -> dict[str, Any]:
    """py-spy on riskengine under the single-event load (raw stacks, summarised, and a
    flame graph: one recording each) and under batch load (raw stacks); the summary and
    the flame graph go to `<stem>.txt` and `<stem>.svg` beside the results."""
    a = bench.args
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    batch = a.batch_sizes[0] if a.batch_sizes else 100
    out_dir = a.output.parent  # beside service.json
    recordings = [("single", bench.load(proc), "raw", bench.tmp / "profile_single.txt"),
                  ("single", bench.load(proc), "flamegraph", out_dir / f"{stem}.svg"),
                  ("batch", bench.load(proc, batch=batch), "raw",
                   bench.tmp / "profile_batch.txt")]
    out: dict[str, Any] = {"batch_size": batch}
    texts = []
    for label, load, fmt, path in recordings:
        background = bench.wrk("riskengine", load, a.profile_seconds + 6)
        time.sleep(3.0)
        threads_before = thread_cpu(proc.pid)
        cmd = [spy, "record", "--pid", str(proc.pid), "--duration", str(a.profile_seconds),
               "--rate", "100", "--format", fmt, "--output", str(path)]
        if fmt == "raw":
            cmd += ["--threads", "--full-filenames"]
        if bench.client_cpu is not None:
            cmd = ["taskset", "-c", str(bench.client_cpu), *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        threads_after = thread_cpu(proc.pid)
        result = background.result()
        if done.returncode != 0:
            raise BenchError(f"py-spy failed: {done.stderr.strip()}")
        entry: dict[str, Any] = {
            "format": fmt, "requests_per_s": round(result["requests_per_s"], 1),
            "events_per_s": round(result["events_per_s"], 1),
            "p99_ms": result["latency_ms"]["p99"], "non_2xx": result["non_2xx"]}
        if fmt == "raw":
            entry["thread_cpu_s"] = {
                name: round(threads_after.get(name, 0.0) - cpu, 2)
                for name, cpu in threads_before.items()
                if threads_after.get(name, 0.0) - cpu > 0.005}
            entry["summary"] = summarise(path)
            what = "single-event evaluate" if label == "single" else \
                f"batch evaluate ({batch} events per request)"
            texts.append(render(entry["summary"], f"riskengine service, {what} under wrk load "
                                f"(py-spy, 100 Hz, {a.profile_seconds} s; "
                                f"{entry['events_per_s']:,.0f} events/s while sampled)"))
        out[f"{label}_{fmt}"] = entry
    (out_dir / f"{stem}.txt").write_text("\n\n".join(texts))
    return out


def stall_runs(bench: Bench) -> dict[str, Any]:
    """A fresh service (``benchmarks.traced_service``) under back-to-back runs of the
    single-event load, recording full garbage collections and snapshots (both stop the
    event loop) and each run's tail latency as its state grows."""
    a = bench.args
    port = free_port_for(bench)
    trace = bench.tmp / "stalls.json"
    cmd = [sys.executable, "-m", "benchmarks.traced_service", "--port", str(port),
           "--state-dir", str(bench.tmp / "state-traced"), "--snapshot-interval",
           str(a.stall_snapshot_interval), "--trace", str(trace)]
    proc = start("riskengine-traced", cmd, port=port, cpu=bench.server_cpu,
                 log_dir=bench.tmp, cwd=ROOT)
    bench.procs["riskengine-traced"] = proc
    wait_ready(proc, timeout_s=120)
    load = bench.load(proc)
    runs = []
    for _ in range(a.stall_runs):
        r = bench.measure_once("traced", load, a.duration, [proc])
        runs.append({"lsn_after": state_lsn(proc), "requests_per_s": round(r["requests_per_s"]),
                     "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
                     "max_ms": r["latency_ms"]["max"], "non_2xx": r["non_2xx"],
                     "server_core_foreign_pct": r.get("server_core_foreign_pct")})
        console.print(f"  traced run: {r['requests_per_s']:,.0f} req/s, p99 "
                      f"{r['latency_ms']['p99']:.0f} ms, max {r['latency_ms']['max']:.0f} ms")
    load_end = time.time()
    proc.stop(grace_s=600)
    del bench.procs["riskengine-traced"]
    events = json.loads(trace.read_text()) if trace.exists() else []
    gcs = [e["seconds"] for e in events if e["kind"] == "gc2" and e["at"] <= load_end]
    snaps = [{"seconds": round(e["seconds"], 2), "lsn": e["lsn"],
              "fork_ms": None if e.get("fork_s") is None else round(1000 * e["fork_s"], 1),
              "settle_ms": None if e.get("settle_s") is None else round(1000 * e["settle_s"], 1)}
             for e in events if e["kind"] == "snapshot" and e["at"] <= load_end]
    lags = [e["seconds"] for e in events if e["kind"] == "lag" and e["at"] <= load_end]
    gen1 = [e["seconds"] for e in events if e["kind"] == "gc1" and e["at"] <= load_end]
    return {"runs": runs, "snapshot_interval_s": a.stall_snapshot_interval,
            "gen2_collections": len(gcs), "gen2_total_s": round(sum(gcs), 2),
            "gen2_max_ms": round(1000 * max(gcs, default=0.0)),
            "gen2_over_15ms": sum(1 for g in gcs if g > 0.015),
            "gen2_ms": [round(1000 * g) for g in gcs], "snapshots": snaps,
            "gen1_collections": len(gen1), "gen1_total_s": round(sum(gen1), 2),
            "gen1_max_ms": round(1000 * max(gen1, default=0.0)),
            "gen1_over_15ms": sum(1 for g in gen1 if g > 0.015),
            "loop_lags_over_15ms": len(lags), "loop_lag_total_s": round(sum(lags), 2),
            "loop_lag_max_ms": round(1000 * max(lags, default=0.0)),
            "loop_lags_over_100ms": sum(1 for g in lags if g > 0.1),
            "loop_lag_ms": [round(1000 * g) for g in lags]}


