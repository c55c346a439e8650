"""The Kafka stream worker end to end, beside a bare decode-and-produce peer.

One private Tansu broker (the one the tests use, `tests/servers.py`) on a free port; the
events (the synthetic transfer traffic, the example config's `transfer` scene with its
nine features, lists and rules) are produced to a one-partition topic before anything is
timed. Then, in this one process, rounds alternate between:

- **peer**: a confluent-kafka consumer that reads the topic, decodes each value
  (`orjson.loads`), produces it again (`orjson.dumps`) to an output topic, and per batch
  flushes and commits, as the worker does: the bare pipe, nothing decided;
- **riskengine**: `KafkaWorker` (in-memory state, a fresh engine per round) reading the
  same topic with its own group and producing decisions.

Each round reads the whole topic with a new group, so both start from offset 0 with the
broker warm. Reported: events/s (events over the wall time from the first poll to the
last commit), best and median over `--reps`, and our speed over the peer's.

    .venv/bin/python -m benchmarks.bench_worker                 # 200,000 events, 3 rounds
    .venv/bin/python -m benchmarks.bench_worker --events 50000 --reps 1
    py-spy record -o worker.svg -- .venv/bin/python -m benchmarks.bench_worker --reps 1

Results go to `benchmarks/results/worker.json`.
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
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import create_topics, kafka_server  # noqa: E402

from riskengine.engine import Engine  # noqa: E402
from riskengine.stream.base import KafkaTopic  # noqa: E402
from riskengine.stream.kafka import KafkaWorker, WorkerSettings  # noqa: E402
from riskengine.synth import generate_transfers  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "worker.json"
BATCH = 1000
GROUP_OPTIONS = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}


def load_events(bootstrap: str, topic: str, n: int, seed: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 10000})
    for i, event in enumerate(generate_transfers(n, seed)):
        event.pop("label", None)
        while True:
            try:
                producer.produce(topic, orjson.dumps(event), event["pay_account"].encode())
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
                         **GROUP_OPTIONS})
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


class TimedWorker(KafkaWorker):
    """`KafkaWorker` noting when its first batch arrived (group joins are not timed)."""

    first_batch: float | None = None

    def _process(self, messages: Any, sink: Any, dead: Any) -> Any:
        if self.first_batch is None:
            self.first_batch = time.perf_counter()
        return super()._process(messages, sink, dead)


def run_worker(bootstrap: str, source: str, sink: str, n: int) -> float:
    settings = WorkerSettings(
        source=KafkaTopic(bootstrap, source), sink=KafkaTopic(bootstrap, sink),
        group=f"bench-{uuid.uuid4()}", max_events=n, batch_size=BATCH,
        consumer_options=GROUP_OPTIONS)
    worker = TimedWorker(Engine.from_config(None), settings)
    stats = worker.run()
    ended = time.perf_counter()
    if stats.decided != n:
        raise RuntimeError(f"the worker decided {stats.decided} of {n} events")
    assert worker.first_batch is not None
    return ended - worker.first_batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    n = args.events
    rows: dict[str, list[float]] = {"peer": [], "riskengine": []}
    with kafka_server() as bootstrap:
        suffix = uuid.uuid4().hex[:6]
        source, out_peer, out_ours = (f"{x}-{suffix}" for x in ("events", "piped",
                                                                "decisions"))
        create_topics(bootstrap, {source: 1, out_peer: 1, out_ours: 1})
        print(f"loading {n:,} events…", flush=True)
        load_events(bootstrap, source, n, args.seed)
        for rep in range(args.reps):
            for name, run in (("peer", run_peer), ("riskengine", run_worker)):
                seconds = run(bootstrap, source, out_peer if name == "peer" else out_ours, n)
                rows[name].append(n / seconds)
                print(f"round {rep + 1} {name:>10}: {n / seconds:10,.0f} events/s",
                      flush=True)
    best = {k: max(v) for k, v in rows.items()}
    median = {k: statistics.median(v) for k, v in rows.items()}
    result = {
        "events": n, "reps": args.reps, "batch_size": BATCH,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "events_per_s": rows, "best": best, "median": median,
        "ratio_best": best["riskengine"] / best["peer"],
        "ratio_median": median["riskengine"] / median["peer"],
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"riskengine {best['riskengine']:,.0f} events/s best ({median['riskengine']:,.0f} "
          f"median); peer {best['peer']:,.0f} ({median['peer']:,.0f}); "
          f"ratio {result['ratio_best']:.2f} best, {result['ratio_median']:.2f} median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
