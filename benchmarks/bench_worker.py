"""The Kafka stream worker end to end, beside a bare decode-and-produce peer.

One private Tansu broker (the one the tests use, `tests/servers.py`) on a free port; the
events are produced to a one-partition topic before anything is timed. Two workloads
(`--workload`): ``seed``, the seed workload (`benchmarks.workload`) on the seed's three
features and rule (the config of `benchmarks.bench_engine`); ``example``, the synthetic
transfer traffic (`riskengine generate`) on the example config's `transfer` scene with
its twelve features (three of them 30-day tiled windows), lists, a gradient-boosted tree
model and seven rules; ``example-nine``, the same events on the config the scale-out
targets were set on (`benchmarks/configs/example_nine.yaml`: nine features, one 30-day
tiled window per payer-receiver pair, lists and rules, no model). Then, in this one
process, rounds alternate between:

- **peer**: a confluent-kafka consumer that reads the topic, decodes each value
  (`orjson.loads`), produces it again (`orjson.dumps`) to an output topic, and per batch
  flushes and commits, as the worker does: the bare pipe, nothing decided;
- **riskengine**: `KafkaWorker` (in-memory state, a fresh engine per round) reading the
  same topic with its own group and producing decisions.

Each round reads the whole topic with a new group, so both start from offset 0 with the
broker warm. Reported: events/s (events over the wall time from the first poll to the
last commit), best and median over `--reps`, and our speed over the peer's; and how long
after its start each worker round had its first batch (joining the group with the
worker's default settings: the first assignment).

The broker runs on one core and this process (the peer, the worker and their librdkafka
threads) on another (`--broker-cpu`, `--worker-cpu`; `--no-pin` to share the cores as the
scheduler likes), as a deployment's broker is on other machines. (Runs pinned and
unpinned in turn gave the same rates here; see BENCHMARKS.md.)

    .venv/bin/python -m benchmarks.bench_worker                 # 200,000 events, 3 rounds
    .venv/bin/python -m benchmarks.bench_worker --workload example --events 100000
    .venv/bin/python -m benchmarks.profile_worker --workload example   # py-spy, by stage

Results go to `benchmarks/results/worker_<workload>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import create_topics, kafka_server  # noqa: E402

from benchmarks.bench_engine import SCENE, engine_config  # noqa: E402
from benchmarks.workload import WorkloadSpec, generate  # noqa: E402
from riskengine.engine import Engine  # noqa: E402
from riskengine.stream.base import KafkaTopic  # noqa: E402
from riskengine.stream.kafka import KafkaWorker, WorkerSettings  # noqa: E402
from riskengine.synth import generate_transfers  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WORKLOADS = ("seed", "example", "example-nine")
EXAMPLE_NINE = Path(__file__).parent / "configs" / "example_nine.yaml"
BATCH = 1000
PEER_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "2000"}
"""The peer's group settings: the worker's defaults (riskengine/stream/kafka/group.py)."""


def workload_events(workload: str, n: int, seed: int) -> Iterator[dict[str, Any]]:
    if workload == "seed":
        yield from generate(WorkloadSpec(events=n))
        return
    for event in generate_transfers(n, seed):
        event.pop("label", None)
        yield event


def workload_config(workload: str) -> Any:
    """The config of `workload`: a mapping (seed), a path, or None (the example config)."""
    if workload == "seed":
        return engine_config(schema=True)
    return EXAMPLE_NINE if workload == "example-nine" else None


def workload_engine(workload: str) -> Engine:
    return Engine.from_config(workload_config(workload))


def load_events(bootstrap: str, topic: str, events: Iterator[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 10000})
    for i, event in enumerate(events):
        while True:
            try:
                producer.produce(topic, orjson.dumps(event), str(event["pay_account"]).encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 20000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the broker did not take the events")


def run_peer(bootstrap: str, source: str, sink: str, n: int) -> float:
    """Decode and produce every event, flushing and committing per batch; seconds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"peer-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         **PEER_GROUP})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    consumer.subscribe([source])
    done = 0
    started: float | None = None
    try:
        while done < n:
            messages = consumer.consume(BATCH, timeout=0.1)
            if not messages:
                continue
            if started is None:
                started = time.perf_counter()
            last: dict[int, int] = {}
            for msg in messages:
                if msg.error() is not None:
                    continue
                event = orjson.loads(msg.value() or b"")
                while True:
                    try:
                        producer.produce(sink, orjson.dumps(event), event["event_id"])
                        break
                    except BufferError:
                        producer.poll(0.05)
                last[msg.partition() or 0] = (msg.offset() or 0) + 1
                done += 1
            if producer.flush(60):
                raise RuntimeError("peer: the broker did not take the output")
            consumer.commit(offsets=[TopicPartition(source, p, o) for p, o in last.items()],
                            asynchronous=False)
        assert started is not None
        return time.perf_counter() - started
    finally:
        consumer.close()


