"""What one decision on Redis state costs: round trips, AOF bytes, Redis memory, time.

The whole decision path (`Engine` on `RedisState`: clock step, idempotency lookup, entity
and pattern calls, remembering) over the transfer workload (`benchmarks.workload`),
against a private `redis-server` with ``appendonly yes`` (``appendfsync no`` and no AOF
rewrite, so the file holds every write), one event at a time, as a service worker does
per request. Two configurations: ``example`` (the example config's transfer scene) and
``seed`` (the seed's three features alone).

Reported per configuration:

- round trips per event: the client's connection counts the times it sends (a pipeline
  or a command is one send, whose replies are then read);
- AOF bytes per event, per slice of `--slice` events (the incremental AOF file's growth),
  so growth with the windows shows;
- Redis memory: the bytes freed by deleting the feature state (entity and pattern keys)
  per retained entry and per event inside the horizon, and apart from it the decision
  records (idempotency keys); `MEMORY USAGE` of the largest keys;
- `INFO commandstats`, and the client's time per event (and, with `--profile`, the
  functions taking it, from cProfile).

    .venv/bin/python -m benchmarks.redis_costs --events 20000
    .venv/bin/python -m benchmarks.redis_costs --configs seed --profile
    .venv/bin/python -m benchmarks.redis_costs --configs example --buckets 150  # sized state

`--buckets N` creates the state with N buckets per key set (README, Sizing: about the
live entities of a key set / 50); without it, the default (4,096), which a small run
fills thinly: its memory per event is then mostly the buckets' own keys.

Results go to `benchmarks/results/redis_costs.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
import yaml

from benchmarks.procs import BenchError, free_port, pinned
from benchmarks.seed_transcription import SEED_FEATURES
from benchmarks.workload import WorkloadSpec, generate
from riskengine.config import EXAMPLE_CONFIG_PATH
from riskengine.engine import Engine
from riskengine.state.redis.backend import RedisState

RESULTS = Path(__file__).parent / "results" / "redis_costs.json"
SCENE = "transfer"


class CountingConnection(redis.Connection):
    """A connection that counts its sends: one per command or pipeline, i.e. one per
    round trip (its replies are read before the next send)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


