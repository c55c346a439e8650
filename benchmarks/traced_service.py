"""riskengine's service, unchanged, with its event-loop stalls recorded.

Runs the same server as ``riskengine serve`` (``build_server``) and records, for the
benchmark's stall phase:

- every generation 1 and full (generation 2) garbage collection with its duration (it
  runs on the event loop's thread, so every request in flight waits for it);
- every periodic snapshot: the whole time until the snapshot is written (the forked child
  pickles the state while the loop keeps serving), and the parts of it that stop the loop
  (the ``fork`` call itself, and ``settle_memory`` after it: a young collection and
  ``gc.freeze``);
- every event-loop lag over 15 ms: a task sleeps 5 ms in a loop and records how late it
  wakes, whatever the cause (collections, fork, long callbacks).

Written as JSON to ``--trace`` when the server stops.

    python -m benchmarks.traced_service --port P --state-dir D --snapshot-interval 60 \
        --trace stalls.json
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import riskengine.service.runtime as runtime_module
from riskengine.service.server import build_server
from riskengine.service.settings import ServiceSettings

LAG_TICK_S = 0.005
LAG_REPORT_S = 0.015


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--snapshot-interval", type=float, default=300.0)
    p.add_argument("--trace", type=Path, required=True)
    args = p.parse_args()

    events: list[dict[str, Any]] = []
    started: dict[str, float] = {}
    parent = os.getpid()

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if os.getpid() != parent:  # the snapshot child
            return
        if phase == "start":
            started["gc"] = time.perf_counter()
        elif info["generation"] >= 1:
            events.append({"kind": f"gc{info['generation']}", "at": time.time(),
                           "seconds": time.perf_counter() - started["gc"]})

    gc.callbacks.append(on_gc)
    settings = ServiceSettings(state_dir=args.state_dir,
                               snapshot_interval_s=args.snapshot_interval)
    server, runtime = build_server(settings, host="127.0.0.1", port=args.port,
                                   log_level="warning")

    # The loop-stopping parts of a background snapshot.
    on_loop: dict[str, float] = {}
    real_fork = os.fork
    real_settle = runtime_module.settle_memory

    def timed_fork() -> int:
        t0 = time.perf_counter()
        pid = real_fork()
        if pid:
            on_loop["fork_s"] = time.perf_counter() - t0
        return pid

    def timed_settle() -> None:
        t0 = time.perf_counter()
        real_settle()
        on_loop["settle_s"] = time.perf_counter() - t0

    os.fork = timed_fork  # type: ignore[assignment]
    runtime_module.settle_memory = timed_settle  # type: ignore[assignment]
    in_background = runtime.snapshot_in_background

    async def timed_snapshot() -> int:
        on_loop.clear()
        lsn = runtime.engine.lsn
        t0 = time.perf_counter()
        result = await in_background()
        if on_loop:
            events.append({"kind": "snapshot", "at": time.time(),
                           "seconds": time.perf_counter() - t0, "lsn": lsn,
                           "fork_s": on_loop.get("fork_s"),
                           "settle_s": on_loop.get("settle_s")})
        return result

    runtime.snapshot_in_background = timed_snapshot  # type: ignore[method-assign]

    async def watch_lag() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(LAG_TICK_S)
            late = time.perf_counter() - t0 - LAG_TICK_S
            if late > LAG_REPORT_S:
                events.append({"kind": "lag", "at": time.time(), "seconds": late})

    startup = server.startup
    tasks: list[asyncio.Task[None]] = []

    async def startup_with_watch(sockets: Any = None) -> None:
        await startup(sockets=sockets)
        tasks.append(asyncio.get_running_loop().create_task(watch_lag()))

    server.startup = startup_with_watch  # type: ignore[method-assign]
    atexit.register(lambda: os.getpid() == parent and args.trace.write_text(json.dumps(events)))
    server.run()


if __name__ == "__main__":
    main()
