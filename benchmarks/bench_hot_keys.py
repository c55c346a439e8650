"""A hot key beside cold ones: does an event cost more when its entity is busy?

Two streams of the same length, timing and payers, decided with the example config
(transfer scene): in the *hot* one every transfer goes to one receiver, which gets
`--events` payments (12,000 by default) from `--senders` accounts inside one hour, so its
1 h window (`sum(amount#rcv_account.history,1h)`) fills to all of them; in the *cold* one
each transfer goes to a receiver of its own. Times rise by `3600 s / events` per event,
less a jitter of up to 20 s (out of order, never late).

Each stream runs in memory (`Engine`) and on Redis state (`Engine` on `RedisState`, one
private redis-server per stream, AOF on, `appendfsync no`, no rewrite), one event at a
time, in slices of `--slice` events, the four runs' slices interleaved (cold, hot, cold,
hot, ...) so that the machine's load falls on all alike. Per slice: wall time per event,
Redis's own time per event (`INFO commandstats`: every command's usec, per event), and
AOF bytes per event. The hot receiver's window fills as the slices go: what grows with
it shows slice by slice.

    .venv/bin/python -m benchmarks.bench_hot_keys              # 12,000 events per stream
    .venv/bin/python -m benchmarks.bench_hot_keys --events 4000 --slice 1000

Results go to `benchmarks/results/hot_keys.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.procs import BenchError
from benchmarks.redis_costs import AofServer, aof_server
from riskengine.engine import Engine
from riskengine.state.redis.backend import RedisState

RESULTS = Path(__file__).parent / "results" / "hot_keys.json"
SCENE = "transfer"
START_MS = 1_800_000_000_000
HOUR_MS = 3_600_000
JITTER_MS = 20_000


def stream(events: int, senders: int, hot: bool, seed: int = 5) -> list[dict[str, Any]]:
    """`events` transfers inside one hour from `senders` payers, to one receiver (`hot`)
    or each to its own."""
    rng = random.Random(seed)
    step = HOUR_MS / events
    out = []
    for i in range(events):
        out.append({
            "event_id": f"{'h' if hot else 'c'}{i}",
            "timestamp": START_MS + int(i * step) - rng.randrange(JITTER_MS),
            "pay_account": f"s{rng.randrange(senders):05d}",
            "rcv_account": "hot-receiver" if hot else f"r{i:06d}",
            "amount": round(rng.lognormvariate(4.2, 1.1), 2),
        })
    return out


def redis_time_us(server: AofServer) -> float:
    """Redis's own time so far (usec of the scripts the engine calls: a command a script
    runs is counted in its own `commandstats` line and again in the script's time), then
    the counters start again."""
    stats = server.client.info("commandstats")
    server.client.config_resetstat()
    return sum(float(s["usec"]) for name, s in stats.items()
               if name.startswith(("cmdstat_fcall", "cmdstat_eval")))


class Run:
    """One stream on one engine: in memory, or on its own Redis."""

    def __init__(self, name: str, events: list[dict[str, Any]],
                 server: AofServer | None) -> None:
        self.name = name
        self.events = events
        self.server = server
        state = None if server is None else RedisState(server.client, state_timeout_ms=60_000)
        self.engine = Engine.from_config(None, state=state)
        self.slices: list[dict[str, Any]] = []
        if server is not None:
            server.client.execute_command("PING")
            redis_time_us(server)

    def slice(self, start: int, size: int) -> None:
        part = [dict(e) for e in self.events[start:start + size]]
        server = self.server
        aof = server.aof_bytes() if server is not None else 0
        wall = time.perf_counter()
        for event in part:
            if self.engine.evaluate(SCENE, event).degraded:
                raise BenchError("a degraded decision: the Redis state failed")
        wall = time.perf_counter() - wall
        row: dict[str, Any] = {"from": start, "events": len(part),
                               "wall_us_per_event": round(wall / len(part) * 1e6, 1)}
        if server is not None:
            row["redis_us_per_event"] = round(redis_time_us(server) / len(part), 1)
            server.client.execute_command("PING")  # the AOF is written before its reply
            row["aof_bytes_per_event"] = round((server.aof_bytes() - aof) / len(part), 1)
        self.slices.append(row)

    def summary(self) -> dict[str, Any]:
        n = sum(s["events"] for s in self.slices)
        out: dict[str, Any] = {"events": n, "slices": self.slices}
        for field in ("wall_us_per_event", "redis_us_per_event", "aof_bytes_per_event"):
            if field in self.slices[0]:
                out[field] = round(sum(s[field] * s["events"] for s in self.slices) / n, 1)
        return out


def ratio(hot: dict[str, Any], cold: dict[str, Any], field: str) -> float:
    return round(hot[field] / cold[field], 2) if cold.get(field) else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=12_000)
    parser.add_argument("--senders", type=int, default=5_000)
    parser.add_argument("--slice", type=int, default=2_000)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1] if len(cpus) > 1 and not args.no_pin else None
    if server_cpu is not None:
        os.sched_setaffinity(0, {cpus[0]})
    hot_events = stream(args.events, args.senders, True)
    cold_events = stream(args.events, args.senders, False)
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        hot_server = stack.enter_context(aof_server(server_cpu))
        cold_server = stack.enter_context(aof_server(server_cpu))
        runs = {"memory_cold": Run("memory_cold", cold_events, None),
                "memory_hot": Run("memory_hot", hot_events, None),
                "redis_cold": Run("redis_cold", cold_events, cold_server),
                "redis_hot": Run("redis_hot", hot_events, hot_server)}
        for start in range(0, args.events, args.slice):
            for run in runs.values():
                run.slice(start, args.slice)
            print(f"slice {start:>6,}: " + "  ".join(
                f"{name} {run.slices[-1]['wall_us_per_event']:>7.1f} µs"
                + (f" ({run.slices[-1]['redis_us_per_event']:.1f} in Redis, "
                   f"{run.slices[-1]['aof_bytes_per_event']:.0f} B AOF)"
                   if "aof_bytes_per_event" in run.slices[-1] else "")
                for name, run in runs.items()))
        redis_version = hot_server.client.info("server")["redis_version"]
        hot_state = runs["redis_hot"].engine.state
        retained = hot_state._scenes[SCENE].features.stats()  # type: ignore[attr-defined]
        for run in runs.values():
            run.engine.close()
    summaries = {name: run.summary() for name, run in runs.items()}
    result: dict[str, Any] = {
        "events": args.events, "senders": args.senders, "slice": args.slice,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "redis": redis_version, "pinned": server_cpu is not None,
                    "load_before": load_before, "load_after": os.getloadavg()},
        "hot_receiver_state": retained,
        "runs": summaries,
        "ratios": {
            "memory_hot_over_cold_wall": ratio(summaries["memory_hot"],
                                               summaries["memory_cold"], "wall_us_per_event"),
            "redis_hot_over_cold_wall": ratio(summaries["redis_hot"],
                                              summaries["redis_cold"], "wall_us_per_event"),
            "redis_hot_over_cold_redis_time": ratio(summaries["redis_hot"],
                                                    summaries["redis_cold"],
                                                    "redis_us_per_event"),
            "hot_aof_last_over_first_slice": round(
                summaries["redis_hot"]["slices"][-1]["aof_bytes_per_event"]
                / summaries["redis_hot"]["slices"][0]["aof_bytes_per_event"], 2),
        },
    }
    print(json.dumps(result["ratios"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