class AofServer:
    """A private redis-server with AOF on (every write kept, no rewrite)."""

    def __init__(self, root: Path, cpu: int | None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server not found: apt-get install -y redis-server")
        self.root = root
        self.port = free_port()
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(root),
               "--save", "", "--appendonly", "yes", "--appendfsync", "no",
               "--auto-aof-rewrite-percentage", "0", "--hash-max-listpack-value", "256"]
        self.process = subprocess.Popen(pinned(cmd, cpu), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.client = redis.Redis(connection_pool=redis.ConnectionPool(
            port=self.port, connection_class=CountingConnection))
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("redis-server did not start") from None
                time.sleep(0.05)

    def aof_file(self) -> Path:
        """The AOF being appended to (the last incremental file)."""
        folder = self.root / "appendonlydir"
        manifest = next(folder.glob("*.manifest")).read_text(encoding="utf-8")
        names = [line.split()[1] for line in manifest.splitlines()
                 if line.split()[-1:] == ["i"]]
        return folder / names[-1]

    def aof_bytes(self) -> int:
        return self.aof_file().stat().st_size

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def aof_server(cpu: int | None) -> Iterator[AofServer]:
    with tempfile.TemporaryDirectory(prefix="riskcost-redis-") as root:
        server = AofServer(Path(root), cpu)
        try:
            yield server
        finally:
            server.close()


def aof_commands(data: bytes) -> Iterator[tuple[list[bytes], int]]:
    """The commands of an AOF segment (RESP arrays), each with its size in bytes."""
    at = 0
    while at < len(data):
        start = at
        if data[at:at + 1] != b"*":
            raise BenchError(f"unexpected AOF byte {data[at:at + 1]!r} at {at}")
        end = data.index(b"\r\n", at)
        count = int(data[at + 1:end])
        at = end + 2
        args = []
        for _ in range(count):
            end = data.index(b"\r\n", at)
            size = int(data[at + 1:end])
            args.append(data[end + 2:end + 2 + size])
            at = end + 2 + size + 2
        yield args, at - start


def key_class(key: bytes) -> str:
    """What a key of the state is: the clock, a decision record, a bucket of small
    entities, an entity's own key (or one of its parts), a pattern key, the names."""
    text = key.decode(errors="replace")
    if text.endswith("{clock}"):
        return "clock"
    if text.startswith("re:id:"):
        return "record"
    if text.startswith("re:names:"):
        return "names"
    if "|pattern|" in text:
        return "pattern"
    tail = text.rsplit("}:", 1)[-1]
    return "own" if ":" in tail else "bucket"


def aof_breakdown(data: bytes, events: int) -> dict[str, float]:
    """AOF bytes per event by command and key class (``MULTI``/``EXEC`` apart)."""
    totals: dict[str, int] = {}
    for args, size in aof_commands(data):
        command = args[0].decode().lower()
        what = command if len(args) < 2 or command in ("multi", "exec", "select") else \
            f"{command} {key_class(args[1])}"
        totals[what] = totals.get(what, 0) + size
    return {k: round(v / events, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def config_of(name: str) -> Any:
    """``example``, ``seed``, or ``feature:<n>``: the example transfer scene's feature n
    alone (no rules, models or patterns), to see what each feature costs Redis."""
    if name == "example":
        return None  # the example config
    if name.startswith("feature:"):
        raw = yaml.safe_load(EXAMPLE_CONFIG_PATH.read_text())
        scene = raw["scenes"][SCENE]
        feature = scene["features"][int(name.split(":", 1)[1])]
        return {"lists": raw.get("lists", {}),
                "scenes": {SCENE: {"lateness": scene.get("lateness", "5m"),
                                   "schema": scene.get("schema"), "features": [feature]}}}
    return {"scenes": {SCENE: {"lateness": "5m", "features": list(SEED_FEATURES)}}}


def example_features() -> list[str]:
    """``feature:<n>`` for every feature of the example transfer scene."""
    raw = yaml.safe_load(EXAMPLE_CONFIG_PATH.read_text())
    return [f"feature:{n}" for n in range(len(raw["scenes"][SCENE]["features"]))]


def commandstats(client: redis.Redis) -> dict[str, dict[str, float]]:
    out = {}
    for name, stats in client.info("commandstats").items():
        command = name.removeprefix("cmdstat_")
        if command in ("info", "config|resetstat"):
            continue
        out[command] = {"calls": int(stats["calls"]),
                        "usec_per_call": float(stats["usec_per_call"])}
    return out


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def scan_keys(client: redis.Redis, pattern: str) -> list[bytes]:
    return list(client.scan_iter(match=pattern, count=1000))


def freed_by_deleting(client: redis.Redis, keys: Sequence[bytes]) -> int:
    before = used_memory(client)
    for at in range(0, len(keys), 1000):
        client.delete(*keys[at:at + 1000])
    return before - used_memory(client)


def measure(server: AofServer, name: str, events: Sequence[dict[str, Any]], slice_: int,
            profile: bool, buckets: int | None = None) -> dict[str, Any]:
    client = server.client
    client.flushall()
    client.config_resetstat()
    engine = Engine.from_config(config_of(name), state=RedisState(
        client, state_timeout_ms=60_000, buckets=buckets))
    try:
        scene = engine.state._scenes[SCENE]  # type: ignore[attr-defined]
        features = scene.features
        slices = []
        sends = CountingConnection.sends
        client.execute_command("PING")
        aof = aof_start = server.aof_bytes()
        profiler = cProfile.Profile() if profile else None
        wall = cpu = 0.0
        for at in range(0, len(events), slice_):
            part = [dict(e) for e in events[at:at + slice_]]
            w, c = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            for event in part:
                decision = engine.evaluate(SCENE, event)
                if decision.degraded:
                    raise BenchError("a degraded decision: the Redis state failed")
            if profiler is not None:
                profiler.disable()
            wall += time.perf_counter() - w
            cpu += time.process_time() - c
            client.execute_command("PING")  # the AOF is written before the next command
            now = server.aof_bytes()
            slices.append({"from": at, "events": len(part),
                           "aof_bytes_per_event": round((now - aof) / len(part), 1)})
            aof = now
        sends = CountingConnection.sends - sends - len(slices) - 1  # the PINGs
        with server.aof_file().open("rb") as file:
            file.seek(aof_start)
            breakdown = aof_breakdown(file.read(aof - aof_start), len(events))
        stats = commandstats(client)
        state = features.stats() if features is not None else {}
        entity_keys = [k for k in scan_keys(client, f"re:{{{SCENE}|*")]
        largest = sorted(((client.memory_usage(k) or 0, k) for k in entity_keys),
                         reverse=True)[:5]
        record_keys = scan_keys(client, f"re:id:{{{SCENE}|*")
        records = freed_by_deleting(client, record_keys)
        feature_bytes = freed_by_deleting(client, entity_keys)
        retained = max(int(state.get("retained_entries", 0)), 1)
        result: dict[str, Any] = {
            "config": name, "events": len(events), "buckets": features.buckets
            if features is not None else None, "round_trips_per_event":
                round(sends / len(events), 3),
            "wall_us_per_event": round(wall / len(events) * 1e6, 1),
            "client_cpu_us_per_event": round(cpu / len(events) * 1e6, 1),
            "aof_bytes_per_event": round(sum(s["aof_bytes_per_event"] * s["events"]
                                             for s in slices) / len(events), 1),
            "aof_slices": slices,
            "aof_bytes_per_event_by_command": breakdown,
            "feature_state": {"bytes": feature_bytes, "keys": len(entity_keys),
                              "retained_entries": state.get("retained_entries"),
                              "entities": state.get("entities"),
                              "bytes_per_retained_entry": round(feature_bytes / retained, 1),
                              "bytes_per_event": round(feature_bytes / len(events), 1)},
            "records": {"bytes": records, "keys": len(record_keys),
                        "bytes_per_record": round(records / max(len(record_keys), 1), 1)},
            "largest_keys": [{"key": k.decode(errors="replace"), "memory_usage": m}
                             for m, k in largest],
            "commandstats": stats,
        }
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            result["profile_tottime"] = out.getvalue()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
            result["profile_cumulative"] = out.getvalue()
        return result
    finally:
        engine.close()


def report(result: dict[str, Any]) -> None:
    print(f"\n== {result['config']} {result.get('feature', '')}: {result['events']:,} events")
    print(f"round trips per event {result['round_trips_per_event']}; "
          f"{result['wall_us_per_event']} µs per event (client CPU "
          f"{result['client_cpu_us_per_event']} µs)")
    print(f"AOF {result['aof_bytes_per_event']} B per event; per slice: " + ", ".join(
        str(s["aof_bytes_per_event"]) for s in result["aof_slices"]))
    print("  by command and key: " + ", ".join(
        f"{k} {v}" for k, v in result["aof_bytes_per_event_by_command"].items()))
    fs, rec = result["feature_state"], result["records"]
    print(f"feature state {fs['bytes']:,} B in {fs['keys']:,} keys ({result['buckets']} "
          f"buckets per key set), {fs['entities']} entities, {fs['retained_entries']} "
          f"entries: {fs['bytes_per_retained_entry']} B per retained entry, "
          f"{fs['bytes_per_event']} per event; records {rec['bytes']:,} B "
          f"({rec['bytes_per_record']} B each)")
    for command, stats in sorted(result["commandstats"].items(),
                                 key=lambda kv: -kv[1]["calls"]):
        print(f"  {command:<24} {stats['calls']:>9,} calls "
              f"{stats['usec_per_call']:>8.2f} usec_per_call")
    if "profile_tottime" in result:
        print(result["profile_tottime"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--slice", type=int, default=2_000)
    parser.add_argument("--configs", nargs="+", default=["example", "seed"],
                        choices=["example", "seed", "each-feature"],
                        help="each-feature: every feature of the example transfer scene "
                             "alone, one run each (what each costs Redis)")
    parser.add_argument("--profile", action="store_true", help="cProfile the client")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--buckets", type=int, default=None,
                        help="buckets per key set of the state (default: riskengine's, 4096)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1] if len(cpus) > 1 and not args.no_pin else None
    if server_cpu is not None:
        os.sched_setaffinity(0, {cpus[0]})
    events = generate(WorkloadSpec(events=args.events))
    out: dict[str, Any] = {"machine": {"python": platform.python_version(),
                                       "cpus": os.cpu_count(), "load": os.getloadavg()},
                           "runs": []}
    with aof_server(server_cpu) as server:
        out["machine"]["redis"] = server.client.info("server")["redis_version"]
        names = [n for c in args.configs
                 for n in (example_features() if c == "each-feature" else [c])]
        for name in names:
            result = measure(server, name, events, args.slice, args.profile, args.buckets)
            if name.startswith("feature:"):
                result["feature"] = config_of(name)["scenes"][SCENE]["features"][0]
            report(result)
            out["runs"].append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
