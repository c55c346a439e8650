"""Worker processes per machine: `riskengine worker --processes N` over an N-partition topic.

    .venv/bin/python -m benchmarks.bench_worker_processes --processes 2
    .venv/bin/python -m benchmarks.bench_worker_processes --workload example --events 100000

One private Tansu broker; the events (`benchmarks.bench_worker`'s workloads) are produced
keyed by the payer to a topic of `--processes` partitions before anything is timed. Then
rounds alternate between 1 process and `--processes` processes, each a `riskengine worker`
command (in-memory state, a new group and output topic, `--idle-exit`): its rate is the
events over the time between the broker timestamps of the first and the last decision
(the joins and the idle wait are not counted). With features keyed by other fields than
the payer (the receiver's, the device's) each process sees only its partitions' events of
a receiver: fine for a throughput figure, not a partitioning to run them on (see the
README on partitioning). Results in `benchmarks/results/worker_processes_<workload>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import yaml
from confluent_kafka import Consumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import create_topics, kafka_server  # noqa: E402

from benchmarks.bench_engine import SCENE  # noqa: E402
from benchmarks.bench_worker import (  # noqa: E402
    WORKLOADS,
    load_events,
    workload_config,
    workload_events,
)
from benchmarks.procs import cpu_model  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def decision_times(bootstrap: str, topic: str, expected: int) -> list[int]:
    """Broker timestamps (ms) of every decision on `topic` (one partition)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    times: list[int] = []
    try:
        while len(times) < expected:
            batch = consumer.consume(10_000, timeout=5)
            if not batch:
                break
            times += [m.timestamp()[1] for m in batch if m.error() is None]
    finally:
        consumer.close()
    return times


def run_round(bootstrap: str, source: str, processes: int, n: int, config: Path | None,
              scene: str) -> float:
    sink = f"decisions-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {sink: 1})
    command = [sys.executable, "-m", "riskengine", "worker", "--processes", str(processes),
               "--source", f"kafka://{bootstrap}/{source}",
               "--sink", f"kafka://{bootstrap}/{sink}", "--group", f"bench-{uuid.uuid4()}",
               "--scene", scene, "--idle-exit", "5"]
    if config is not None:
        command += ["--config", str(config)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"the worker failed: {done.stderr[-2000:]}")
    times = decision_times(bootstrap, sink, n)
    if len(times) != n:
        raise RuntimeError(f"{len(times)} decisions for {n} events")
    return n / ((max(times) - min(times)) / 1000.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workload", choices=WORKLOADS, default="seed")
    args = parser.parse_args(argv)
    n, many = args.events, args.processes
    rows: dict[str, list[float]] = {"1": [], str(many): []}
    with tempfile.TemporaryDirectory() as tmp, kafka_server() as bootstrap:
        config = workload_config(args.workload)  # the command takes a file
        scene = "transfer"
        if isinstance(config, dict):
            path = Path(tmp) / f"{args.workload}.yaml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            config, scene = path, SCENE
        source = f"events-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, {source: many})
        print(f"loading {n:,} events into {many} partitions…", flush=True)
        load_events(bootstrap, source, workload_events(args.workload, n, args.seed))
        for rep in range(args.reps):
            for processes in (1, many):
                rate = run_round(bootstrap, source, processes, n, config, scene)
                rows[str(processes)].append(rate)
                print(f"round {rep + 1}, {processes} process(es): {rate:10,.0f} events/s "
                      f"({rate / processes:,.0f} per process)", flush=True)
    best = {k: max(v) for k, v in rows.items()}
    result = {
        "workload": args.workload, "events": n, "reps": args.reps, "processes": many,
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "events_per_s": rows, "best": best,
        "median": {k: statistics.median(v) for k, v in rows.items()},
        "scaling_best": best[str(many)] / best["1"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"worker_processes_{args.workload}.json").write_text(
        json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"1 process {best['1']:,.0f} events/s best; {many} processes "
          f"{best[str(many)]:,.0f} ({result['scaling_best']:.2f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
