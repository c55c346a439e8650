"""Redis feature state on the seed workload: events/s, Redis time per call, bytes per event.

One client (this process) drives `RedisSceneFeatures.compute` over the transfer workload
(`benchmarks.workload`, the seed's three features, lateness 5 min) against a private
`redis-server` on a free port, one event at a time, as the service does per request:
one round trip per event, the ``event`` function (clock step, then every entity; the
service adds its idempotency lookup to that call and remembers the decision after).
Beside it, on a fresh server and the same events, the seed-style peer's Redis work: one
EVALSHA of its velocity script per event (ZADD, ZREMRANGEBYSCORE, PEXPIRE, ZCARD on the
paying account, `benchmarks/peers/seed_style_app.py`).

Reported: events/s (wall time of the loop, best of `--reps`), the client's CPU share,
`INFO commandstats` (calls and usec_per_call of every command the run used), and the
state's memory: bytes that deleting it frees (`used_memory`, which leaves out the Lua
VMs) per retained entry and per event inside the retention horizon `t > G - L - 1h`.
Then a busy pair of keys (`--hot`): one payer paying one receiver every 1.5 s, so each
holds 2,400 events in its hour; reported is the Redis time per call once the window is
full, which is where rescanning or re-serialising a key's entries shows.

    .venv/bin/python -m benchmarks.bench_redis_state                  # 50,000 events
    .venv/bin/python -m benchmarks.bench_redis_state --events 20000 --reps 1
    .venv/bin/python -m benchmarks.bench_redis_state --cluster         # also a 3-primary cluster
    py-spy record -o profile.svg -- .venv/bin/python -m benchmarks.bench_redis_state

Results go to `benchmarks/results/redis_state.json`. The server is pinned to the last
CPU and the client to the first when the machine has two or more (`--no-pin` to not).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from benchmarks.peers.seed_style_app import VELOCITY, WINDOW_MS
from benchmarks.procs import BenchError, free_port, pinned
from benchmarks.seed_transcription import SEED_FEATURES
from benchmarks.workload import WorkloadSpec, generate
from riskengine.config import load_config
from riskengine.state.redis import RedisSceneFeatures

RESULTS = Path(__file__).parent / "results" / "redis_state.json"
SCENE = "transfer"
LATENESS_MS = 5 * 60_000
HORIZON_MS = LATENESS_MS + 3_600_000


@contextlib.contextmanager
def redis_server(cpu: int | None) -> Iterator[redis.Redis]:
    """A private redis-server (no persistence) on a free port; yields a client."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server not found: apt-get install -y redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="riskbench-redis-") as root:
        cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", root,
               "--save", "", "--appendonly", "no", "--hash-max-listpack-value", "256"]
        process = subprocess.Popen(pinned(cmd, cpu), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise BenchError("redis-server did not start") from None
                    time.sleep(0.05)
            yield client
            client.close()
        finally:
            process.terminate()
            process.wait(timeout=10)


def commandstats(client: redis.Redis) -> dict[str, dict[str, float]]:
    """`INFO commandstats` as {command: {calls, usec_per_call}}."""
    out = {}
    for name, stats in client.info("commandstats").items():
        command = name.removeprefix("cmdstat_")
        if command in ("info", "config|resetstat"):
            continue
        out[command] = {"calls": int(stats["calls"]),
                        "usec_per_call": float(stats["usec_per_call"])}
    return out


def fresh(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(e) for e in events]


def run_ours(client: Any, events: Sequence[dict[str, Any]], buckets: int, *,
             stats: bool = True) -> dict[str, Any]:
    client.flushall()
    scene = load_config({"scenes": {SCENE: {"lateness": "5m",
                                            "features": list(SEED_FEATURES)}}}).scenes[SCENE]
    features = RedisSceneFeatures(client, scene, buckets=buckets)
    batch = fresh(events)
    if stats:
        client.config_resetstat()
    cpu, wall = time.process_time(), time.perf_counter()
    compute = features.compute
    late = 0
    for event in batch:
        late += compute(event)[1]
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return {"events": len(batch), "wall_s": wall, "client_cpu_s": cpu,
            "events_per_s": len(batch) / wall, "late": late,
            "commandstats": commandstats(client) if stats else {}, "features": features}


def run_cluster(events: Sequence[dict[str, Any]], buckets: int) -> dict[str, Any]:
    """The same on a private 3-primary Redis Cluster (tests/servers.py); the nodes are
    not pinned, the client stays where it is."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from servers import redis_cluster

    from riskengine.state.redis import connect

    mine = os.sched_getaffinity(0)
    with contextlib.ExitStack() as stack:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))  # the nodes inherit it
        try:
            url = stack.enter_context(redis_cluster())
        finally:
            os.sched_setaffinity(0, mine)
        client = connect(url)
        stack.callback(client.close)
        result = run_ours(client, events, buckets, stats=False)
    result.pop("features")
    return result


def memory(client: redis.Redis, features: RedisSceneFeatures,
           events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Bytes the state frees when deleted, per retained entry and per event in the horizon."""
    stats = features.stats()

    def used() -> int:
        return int(client.info("memory")["used_memory"])

    with_state = used()
    keys = list(features.state_keys())
    for at in range(0, len(keys), 1000):
        client.delete(*keys[at:at + 1000])
    held = with_state - used()
    clock = features.read_clock() or 0
    in_horizon = sum(int(e["timestamp"]) > clock - HORIZON_MS for e in events)
    return {"state_bytes": held, "retained_entries": stats["retained_entries"],
            "entities": stats["entities"], "events_in_horizon": in_horizon,
            "bytes_per_retained_entry": round(held / max(stats["retained_entries"], 1), 1),
            "bytes_per_event_in_horizon": round(held / max(in_horizon, 1), 1),
            "memory_usage_of_keys": stats["memory_bytes"]}


def run_hot(client: redis.Redis, events: int) -> dict[str, Any]:
    """Two busy keys: usec_per_call of the entity calls once the hour is full."""
    client.flushall()
    scene = load_config({"scenes": {SCENE: {"lateness": "5m",
                                            "features": list(SEED_FEATURES)}}}).scenes[SCENE]
    features = RedisSceneFeatures(client, scene, buckets=16)
    start = 1_800_000_000_000
    batch = [{"event_id": f"hot{i}", "timestamp": start + 1500 * i, "pay_account": "payer",
              "rcv_account": "mule", "amount": round(100 + (i * 7919) % 90000 / 100, 2)}
             for i in range(events)]
    warm = min(2400, events // 2)
    for event in batch[:warm]:
        features.compute(event)
    client.config_resetstat()
    wall = time.perf_counter()
    for event in batch[warm:]:
        features.compute(event)
    wall = time.perf_counter() - wall
    stats = commandstats(client)
    calls = stats.get("fcall") or stats.get("evalsha") or {"calls": 0, "usec_per_call": 0.0}
    return {"events": events - warm, "retained_per_key": features.stats()["retained_entries"]
            // 2, "events_per_s": (events - warm) / wall, "commandstats": stats,
            "usec_per_call_all": calls["usec_per_call"]}


def run_peer(client: redis.Redis, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The seed-style peer's Redis work: one EVALSHA of its velocity script per event."""
    client.flushall()
    sha = client.script_load(VELOCITY)
    batch = fresh(events)
    client.config_resetstat()
    evalsha = client.evalsha
    cpu, wall = time.process_time(), time.perf_counter()
    for event in batch:
        evalsha(sha, 1, f"vel:pay:{event['pay_account']}", event["timestamp"],
                event["event_id"], WINDOW_MS)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return {"events": len(batch), "wall_s": wall, "client_cpu_s": cpu,
            "events_per_s": len(batch) / wall, "commandstats": commandstats(client)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--buckets", type=int, default=256)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--hot", type=int, default=4000,
                        help="events of the busy-keys run (0: skip it)")
    parser.add_argument("--cluster", action="store_true",
                        help="also run on a 3-primary Redis Cluster")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1] if len(cpus) > 1 and not args.no_pin else None
    if server_cpu is not None:
        os.sched_setaffinity(0, {cpus[0]})
    events = generate(WorkloadSpec(events=args.events))
    result: dict[str, Any] = {
        "events": len(events), "buckets": args.buckets, "features": list(SEED_FEATURES),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "pinned": server_cpu is not None},
        "ours": [], "peer": []}
    with redis_server(server_cpu) as client:
        result["machine"]["redis"] = client.info("server")["redis_version"]
        for rep in range(args.reps):
            ours = run_ours(client, events, args.buckets)
            features = ours.pop("features")
            if rep == args.reps - 1:
                result["memory"] = memory(client, features, events)
            result["ours"].append(ours)
            print(f"ours  rep {rep + 1}: {ours['events_per_s']:,.0f} events/s "
                  f"(client CPU {ours['client_cpu_s'] / ours['wall_s']:.0%} of wall)")
            if not args.no_peer:
                peer = run_peer(client, events)
                result["peer"].append(peer)
                print(f"peer  rep {rep + 1}: {peer['events_per_s']:,.0f} events/s")
        if args.hot:
            result["hot"] = run_hot(client, args.hot)
    if args.cluster:
        result["cluster"] = run_cluster(events, args.buckets)
    best = max(result["ours"], key=lambda r: r["events_per_s"])
    print(f"\nbest: {best['events_per_s']:,.0f} events/s over {len(events):,} events; "
          f"{best['wall_s'] / len(events) * 1e6:.1f} µs per event "
          f"(client CPU {best['client_cpu_s'] / len(events) * 1e6:.1f} µs)")
    if result["peer"]:
        peer_best = max(result["peer"], key=lambda r: r["events_per_s"])
        print(f"peer best: {peer_best['events_per_s']:,.0f} events/s; ours / peer = "
              f"{best['events_per_s'] / peer_best['events_per_s']:.2f}")
    print("INFO commandstats (best run):")
    for command, stats in sorted(best["commandstats"].items(),
                                 key=lambda kv: -kv[1]["calls"]):
        print(f"  {command:<24} {stats['calls']:>9,} calls "
              f"{stats['usec_per_call']:>8.2f} usec_per_call")
    mem = result["memory"]
    print(f"memory: {mem['state_bytes']:,} B for {mem['retained_entries']:,} retained "
          f"entries ({mem['bytes_per_retained_entry']} B each), "
          f"{mem['events_in_horizon']:,} events in the horizon "
          f"({mem['bytes_per_event_in_horizon']} B each)")
    if "cluster" in result:
        print(f"Redis Cluster (3 primaries): {result['cluster']['events_per_s']:,.0f} "
              f"events/s")
    if "hot" in result:
        hot = result["hot"]
        print(f"busy keys ({hot['retained_per_key']:,} retained entries each): "
              f"{hot['events_per_s']:,.0f} events/s, {hot['usec_per_call_all']:.1f} "
              f"usec_per_call (both keys and the clock)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
