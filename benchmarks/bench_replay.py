"""`riskengine replay` end to end, beside the seed transcription on the same file.

Writes the seed workload (`benchmarks.workload`, seed 4; 1,000,000 events by default) as
JSON Lines and the seed config (`bench_engine.engine_config`: the three seed features and
the `mule_drain` rule, no schema) as YAML, untimed. Then, in rounds that interleave the
runners (`--reps`, default 3), each runner reads that same file and writes its output as
JSON Lines, **each as its own process** (interpreter start, imports and config included,
timed from start to exit):

- **peer**: the seed transcription (`python -m benchmarks.peers.seed_jsonl`);
- **riskengine replay, local**: ``riskengine replay EVENTS -o OUT -c CONFIG`` (the command
  line, `python -m riskengine`);
- **riskengine replay, Spark** ``local[1]`` and ``local[2]``: ``riskengine replay ...
  --runner spark --master local[N]`` (output: a Parquet directory, the Spark runner's
  format), when the command has a Spark runner (`--runner` in its help); otherwise
  skipped with a note;
- **engine alone** (a reference, not end to end): `python -m benchmarks.engine_alone`
  loads the events into memory, then times `Engine.evaluate` over them: the replay's
  floor on this machine at this moment.

Reported per runner: events/s from the wall time (the headline: end to end), from the CPU
time of the process and its children (not for Spark, whose JVM is not a child this
process waits for), and — for riskengine — from the replay's own loop
time (`--summary-json` `elapsed_s`: reading, deciding, writing; no start-up; for the
engine alone, its loop over the events in memory); best and median over the rounds;
median ratios against the peer; the load average around each run (the machine may be
shared). Output files are deleted after each run. Writes
`benchmarks/results/replay.json` and prints a Markdown table.

    .venv/bin/python -m benchmarks.bench_replay                    # 1,000,000 events, 3 rounds
    .venv/bin/python -m benchmarks.bench_replay --events 200000 --reps 1
    .venv/bin/python -m benchmarks replay ...                      # the same
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as pa_dataset  # type: ignore[import-untyped]
import yaml

from benchmarks.bench_engine import code_version, engine_config, machine
from benchmarks.workload import WorkloadSpec, describe, generate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGET_EPS = 100_000
PEER = "peer (seed transcription)"
LOCAL = "riskengine replay, local"
ENGINE = "engine alone (reference: in memory, no files)"


@dataclass
class Runner:
    """One way of replaying the file: the command, given the input and output paths."""

    name: str
    command: list[str]
    loop: str | None = None
    """Where its loop time comes from: ``summary`` (it takes `--summary-json`: riskengine),
    ``stdout`` (it prints ``{"elapsed_s": ...}``: the engine alone), or nowhere."""
    end_to_end: bool = True
    """Its wall and CPU time are a whole replay (not for the engine alone, whose process
    spends them mostly loading the events into memory)."""
    cpu_counted: bool = True
    """The CPU time of its process tree is all counted (not for Spark: the JVM is not a
    child this process waits for)."""
    output: str = "out.jsonl"
    """What it writes in the work folder: a JSON Lines file, or a Parquet directory (the
    Spark runner)."""


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    loop_s: float | None
    load_before: float
    load_after: float


@dataclass
class Outcome:
    runner: Runner
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None
    failed: str | None = None


def write_workload(directory: Path, events: int, seed: int) -> tuple[Path, Path, dict[str, int]]:
    """The events file and the config, reused when they are there already."""
    source = directory / f"seed-{events}-{seed}.jsonl"
    config = directory / "seed-config.yaml"
    config.write_text(yaml.safe_dump(engine_config(False), sort_keys=False), encoding="utf-8")
    described = directory / f"seed-{events}-{seed}.describe.json"
    if source.is_file() and described.is_file():
        return source, config, json.loads(described.read_text(encoding="utf-8"))
    print(f"writing {events:,} events to {source}", file=sys.stderr)
    rows = generate(WorkloadSpec(events=events, seed=seed))
    partial = source.with_suffix(".partial")
    with partial.open("wb") as out:
        for start in range(0, len(rows), 10_000):
            out.write(b"".join(json.dumps(e).encode("utf-8") + b"\n"
                               for e in rows[start:start + 10_000]))
    partial.replace(source)
    description = describe(rows)
    described.write_text(json.dumps(description), encoding="utf-8")
    return source, config, description


def spark_runner_available() -> bool:
    """True when `riskengine replay` offers `--runner` (the Spark runner)."""
    done = subprocess.run([sys.executable, "-m", "riskengine", "replay", "--help"], cwd=ROOT,
                          capture_output=True, text=True, env=_env(), check=False)
    return "--runner" in done.stdout


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200"}


def runners(config: Path, with_spark: bool) -> tuple[list[Runner], list[Outcome]]:
    python = [sys.executable]
    replay = [*python, "-m", "riskengine", "replay", "{input}", "-o", "{output}", "-c",
              str(config)]
    chosen = [Runner(PEER, [*python, "-m", "benchmarks.peers.seed_jsonl", "{input}",
                            "{output}"]),
              Runner(LOCAL, replay, loop="summary"),
              Runner(ENGINE, [*python, "-m", "benchmarks.engine_alone", "{input}",
                              str(config)], loop="stdout", end_to_end=False)]
    skipped: list[Outcome] = []
    for master in ("local[1]", "local[2]"):
        runner = Runner(f"riskengine replay, Spark {master}",
                        [*replay, "--runner", "spark", "--master", master], loop="summary",
                        cpu_counted=False, output="out.parquet")
        if not with_spark:
            skipped.append(Outcome(runner, skipped="--no-spark"))
        elif not spark_runner_available():
            skipped.append(Outcome(runner, skipped="this riskengine has no Spark runner yet "
                                                   "(`riskengine replay --help` shows no "
                                                   "--runner)"))
        else:
            chosen.append(runner)
    return chosen, skipped


def run_once(runner: Runner, source: Path, workdir: Path, events: int) -> Run:
    """Run `runner` as a process on `source`; wall and CPU time from start to exit. Then,
    untimed, its output must hold one line per event (a guard against timing a run that
    did nothing)."""
    output = workdir / runner.output
    summary = workdir / "summary.json"
    command = [part.format(input=source, output=output) for part in runner.command]
    if runner.loop == "summary":
        command += ["--summary-json", str(summary)]
    load_before = os.getloadavg()[0]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-2000:]}")
        if runner.output != "out.jsonl" or output.is_file():
            written = count_records(output)
            if written != events:
                raise RuntimeError(f"wrote {written:,} records for {events:,} events")
        loop = None
        if runner.loop == "summary":
            loop = float(json.loads(summary.read_text(encoding="utf-8"))["elapsed_s"])
        elif runner.loop == "stdout":
            loop = float(json.loads(done.stdout.strip().splitlines()[-1])["elapsed_s"])
        return Run(wall, (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime),
                   loop, load_before, os.getloadavg()[0])
    finally:
        for written in workdir.glob("out.*"):
            if written.is_dir():
                shutil.rmtree(written)
            else:
                written.unlink()
        summary.unlink(missing_ok=True)


def count_records(output: Path) -> int:
    """Lines of a JSON Lines file, rows of a Parquet file or directory."""
    if output.suffix == ".parquet":
        return int(pa_dataset.dataset(output, format="parquet").count_rows())
    with output.open("rb") as handle:
        return sum(1 for _ in handle)


def shown(command: list[str]) -> str:
    """A runner's command as a reader would type it (no paths of this machine)."""
    words = ["python" if word == sys.executable else word for word in command]
    return " ".join("CONFIG" if word.endswith("seed-config.yaml") else word for word in words)


