"""The cost of tracing per evaluate request: off (the default) against the code before
tracing existed, and on.

    .venv/bin/python -m benchmarks.bench_tracing                 # 20,000 requests, 5 rounds
    .venv/bin/python -m benchmarks.bench_tracing --requests 5000 --rounds 3 --baseline main

Four kinds of service, each in its own process, in alternating order every round:

- ``baseline``: riskengine as it is at `--baseline` (a git ref; extracted with
  ``git archive`` to a temporary folder, the process's working folder), without tracing;
- ``off``: this tree, tracing off;
- ``on``: this tree, tracing on, every span handed to the SDK's in-memory exporter as it
  ends (the OTLP export itself runs in the SDK's background thread and is not timed);
- ``sampled``: as ``on`` with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` and
  ``OTEL_TRACES_SAMPLER_ARG=0.01`` (1 request in 100 recorded).

Each process builds the service runtime on a fresh state folder (SQLite decision log),
then sends ``POST /v1/transfer/evaluate`` straight to the evaluate lane's ASGI callable
(no sockets: the difference is the lane's, not the kernel's), 32 requests in flight at a
time, the demo traffic (`riskengine.synth`, seed 7); the time is for all of them, after a
warm-up of 1,000. Prints requests per second per round, and the ratios of the best round
of each kind. Results: ``benchmarks/results/tracing.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.bench_engine import code_version, machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "tracing.json"
IN_FLIGHT = 32
WARM_UP = 1000


def measure(mode: str, requests: int) -> float:
    """Requests per second of one service of kind `mode` (run in its own process)."""
    from riskengine.service.app import create_app
    from riskengine.service.runtime import ServiceRuntime
    from riskengine.service.settings import ServiceSettings
    from riskengine.synth import generate_transfers

    values: dict[str, Any] = {"state_dir": Path(tempfile.mkdtemp()), "watch_config": False,
                              "admin_token": "bench-token-0123456789"}
    if mode in ("on", "sampled"):
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        from riskengine.tracing import TracingSettings

        exporter = InMemorySpanExporter()
        values["tracing"] = TracingSettings(exporter=exporter)
    runtime = ServiceRuntime(ServiceSettings(**values))
    runtime.recover()
    if mode == "baseline":
        from riskengine.service.lane import EvaluateLane

        lane: Any = EvaluateLane(create_app(runtime=runtime, lane=False), runtime)
    else:
        from riskengine.service.lane import evaluate_lane

        lane = evaluate_lane(create_app(runtime=runtime, lane=False), runtime)
    bodies = [orjson.dumps({k: v for k, v in e.items() if k != "label"})
              for e in generate_transfers(WARM_UP + requests, 7)]
    headers = [(b"content-type", b"application/json")]

    async def one(body: bytes) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"status {message['status']}")

        scope = {"type": "http", "method": "POST", "path": "/v1/transfer/evaluate",
                 "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await lane(scope, receive, send)

    async def run(chunk: list[bytes]) -> None:
        queue = iter(chunk)

        async def sender() -> None:
            for body in queue:
                await one(body)

        await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))

    async def main() -> float:
        await run(bodies[:WARM_UP])
        if mode in ("on", "sampled"):
            exporter.clear()
        started = time.perf_counter()
        await run(bodies[WARM_UP:])
        return requests / (time.perf_counter() - started)

    try:
        return asyncio.run(main())
    finally:
        runtime.close()


def baseline_tree(ref: str, into: Path) -> Path:
    """`ref`'s riskengine package, extracted to `into`."""
    archive = subprocess.run(["git", "archive", ref, "riskengine"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def in_process(mode: str, requests: int, source: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the benchmarks; riskengine: cwd
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        env.pop(name, None)
    if mode == "sampled":
        env.update(OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                   OTEL_TRACES_SAMPLER_ARG="0.01")
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_tracing", "--measure",
                           mode, "--requests", str(requests)], cwd=source, env=env,
                          capture_output=True, text=True, check=True)
    line = done.stdout.strip().splitlines()[-1]
    where, rate = line.split()
    if not where.startswith(str(source)):
        raise RuntimeError(f"{mode} ran riskengine from {where}, not {source}")
    return float(rate)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default="main", help="git ref before tracing")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        import riskengine

        rate = measure(args.measure, args.requests)
        print(Path(riskengine.__file__).resolve().parent.parent, f"{rate:.1f}")
        return
    with tempfile.TemporaryDirectory() as folder:
        base = baseline_tree(args.baseline, Path(folder))
        sources = {"baseline": base, "off": ROOT, "on": ROOT, "sampled": ROOT}
        rates: dict[str, list[float]] = {mode: [] for mode in sources}
        for round_ in range(args.rounds):
            order = list(sources) if round_ % 2 == 0 else list(reversed(sources))
            for mode in order:
                rates[mode].append(in_process(mode, args.requests, sources[mode]))
            print(f"round {round_ + 1}: " + ", ".join(f"{m} {rates[m][-1]:,.0f} req/s"
                                                      for m in sources), flush=True)
    best = {mode: max(values) for mode, values in rates.items()}
    ratios = {"off_vs_baseline": best["off"] / best["baseline"],
              "on_vs_off": best["on"] / best["off"],
              "sampled_vs_off": best["sampled"] / best["off"]}
    print("best: " + ", ".join(f"{m} {r:,.0f}" for m, r in best.items()) + " req/s; "
          + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": machine(), "code": code_version(), "baseline": args.baseline,
        "requests": args.requests, "in_flight": IN_FLIGHT, "rates": rates, "best": best,
        "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