class TimedSource:
    """A worker's source, noting when its first batch arrived (group joins are not
    timed); everything else is the source's own."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.first_batch: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def poll(self, limit: int) -> Any:
        batch = self.source.poll(limit)
        if batch is not None and self.first_batch is None:
            self.first_batch = time.perf_counter()
        return batch


def run_worker(bootstrap: str, source: str, sink: str, n: int, engine: Engine,
               scene: str) -> tuple[float, float]:
    """(seconds from the first batch to the last commit, seconds from the start of the
    run to the first batch: joining the group, with the worker's default settings)."""
    settings = WorkerSettings(
        source=KafkaTopic(bootstrap, source), sink=KafkaTopic(bootstrap, sink),
        group=f"bench-{uuid.uuid4()}", max_events=n, batch_size=BATCH, scene=scene)
    worker = KafkaWorker(engine, settings)
    timed = worker.source = TimedSource(worker.source)
    started = time.perf_counter()
    stats = worker.run()
    ended = time.perf_counter()
    if stats.decided != n:
        raise RuntimeError(f"the worker decided {stats.decided} of {n} events")
    assert timed.first_batch is not None
    return ended - timed.first_batch, timed.first_batch - started


def pin(cpu: int | None) -> None:
    """Pin the calling thread (and the threads and processes it starts after) to `cpu`."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workload", choices=WORKLOADS, default="seed")
    parser.add_argument("--no-peer", action="store_true",
                        help="riskengine rounds only, nothing written (for profiling)")
    cpus = sorted(os.sched_getaffinity(0))
    parser.add_argument("--broker-cpu", type=int, default=cpus[0])
    parser.add_argument("--worker-cpu", type=int, default=cpus[-1])
    parser.add_argument("--no-pin", action="store_true",
                        help="leave the broker and this process to share the cores")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: results/worker_<workload>.json")
    args = parser.parse_args(argv)
    pinned = not args.no_pin and len(cpus) > 1
    if pinned and (args.broker_cpu not in cpus or args.worker_cpu not in cpus
                   or args.broker_cpu == args.worker_cpu):
        parser.error(f"--broker-cpu and --worker-cpu must be two of the CPUs {cpus}")
    n = args.events
    scene = SCENE if args.workload == "seed" else "transfer"
    rows: dict[str, list[float]] = {"peer": [], "riskengine": []}
    joins: list[float] = []
    pin(args.broker_cpu if pinned else None)  # the broker process inherits it
    with kafka_server() as bootstrap:
        pin(args.worker_cpu if pinned else None)
        suffix = uuid.uuid4().hex[:6]
        source, out_peer, out_ours = (f"{x}-{suffix}" for x in ("events", "piped",
                                                                "decisions"))
        create_topics(bootstrap, {source: 1, out_peer: 1, out_ours: 1})
        print(f"loading {n:,} events…", flush=True)
        load_events(bootstrap, source, workload_events(args.workload, n, args.seed))
        for rep in range(args.reps):
            for name in ("riskengine",) if args.no_peer else ("peer", "riskengine"):
                joined = ""
                if name == "peer":
                    seconds = run_peer(bootstrap, source, out_peer, n)
                else:
                    seconds, join = run_worker(bootstrap, source, out_ours, n,
                                               workload_engine(args.workload), scene)
                    joins.append(join)
                    joined = f" (first batch {join:.1f} s after the start)"
                rows[name].append(n / seconds)
                print(f"round {rep + 1} {name:>10}: {n / seconds:10,.0f} events/s{joined}",
                      flush=True)
    if args.no_peer:
        return 0
    best = {k: max(v) for k, v in rows.items()}
    median = {k: statistics.median(v) for k, v in rows.items()}
    result = {
        "workload": args.workload, "events": n, "reps": args.reps, "batch_size": BATCH,
        "pinning": ({"broker": args.broker_cpu, "worker_and_peer": args.worker_cpu}
                    if pinned else None),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "events_per_s": rows, "best": best, "median": median,
        "worker_first_batch_after_s": [round(j, 2) for j in joins],
        "ratio_best": best["riskengine"] / best["peer"],
        "ratio_median": median["riskengine"] / median["peer"],
    }
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / f"worker_{args.workload}.json"
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"riskengine {best['riskengine']:,.0f} events/s best ({median['riskengine']:,.0f} "
          f"median); peer {best['peer']:,.0f} ({median['peer']:,.0f}); "
          f"ratio {result['ratio_best']:.2f} best, {result['ratio_median']:.2f} median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
