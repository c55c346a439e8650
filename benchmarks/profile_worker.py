"""Where the Kafka stream worker spends its time: py-spy over one riskengine round of
``benchmarks.bench_worker``, each sample put in one stage of the loop.

    .venv/bin/python -m benchmarks.profile_worker                      # seed workload
    .venv/bin/python -m benchmarks.profile_worker --workload example --events 50000

Runs ``py-spy record --format raw`` (``pip install py-spy``) on ``bench_worker --no-peer
--reps 1`` and reads only the samples taken inside the worker's run. A sample's stage is
the innermost of these on its stack: the consumer's poll; decoding and schema checks;
the engine's features (the generated fast path, windows, tiles), its model scores, its
lists, rules and decision, its idempotency record; the output JSON; producing; the
flush and commit per batch; anything else in the loop. Writes
``benchmarks/results/profile_worker_<workload>.txt``; ``--keep`` keeps the raw samples.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.bench_worker import WORKLOADS
from benchmarks.spyprofile import Frame, read_raw

RESULTS = Path(__file__).resolve().parent / "results"

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (stage, markers of a frame: a function name or a path fragment); the innermost
    # frame that matches a marker decides, so nested stages come first in a stack
    ("consume (poll)", ("KafkaSource.poll",)),
    ("decode + validate", ("decode_event", "EventParser.", "/riskengine/events.py",
                           "<event parser")),
    ("engine: model scores", ("ModelSet.score", "OnnxScorer.", "/onnxruntime/")),
    ("engine: lists", ("SceneRuntime.list_hits", "/riskengine/lists.py")),
    ("engine: idempotency record", ("MemoryPart.remember", "RememberedIds.", "record_of")),
    ("engine: features", ("<fast path", "/riskengine/features/", "ScenePatterns.",
                          "<expr feature")),
    ("engine: rules + decision", ("SceneRuntime.decide", "/riskengine/rules/",
                                  "<ruleset", "<expr")),
    ("engine: other", ("MemoryPart.", "MemoryScene.", "Engine.decide_parsed")),
    ("output JSON", ("decision_message", "Decision.to_dict")),
    ("produce", ("KafkaSink.decision", "produce")),
    ("flush + commit", ("KafkaSink.flush", "KafkaSource.commit")),
)
OTHER = "loop, metrics, other"


def stage_of(frames: list[Frame]) -> str:
    for frame in reversed(frames):
        text = f"{frame.func} {frame.file}"
        for stage, markers in STAGES:
            if any(m in text if m.startswith(("/", "<")) else frame.func.startswith(m)
                   or frame.func == m for m in markers):
                return stage
    return OTHER


def summarise(raw: Path, top: int) -> tuple[int, Counter[str], Counter[str]]:
    samples = 0
    stages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for _thread, frames, count in read_raw(raw):
        if not any(f.func == "run_worker" for f in frames):
            continue  # loading the topic, joining, the broker's threads
        samples += count
        stages[stage_of(frames)] += count
        own[frames[-1].short] += count
    return samples, stages, Counter(dict(own.most_common(top)))


def render(workload: str, events: int, samples: int, stages: Counter[str],
           own: Counter[str]) -> str:
    lines = [f"py-spy profile of the Kafka worker, {workload} workload, {events:,} events",
             f"samples in the worker's run: {samples}", "", "by stage (% of samples):"]
    for stage in [s for s, _ in STAGES] + [OTHER]:
        if stages[stage]:
            lines.append(f"  {100.0 * stages[stage] / samples:5.1f}  {stage}")
    lines += ["", "functions by self time (%):"]
    lines += [f"  {100.0 * n / samples:5.1f}  {name}" for name, n in own.most_common()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=WORKLOADS, default="seed")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="keep the raw samples in this file")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is missing: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.keep or Path(tmp) / "worker.raw"
        subprocess.run(
            [spy, "record", "--format", "raw", "--full-filenames", "--threads",
             "-r", str(args.rate), "-o", str(raw), "--", sys.executable, "-m",
             "benchmarks.bench_worker", "--workload", args.workload, "--events",
             str(args.events), "--reps", "1", "--no-peer"], check=True)
        samples, stages, own = summarise(raw, args.top)
    if not samples:
        print("no samples inside the worker's run", file=sys.stderr)
        return 1
    text = render(args.workload, args.events, samples, stages, own)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"profile_worker_{args.workload}.txt").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