def rates(values: list[float], events: int) -> dict[str, float]:
    return {"best_eps": round(events / min(values)),
            "median_eps": round(events / statistics.median(values))}


def report_of(outcomes: list[Outcome], events: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for outcome in outcomes:
        entry: dict[str, Any] = {"command": shown(outcome.runner.command)}
        if outcome.skipped or outcome.failed or not outcome.runs:
            entry["skipped"] = outcome.skipped
            entry["failed"] = outcome.failed
            result[outcome.runner.name] = entry
            continue
        runs = outcome.runs
        if outcome.runner.end_to_end:
            entry["wall"] = rates([r.wall_s for r in runs], events)
            if outcome.runner.cpu_counted:
                entry["cpu"] = rates([r.cpu_s for r in runs], events)
        loops = [r.loop_s for r in runs if r.loop_s is not None]
        if loops:
            entry["loop"] = rates(loops, events)
        entry["runs"] = [vars(r) | {"wall_s": round(r.wall_s, 3), "cpu_s": round(r.cpu_s, 3)}
                         for r in runs]
        result[outcome.runner.name] = entry
    peer = result.get(PEER, {})
    for entry in result.values():
        if "wall" in entry and "wall" in peer:
            entry["x_peer_wall_median"] = round(
                entry["wall"]["median_eps"] / peer["wall"]["median_eps"], 2)
            if "cpu" in entry:
                entry["x_peer_cpu_median"] = round(
                    entry["cpu"]["median_eps"] / peer["cpu"]["median_eps"], 2)
    local, engine = result.get(LOCAL, {}), result.get(ENGINE, {})
    if "wall" in local:
        local["target_met"] = local["wall"]["median_eps"] >= TARGET_EPS
        if "loop" in engine:
            local["share_of_engine_alone_wall_median"] = round(
                local["wall"]["median_eps"] / engine["loop"]["median_eps"], 2)
    return result


def markdown(runs: dict[str, Any]) -> str:
    lines = ["| run | events/s wall, median (best) | events/s CPU, median | events/s in the "
             "replay loop, median | × peer (wall, median) | × peer (CPU, median) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, entry in runs.items():
        loop = entry.get("loop")
        if "wall" not in entry and loop is not None:
            lines.append(f"| {name} | | | {loop['median_eps']:,} | | |")
            continue
        if "wall" not in entry:
            why = entry.get("skipped") or entry.get("failed") or "no runs"
            lines.append(f"| {name} | skipped: {why} | | | | |")
            continue
        lines.append(
            f"| {name} | {entry['wall']['median_eps']:,} ({entry['wall']['best_eps']:,}) | "
            f"{format(entry['cpu']['median_eps'], ',') if 'cpu' in entry else 'n/a'} | "
            f"{'' if loop is None else format(loop['median_eps'], ',')} | "
            f"{entry.get('x_peer_wall_median', '')} | {entry.get('x_peer_cpu_median', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_replay",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the generated events here and reuse them (default: a "
                             "temporary folder, deleted at the end)")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark runs")
    parser.add_argument("--output", type=Path, default=RESULTS / "replay.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        source, config, description = write_workload(workdir, args.events, args.seed)
        chosen, skipped = runners(config, not args.no_spark)
        for outcome in skipped:
            print(f"skipped {outcome.runner.name}: {outcome.skipped}", file=sys.stderr)
        outcomes = {runner.name: Outcome(runner) for runner in chosen}
        for rep in range(args.reps):
            for runner in chosen:
                outcome = outcomes[runner.name]
                if outcome.failed:
                    continue
                try:
                    run = run_once(runner, source, workdir, args.events)
                except RuntimeError as exc:
                    outcome.failed = str(exc)
                    print(f"{runner.name} failed: {exc}", file=sys.stderr)
                    continue
                outcome.runs.append(run)
                print(f"round {rep + 1}/{args.reps} {runner.name}: "
                      f"{args.events / run.wall_s:,.0f} events/s wall, "
                      f"{args.events / run.cpu_s:,.0f} CPU (load {run.load_before:.1f})",
                      file=sys.stderr)
    runs = report_of([*outcomes.values(), *skipped], args.events)
    report = {
        "machine": machine() | {"load_average_at_end": os.getloadavg()},
        "code": code_version(),
        "command": "python -m benchmarks.bench_replay " + " ".join(argv or sys.argv[1:]),
        "events": args.events,
        "reps": args.reps,
        "workload": description,
        "target_events_per_second": TARGET_EPS,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(runs))
    print(f"written {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
