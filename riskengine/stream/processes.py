"""N Kafka worker processes on one machine (`riskengine worker --processes N`).

Python decides on one core per process, so a machine with N cores runs N workers: each a
process of its own, one consumer in the worker's group, given its share of the topic's
partitions by Kafka. With in-memory state each process holds the state of the partitions
it reads, as a worker alone would (the topic keyed by the entity field, see
`riskengine.stream.kafka`): N partitions over N processes is one partition each, and
the group moves a partition (rebuilt from the log by its new owner) only when a process
joins or leaves. The processes share nothing but the broker.

The parent starts the processes (``spawn``: each loads the config and its engine
itself), waits, and ends them: SIGTERM/SIGINT is passed on (each finishes its batch,
commits, checkpoints), and if one stops with an error the others are stopped too and
the command fails — a supervisor (systemd, Kubernetes) restarts the whole. Process *i*
(from 0) checkpoints to ``STATE_DIR/worker-i`` and serves metrics on
``METRICS_PORT + i``; `max_events` and idle exit are each process's own.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

from riskengine.config import load_config
from riskengine.engine import Engine
from riskengine.exceptions import RiskEngineError
from riskengine.stream.base import StreamError, WorkerStats
from riskengine.stream.kafka.base import WorkerSettings

__all__ = ["MAX_PROCESSES", "EngineSource", "process_settings", "run_processes", "total"]

log = logging.getLogger(__name__)

MAX_PROCESSES = 64
STOP_TIMEOUT_S = 120.0
"""How long a stopped process may take to finish its batch and checkpoint."""


@dataclass(frozen=True)
class EngineSource:
    """What an engine is built from, in any process: the config file (None: the
    example), the shared state's URL (None: in memory) and the budget of its round trips
    (None: the default), a ruleset file to make live."""

    config: Path | None = None
    state: str | None = None
    ruleset: Path | None = None
    state_timeout_ms: int | None = None

    def load(self, scene: str) -> Engine:
        """The engine; `RiskEngineError` when the config, state or ruleset cannot be
        used."""
        project = load_config(self.config)
        if self.state is None:
            engine = Engine(project)
        else:
            from riskengine.service.shared import shared_engine

            engine = shared_engine(project, self.state, require_state=True,
                                   state_timeout_ms=self.state_timeout_ms)
        if self.ruleset is not None:
            from riskengine.stream.runner import use_ruleset_file

            use_ruleset_file(engine, scene, self.ruleset)
        return engine


def process_settings(settings: WorkerSettings, index: int) -> WorkerSettings:
    """Process `index`'s settings: its own checkpoint folder and metrics port."""
    changes: dict[str, Any] = {}
    if settings.state_dir is not None:
        changes["state_dir"] = settings.state_dir / f"worker-{index}"
    if settings.metrics_port:
        changes["metrics_port"] = settings.metrics_port + index
    return dataclasses.replace(settings, **changes)


def check_processes(settings: WorkerSettings, n: int) -> None:
    """`StreamError` when `n` processes cannot share this work."""
    if not 1 <= n <= MAX_PROCESSES:
        raise StreamError(f"--processes must be between 1 and {MAX_PROCESSES}, got {n}")
    if n > 1 and settings.replay:
        raise StreamError("a replay reads every partition in one process: it takes no "
                          "--processes")
    if n > 1 and settings.metrics_port and settings.metrics_port + n - 1 > 65535:
        raise StreamError(f"--metrics-port {settings.metrics_port} leaves no room for "
                          f"{n} processes (ports up to {settings.metrics_port + n - 1})")


def run_processes(source: EngineSource, settings: WorkerSettings, n: int
                  ) -> list[WorkerStats]:
    """Run `n` worker processes until each stops; their stats, in process order (a
    process stopped before it started has none). `StreamError` naming the processes
    that failed (the others were stopped)."""
    check_processes(settings, n)
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    children: list[Any] = []
    for index in range(n):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, name=f"riskengine-worker-{index}",
                                args=(index, source, process_settings(settings, index), send))
        child.start()
        send.close()
        pipes.append(receive)
        children.append(child)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("signal %s: stopping %d worker processes", signum, n)
        for child in children:
            _terminate(child)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    results: list[dict[str, Any] | str | None] = [None] * n
    failed: list[str] = []
    try:
        waiting = set(range(n))
        while waiting:
            ready = wait([pipes[i] for i in waiting] + [children[i].sentinel for i in waiting])
            for i in sorted(waiting):
                if pipes[i] not in ready and children[i].sentinel not in ready:
                    continue
                results[i] = result = _receive(pipes[i])
                children[i].join()
                waiting.discard(i)
                if isinstance(result, dict) or (result is None and stopping):
                    continue
                failed.append(f"worker process {i}: "
                              f"{result or f'exited with code {children[i].exitcode}'}")
                stopping = True
                for j in waiting:  # one failed: the others stop too
                    _terminate(children[j])
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        for child in children:
            child.join(STOP_TIMEOUT_S)
            if child.is_alive():
                child.kill()
    if failed:
        raise StreamError("; ".join(failed))
    return [WorkerStats(**r) for r in results if isinstance(r, dict)]


def total(each: list[WorkerStats]) -> WorkerStats:
    """The processes' stats added up."""
    out = WorkerStats()
    for stats in each:
        for field in dataclasses.fields(WorkerStats):
            value = getattr(stats, field.name)
            if isinstance(value, int):
                setattr(out, field.name, getattr(out, field.name) + value)
        for decision, count in stats.by_decision.items():
            out.by_decision[decision] = out.by_decision.get(decision, 0) + count
    return out


def _terminate(child: Any) -> None:
    if child.is_alive():
        child.terminate()  # SIGTERM: the batch in flight is finished and committed


def _receive(pipe: Connection) -> dict[str, Any] | str | None:
    """What a process sent back: its stats, or its error (None: it sent nothing)."""
    try:
        if pipe.poll():
            result: dict[str, Any] | str = pipe.recv()
            return result
    except (EOFError, OSError):
        pass
    return None


def _child(index: int, source: EngineSource, settings: WorkerSettings,
           report: Connection) -> None:
    """One worker process: build the engine, run until stopped, send the stats back."""
    from riskengine.stream.runner import run_foreground

    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s worker-{index} %(levelname)s %(message)s")
    try:
        engine = source.load(settings.scene)
        try:
            stats = run_foreground(engine, settings)
        finally:
            engine.close()
    except RiskEngineError as exc:
        report.send(str(exc))
        raise SystemExit(1) from None
    report.send(dataclasses.asdict(stats))
