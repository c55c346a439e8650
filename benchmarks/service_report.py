"""Verdicts and Markdown tables of ``benchmarks.bench_service`` results.

On a shared machine other processes take CPU from some runs, so throughput verdicts use the
best run (the least disturbed one), as the engine benchmark does; medians are shown beside.
Latency verdicts use the median run. ``python -m benchmarks.service_report [service.json]``
prints the tables of a results file again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAMES = {"riskengine": "riskengine", "noop": "peer A: FastAPI no-op (Pydantic body)",
         "seed_style": "peer B: seed-style (Pydantic + Redis Lua)",
         "asgi_ceiling": "ceiling: bare ASGI app, constant JSON"}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    t = report["targets"]
    single = report["single"]
    engine = single["riskengine"]
    out: dict[str, Any] = {
        "requests_per_s": {"median": engine["median_requests_per_s"],
                           "best": engine["best_requests_per_s"],
                           "met": engine["best_requests_per_s"] >= t["requests_per_s"]},
        "p99_ms": {"median": engine["median_latency_ms"]["p99"],
                   "worst": engine["worst_p99_ms"],
                   "met": engine["median_latency_ms"]["p99"] <= t["p99_ms"]},
        "riskengine_non_2xx": {"count": engine["non_2xx"], "met": engine["non_2xx"] == 0},
    }
    if "seed_style" in single:
        peer = single["seed_style"]
        best = _ratio(engine["best_requests_per_s"], peer["best_requests_per_s"])
        out["ratio_to_seed_style"] = {
            "median": _ratio(engine["median_requests_per_s"], peer["median_requests_per_s"]),
            "best": best, "met": best is not None and best >= t["ratio_to_seed_style"]}
    if "batch" in report:
        size, top = max(report["batch"].items(), key=lambda kv: kv[1]["best_events_per_s"])
        out["batch_events_per_s"] = {
            "batch": int(size), "median": top["median_events_per_s"],
            "best": top["best_events_per_s"],
            "met": top["best_events_per_s"] >= t["batch_events_per_s"]}
    if "reload" in report:
        for kind in ("api", "file"):
            r = report["reload"][kind]
            out[f"reload_{kind}_s"] = {
                "median": r["median_s"], "max": r["max_s"], "missed": r["missed"],
                "met": r["missed"] == 0 and r["max_s"] is not None
                and r["max_s"] <= t["reload_s"]}
    return out


def _snapshot(x: dict[str, Any]) -> str:
    text = f"{x['seconds']:.1f} s at {x['lsn']:,} events"
    if x.get("fork_ms") is not None:
        text += (f" (forked child; on the loop: fork {x['fork_ms']:.0f} ms, "
                 f"settle {x.get('settle_ms') or 0:.0f} ms)")
    return text


def _yes(met: bool) -> str:
    return "met" if met else "**missed**"


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    single = report["single"]
    pin = report.get("pinning")
    where = (f"servers and Redis pinned to CPU {pin['servers_and_redis']}, wrk to CPU "
             f"{pin['wrk_and_probe']} (taskset)" if pin else "not pinned")
    lines = [f"### Single-event evaluate: {s['connections']} connections, {s['threads']} wrk "
             f"threads, {s['reps']} x {s['duration']:.0f} s after {s['warmup']:.0f} s warm-up; "
             f"{where}", "",
             "| service | req/s best | req/s median | p50 ms | p90 ms | p99 ms | non-2xx | "
             "server CPU | server CPU µs/req | other load on the server core (max) | "
             "riskengine × (best) | riskengine × (median) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    engine = single["riskengine"]
    for key, r in single.items():
        lat = r["median_latency_ms"]
        ratio = "| " if key == "riskengine" else (
            f"{_ratio(engine['best_requests_per_s'], r['best_requests_per_s'])} | "
            f"{_ratio(engine['median_requests_per_s'], r['median_requests_per_s'])}")
        lines.append(f"| {NAMES.get(key, key)} | {r['best_requests_per_s']:,.0f} | "
                     f"{r['median_requests_per_s']:,.0f} | {lat['p50']:.1f} | {lat['p90']:.1f} | "
                     f"{lat['p99']:.1f} | {r['non_2xx']} | {r['median_server_cpu_pct']:.0f} % | "
                     f"{r['median_server_cpu_us_per_event']:.0f} | "
                     f"{r['max_server_core_foreign_pct']:.0f} % | {ratio} |")
    lines.append("")
    lines.append("Latencies are the median over the runs of each run's percentile; server CPU "
                 "is the server process (plus redis-server for peer B) CPU time over wall time.")
    if "batch" in report:
        lines += ["", f"### Batch evaluate: {s['batch_connections']} connections, "
                  f"{s['reps']} x {s['duration']:.0f} s", "",
                  "| events per request | events/s best | events/s median | requests/s median | "
                  "p50 ms | p99 ms | non-2xx | server CPU µs/event |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for size, r in report["batch"].items():
            lat = r["median_latency_ms"]
            lines.append(f"| {size} | {r['best_events_per_s']:,.0f} | "
                         f"{r['median_events_per_s']:,.0f} | {r['median_requests_per_s']:,.1f} | "
                         f"{lat['p50']:.1f} | {lat['p99']:.1f} | {r['non_2xx']} | "
                         f"{r['median_server_cpu_us_per_event']:.1f} |")
    if "reload" in report:
        rl = report["reload"]
        load = rl["load"]
        lines += ["", f"### Rule reload under load ({load['requests_per_s']:,.0f} req/s, "
                  f"p99 {load['latency_ms']['p99']:.1f} ms, non-2xx {load['non_2xx']})", "",
                  "| how | trials | until the first response with the new version: median s | "
                  "max s | missed (> 10 s) |", "| --- | ---: | ---: | ---: | ---: |"]
        for kind, label in (("api", "PUT /v1/scenes/transfer/ruleset"),
                            ("file", "config file edited (watcher)")):
            r = rl[kind]
            med = "—" if r["median_s"] is None else f"{r['median_s']:.3f}"
            mx = "—" if r["max_s"] is None else f"{r['max_s']:.3f}"
            lines.append(f"| {label} | {len(r['trials'])} | {med} | {mx} | {r['missed']} |")
    runs = single["riskengine"]["runs"]
    if runs and "lsn_after" in runs[0]:
        lines += ["", "riskengine's runs in order (its state grows: every event stays in the "
                  "windows and the idempotency memory):", "",
                  "| run | events held after the run | req/s | p50 ms | p99 ms | max ms |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for i, r in enumerate(runs, 1):
            lat = r["latency_ms"]
            lines.append(f"| {i} | {r['lsn_after']:,} | {r['requests_per_s']:,.0f} | "
                         f"{lat['p50']:.1f} | {lat['p99']:.1f} | {lat['max']:.0f} |")
    if "stalls" in report:
        st = report["stalls"]
        lines += ["", f"### Event-loop stalls of a fresh service under {len(st['runs'])} "
                  f"back-to-back runs (snapshot every {st['snapshot_interval_s']:.0f} s)", "",
                  "| run | events held after the run | req/s | p99 ms | max ms |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        for i, r in enumerate(st["runs"], 1):
            lines.append(f"| {i} | {r['lsn_after']:,} | {r['requests_per_s']:,} | "
                         f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} |")
        snaps = ", ".join(_snapshot(x) for x in st["snapshots"]) or "none"
        lines += ["", f"Full (generation 2) garbage collections during the load: "
                  f"{st['gen2_collections']}, {st['gen2_total_s']:.1f} s in all, longest "
                  f"{st['gen2_max_ms']:,} ms, {st['gen2_over_15ms']} longer than 15 ms. "
                  f"Snapshots: {snaps}."]
        if "gen1_collections" in st:
            lines.append(f"Generation 1 collections: {st['gen1_collections']}, "
                         f"{st['gen1_total_s']:.2f} s in all, longest {st['gen1_max_ms']:,} ms, "
                         f"{st['gen1_over_15ms']} longer than 15 ms.")
        if "loop_lags_over_15ms" in st:
            lines.append(f"Event-loop lags over 15 ms (a 5 ms timer woken late): "
                         f"{st['loop_lags_over_15ms']}, {st['loop_lag_total_s']:.2f} s in all, "
                         f"longest {st['loop_lag_max_ms']:,} ms, "
                         f"{st['loop_lags_over_100ms']} over 100 ms.")
    if "profile" in report:
        p = report["profile"]
        for key, what in (("single_raw", "single-event evaluate"),
                          ("batch_raw", f"batch evaluate ({p.get('batch_size')} per request)")):
            if key not in p:
                continue
            entry = p[key]
            summary = entry["summary"]
            lines += ["", f"### Profile, {what} (py-spy, {summary['samples']} samples; "
                      f"{entry['events_per_s']:,.0f} events/s while sampled)", "",
                      "| where | % of samples |", "| --- | ---: |"]
            lines += [f"| {k} | {v:.1f} |" for k, v in summary["buckets"]]
    v = report["verdicts"]
    t = report["targets"]
    lines += ["", "### Targets", ""]
    lines.append(f"- ≥ {t['requests_per_s']:,} decisions/s: {_yes(v['requests_per_s']['met'])} "
                 f"(best {v['requests_per_s']['best']:,.0f}, median "
                 f"{v['requests_per_s']['median']:,.0f})")
    lines.append(f"- p99 ≤ {t['p99_ms']:.0f} ms at {s['connections']} connections: "
                 f"{_yes(v['p99_ms']['met'])} (median {v['p99_ms']['median']:.1f} ms, worst "
                 f"{v['p99_ms']['worst']:.1f} ms)")
    if "ratio_to_seed_style" in v:
        r = v["ratio_to_seed_style"]
        lines.append(f"- ≥ {t['ratio_to_seed_style']}× the seed-style peer: {_yes(r['met'])} "
                     f"({r['best']}× best to best, {r['median']}× median to median)")
    lines.append(f"- riskengine non-2xx = 0: {_yes(v['riskengine_non_2xx']['met'])} "
                 f"({v['riskengine_non_2xx']['count']})")
    if "batch_events_per_s" in v:
        b = v["batch_events_per_s"]
        lines.append(f"- batch ≥ {t['batch_events_per_s']:,} events/s: {_yes(b['met'])} "
                     f"(best {b['best']:,.0f}, median {b['median']:,.0f}, {b['batch']} per "
                     "request)")
    for kind in ("api", "file"):
        key = f"reload_{kind}_s"
        if key in v:
            r = v[key]
            mx = "—" if r["max"] is None else f"{r['max']:.3f} s"
            lines.append(f"- reload ≤ {t['reload_s']:.0f} s ({kind}): {_yes(r['met'])} "
                         f"(max {mx}, missed {r['missed']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parent / "results" / "service.json"
    report = json.loads(path.read_text())
    report["verdicts"] = verdicts(report)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
