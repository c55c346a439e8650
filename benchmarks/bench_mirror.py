"""Traffic mirroring under HTTP load: the live service's throughput with the mirror on and
off, in one run.

Starts, each its own process on a free port (``python -m riskengine serve``, one worker,
SQLite decision log in a temporary state dir):

- the candidate: the example config with the ``amount_spike`` rule changed (``amount >=
  300`` instead of 500), pinned to the load generator's core, so it takes no CPU from the
  live services;
- ``off``: the example config, no mirror;
- ``on``: the same config with ``--mirror <candidate>`` and the default mirror settings
  (queue 10,000 requests, one sender: the candidate receives events in live order, the
  copies waiting go in batch requests of up to 500 events);
- ``on_batch_1``: the same with ``service: {mirror: {batch: 1}}``, one request per copy
  (``--batch`` sets another size, 0 leaves it out);
- ``on_N_senders``: only with ``--senders N``, the default settings and N senders.

The live services are pinned to the server core, wrk (``benchmarks/wrk/transfer.lua``,
single-event evaluate, the ``benchmarks.workload`` pool) to the other, as in
``benchmarks.bench_service`` (whose `Bench` runs this). Rounds interleave the services;
before each run the mirrors' queues are left to drain. Each mirrored run also reports
what the mirror did with its requests: matched, mismatched, errors, dropped (queue full),
and the requests it sent to the candidate, from ``GET /v1/mirror`` before and after.
Writes ``benchmarks/results/mirror.json`` (or ``--output``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_service import check_tools, code_fingerprint, versions
from benchmarks.loadgen import Probe, write_pool
from benchmarks.procs import BenchError, Proc, machine, start, wait_ready
from benchmarks.service_runner import (
    EXAMPLE_CONFIG,
    RESULTS,
    ROOT,
    Bench,
    add_bench_options,
    console,
    free_port_for,
)

LIVE_RULE = "amount >= 500 and amount > 5 * avg_amount_24h"
CANDIDATE_RULE = "amount >= 300 and amount > 5 * avg_amount_24h"


def write_config(path: Path, *, rule: str = LIVE_RULE,
                 mirror: dict[str, Any] | None = None) -> Path:
    text = EXAMPLE_CONFIG.read_text()
    if LIVE_RULE not in text:
        raise BenchError(f"the example config no longer has the rule {LIVE_RULE!r}")
    data = yaml.safe_load(text.replace(LIVE_RULE, rule))
    if mirror:
        data["service"] = {"mirror": mirror}
    path.write_text(yaml.safe_dump(data))
    return path


def start_candidate(bench: Bench, config: Path) -> Proc:
    """The candidate on the load generator's core (not the live services')."""
    port = free_port_for(bench)
    cmd = [sys.executable, "-m", "riskengine", "serve", "--port", str(port),
           "--state-dir", str(bench.tmp / "state-candidate"), "--log-level", "warning",
           "--config", str(config)]
    proc = start("candidate", cmd, port=port, cpu=bench.client_cpu, log_dir=bench.tmp,
                 cwd=ROOT)
    bench.procs["candidate"] = proc
    wait_ready(proc, timeout_s=120)
    return proc


def mirror_view(proc: Proc, token: str) -> dict[str, Any]:
    probe = Probe(proc.port, token=token)
    try:
        status, body = probe.call("GET", "/v1/mirror", admin=True)
    finally:
        probe.close()
    if status != 200:
        raise BenchError(f"{proc.name}: GET /v1/mirror answered {status}: {body}")
    view: dict[str, Any] = body
    return view


def drain(proc: Proc, token: str, timeout_s: float) -> float:
    """Wait until the mirror's queue is empty; returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if mirror_view(proc, token)["queue_depth"] == 0:
            break
        time.sleep(0.2)
    return time.monotonic() - started


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_mirror", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up per run")
    p.add_argument("--reps", type=int, default=3, help="measured runs per service")
    add_bench_options(p, attempts=2, quiet_wait=30.0)
    p.add_argument("--batch", type=int, default=1,
                   help="mirror batch of the third service (0: leave it out)")
    p.add_argument("--senders", type=int, default=0,
                   help="senders of a fourth service (0: leave it out)")
    p.add_argument("--drain-wait", type=float, default=120.0,
                   help="seconds to wait for a mirror's queue to empty before a run")
    p.add_argument("--install-tools", action="store_true",
                   help="apt-get install wrk when missing")
    p.add_argument("--output", type=Path, default=RESULTS / "mirror.json")
    args = p.parse_args(argv)
    args.batch_connections = args.connections  # read by Bench.load
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools(args.install_tools)
    if len(os.sched_getaffinity(0)) < 2:
        args.no_pin = True
    if not args.no_pin:
        os.sched_setaffinity(0, {args.client_cpu})
    tmp = Path(tempfile.mkdtemp(prefix="riskbench-mirror-"))
    bench = Bench(args, tmp)
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench_mirror " + " ".join(argv or sys.argv[1:]),
        "machine": machine(), "versions": versions(), "code_fingerprint": code_fingerprint(),
        "pinning": None if args.no_pin else {"live_services": args.server_cpu,
                                             "wrk_and_candidate": args.client_cpu},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    try:
        console.print(f"pool: {args.pool_events:,} workload events (seed {args.seed})")
        bench.rows = write_pool(bench.pool, args.pool_events, args.seed)
        candidate = start_candidate(bench, write_config(tmp / "candidate.yaml",
                                                        rule=CANDIDATE_RULE))
        url = f"http://127.0.0.1:{candidate.port}"
        live = {"off": bench.riskengine("off", "--config", str(write_config(tmp / "off.yaml"))),
                "on": bench.riskengine("on", "--config", str(write_config(tmp / "on.yaml")),
                                       "--mirror", url)}
        variants = {f"on_batch_{args.batch}": {"batch": args.batch} if args.batch else None,
                    f"on_{args.senders}_senders": ({"senders": args.senders}
                                                   if args.senders else None)}
        for name, section in variants.items():
            if section is not None:
                live[name] = bench.riskengine(name, "--config", str(write_config(
                    tmp / f"{name}.yaml", mirror=section)), "--mirror", url)
        tokens = {name: (tmp / f"state-{name}" / "admin-token").read_text().strip()
                  for name in live}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in live}
        for rep in range(args.reps):
            for name, proc in live.items():
                for other, other_proc in live.items():
                    if other != "off":
                        drain(other_proc, tokens[other], args.drain_wait)
                before = mirror_view(proc, tokens[name]) if name != "off" else None
                result = bench.measure(name, bench.load(proc), args.duration, [proc],
                                       warmup=args.warmup)
                if before is not None:
                    depth_at_end = mirror_view(proc, tokens[name])["queue_depth"]
                    drained_s = drain(proc, tokens[name], args.drain_wait)
                    after = mirror_view(proc, tokens[name])
                    result["mirror"] = {
                        "counts_during_warmup_and_run": {
                            k: after["counts"][k] - before["counts"][k]
                            for k in after["counts"]},
                        "requests_sent": after["requests_sent"] - before["requests_sent"],
                        "errors": after["errors"], "queue_depth_at_end": depth_at_end,
                        "drained_after_s": round(drained_s, 1)}
                runs[name].append(result)
                mirrored = result.get("mirror", {}).get("counts_during_warmup_and_run", {})
                console.print(f"  {name:<14} run {rep + 1}/{args.reps}: "
                              f"{result['requests_per_s']:8,.0f} req/s, p99 "
                              f"{result['latency_ms']['p99']:6.1f} ms, non-2xx "
                              f"{result['non_2xx']}, others on its core "
                              f"{result.get('server_core_foreign_pct', 0):.0f} %"
                              + (f", mirror {mirrored}" if mirrored else ""))
        report["runs"] = runs
        report["summary"] = summary(runs)
        report["candidate_lsn"] = Probe(candidate.port).call("GET", "/readyz")[1]["detail"][
            "lsn"]
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    console.print(f"wrote {args.output}")
    return 0


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Best and median req/s per service, and each mirrored service's over `off`."""
    out: dict[str, Any] = {}
    for name, results in runs.items():
        rps = [r["requests_per_s"] for r in results]
        entry: dict[str, Any] = {
            "best_requests_per_s": round(max(rps), 1),
            "median_requests_per_s": round(statistics.median(rps), 1),
            "median_p99_ms": statistics.median(r["latency_ms"]["p99"] for r in results),
            "median_server_cpu_us_per_request": statistics.median(
                r["server_cpu_us_per_event"] for r in results),
            "max_server_core_foreign_pct": max(r.get("server_core_foreign_pct", 0.0)
                                               for r in results),
            "non_2xx": sum(r["non_2xx"] for r in results)}
        mirrored = [r["mirror"]["counts_during_warmup_and_run"] for r in results
                    if "mirror" in r]
        if mirrored:
            totals = {k: sum(m[k] for m in mirrored) for k in mirrored[0]}
            entry["mirror_counts"] = totals
            entry["mirror_compared_share"] = round(
                (totals["match"] + totals["mismatch"]) / max(sum(totals.values()), 1), 3)
            sent = sum(r["mirror"]["requests_sent"] for r in results)
            entry["mirror_requests_sent"] = sent
            entry["mirror_events_per_request"] = round(
                (sum(totals.values()) - totals["dropped"]) / max(sent, 1), 1)
        out[name] = entry
    base = out["off"]
    for name, entry in out.items():
        if name != "off":
            entry["ratio_best"] = round(entry["best_requests_per_s"]
                                        / base["best_requests_per_s"], 3)
            entry["ratio_median"] = round(entry["median_requests_per_s"]
                                          / base["median_requests_per_s"], 3)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = ["| live service | req/s best | req/s median | × off (best) | × off (median) "
             "| p99 ms (median) | server CPU µs/req | non-2xx | mirrored: match / mismatch / "
             "error / dropped | compared | events / request to the candidate |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for name, s in report["summary"].items():
        counts = s.get("mirror_counts")
        shown = (" / ".join(f"{counts[k]:,}" for k in ("match", "mismatch", "error", "dropped"))
                 if counts else "")
        share = f"{100 * s['mirror_compared_share']:.0f} %" if counts else ""
        per_request = f"{s['mirror_events_per_request']:,.1f}" if counts else ""
        lines.append(
            f"| {name} | {s['best_requests_per_s']:,.0f} | {s['median_requests_per_s']:,.0f} "
            f"| {s.get('ratio_best', 1.0):.2f} | {s.get('ratio_median', 1.0):.2f} "
            f"| {s['median_p99_ms']:.1f} | {s['median_server_cpu_us_per_request']:.0f} "
            f"| {s['non_2xx']} | {shown} | {share} | {per_request} |")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        console.print(f"[red]{exc}[/]")
        sys.exit(1)
