"""`riskengine demo`: the service on embedded defaults, fed labelled demo traffic.

Starts ``riskengine serve`` with the example config in a temporary state directory (or
``--state-dir``), waits until it is ready, then sends generated transfers (mule draining,
card testing, account takeover among everyday payments) over keep-alive HTTP connections
and shows, live: decisions/s by outcome, request latency percentiles, the rules that fire
most, and how the outcomes line up with the traffic's labels. Runs until Ctrl-C, or until
``--events`` are sent / ``--duration`` has passed.

With ``--url`` the traffic goes to a service that is already running (no service is
started). Unless ``--no-labels``, the traffic's labels go to ``POST /v1/labels`` as the
decisions come back (in batches of `LABEL_BATCH`, with the admin token of
``RISKENGINE_ADMIN_TOKEN``, or the one the demo gives the service it starts), so the
live comparison of an experiment (``GET /v1/scenes/transfer/experiments``) has them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from riskengine.synth import generate_transfers

OUTCOMES = ("accept", "review", "reject")
LABEL_BATCH = 500


@dataclass
class DemoStats:
    started: float = field(default_factory=time.perf_counter)
    sent: int = 0
    errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    by_label: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    recent: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=200_000))
    labels_sent: int = 0
    label_errors: int = 0

    def record(self, label: str, decision: dict[str, Any], seconds: float) -> None:
        now = time.perf_counter()
        outcome = decision["decision"]
        self.sent += 1
        self.outcomes[outcome] += 1
        self.by_label[label, outcome] += 1
        self.rules.update(h["rule_id"] for h in decision["hits"])
        self.latencies.append(seconds * 1000.0)
        self.recent.append((now, outcome))

    def rate(self, window: float = 2.0) -> Counter[str]:
        """Decisions per second by outcome over the last `window` seconds."""
        now = time.perf_counter()
        while self.recent and self.recent[0][0] < now - window:
            self.recent.popleft()
        span = min(window, max(now - self.started, 1e-3))
        counts = Counter(outcome for _, outcome in self.recent)
        return Counter({k: round(v / span) for k, v in counts.items()})


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def render(stats: DemoStats) -> Group:
    rate = stats.rate()
    head = Table(title="riskengine demo: live decisions", expand=False)
    for column in ("decisions/s", *OUTCOMES, "total", "errors"):
        head.add_column(column, justify="right")
    head.add_row(f"{sum(rate.values()):,}", *(f"{rate[o]:,}" for o in OUTCOMES),
                 f"{stats.sent:,}", f"{stats.errors:,}")
    lat = list(stats.latencies)
    latency = Table(title="request latency (ms, last 20k)")
    for column in ("p50", "p90", "p99", "max"):
        latency.add_column(column, justify="right")
    latency.add_row(*(f"{percentile(lat, q):.2f}" for q in (0.5, 0.9, 0.99)),
                    f"{max(lat, default=0.0):.2f}")
    rules = Table(title="top rules")
    rules.add_column("rule")
    rules.add_column("hits", justify="right")
    for rule, hits in stats.rules.most_common(6):
        rules.add_row(rule, f"{hits:,}")
    labels = Table(title="labels × outcomes")
    labels.add_column("label")
    for outcome in OUTCOMES:
        labels.add_column(outcome, justify="right")
    for label in sorted({lab for lab, _ in stats.by_label}):
        labels.add_row(label, *(f"{stats.by_label[label, o]:,}" for o in OUTCOMES))
    return Group(head, latency, rules, labels)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(state_dir: Path, port: int, config: Path | None,
                  admin_token: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "riskengine", "serve", "--port", str(port),
           "--state-dir", str(state_dir), "--log-level", "warning"]
    if config is not None:
        cmd += ["--config", str(config)]
    env = {**os.environ, "RISKENGINE_API_TOKEN": "", "RISKENGINE_ADMIN_TOKEN": admin_token}
    return subprocess.Popen(cmd, env=env)


class LabelSender:
    """Posts the traffic's labels to ``/v1/labels`` in batches of `LABEL_BATCH`."""

    def __init__(self, client: httpx.AsyncClient, admin_token: str, stats: DemoStats) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {admin_token}"}
        self.stats = stats
        self.pending: list[dict[str, str]] = []

    async def add(self, event_id: str, label: str) -> None:
        self.pending.append({"event_id": event_id, "label": label, "source": "demo"})
        if len(self.pending) >= LABEL_BATCH:
            await self.flush()

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            response = await self.client.post("/v1/labels", json=batch, headers=self.headers)
        except httpx.TransportError:
            self.stats.label_errors += len(batch)
            return
        if response.status_code == 200:
            self.stats.labels_sent += len(batch)
        else:
            self.stats.label_errors += len(batch)


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes] | None,
                     timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {proc.returncode}")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the service did not become ready in time")


async def feed(base_url: str, events: Iterator[dict[str, Any]], stats: DemoStats,
               concurrency: int, stop: asyncio.Event, admin_token: str | None = None) -> None:
    """Send `events`; with `admin_token`, their labels too (`LabelSender`)."""
    limits = httpx.Limits(max_connections=concurrency + 1,
                          max_keepalive_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10.0) as client:
        labels = None if admin_token is None else LabelSender(client, admin_token, stats)

        async def sender() -> None:
            for event in events:
                if stop.is_set():
                    return
                label = str(event.pop("label", "normal"))
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/transfer/evaluate", json=event)
                except httpx.TransportError:
                    stats.errors += 1
                    continue
                if response.status_code != 200:
                    stats.errors += 1
                    continue
                decision = response.json()
                stats.record(label, decision, time.perf_counter() - started)
                if labels is not None:
                    await labels.add(decision["event_id"], label)

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        if labels is not None:
            await labels.flush()


async def run_demo(*, events: int, seed: int, duration: float | None, concurrency: int,
                   state_dir: Path | None, config: Path | None, console: Console,
                   url: str | None = None, labels: bool = True) -> DemoStats:
    """The live demo against a service it starts, or the running one at `url`."""
    stats = DemoStats()
    with tempfile.TemporaryDirectory(prefix="riskengine-demo-") as tmp:
        token = os.environ.get("RISKENGINE_ADMIN_TOKEN") or (
            None if url else secrets.token_urlsafe(24))
        proc: subprocess.Popen[bytes] | None = None
        if url is None:
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            assert token is not None
            proc = start_service(state_dir or Path(tmp), port, config, token)
        else:
            base_url = url.rstrip("/")
        if labels and token is None:
            raise RuntimeError("--url with labels needs RISKENGINE_ADMIN_TOKEN (the "
                               "service's admin token); or give --no-labels")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            async with httpx.AsyncClient(base_url=base_url) as probe:
                await wait_ready(probe, proc)
            console.print(f"service on {base_url} (docs: {base_url}/docs, metrics: "
                          f"{base_url}/metrics); Ctrl-C stops", markup=False)
            if proc is not None and token is not None:  # the demo's own throwaway token
                console.print(f"console: {base_url}/console (sign in with the admin token "
                              f"{token})", markup=False)
            traffic = generate_transfers(events, seed)
            task = asyncio.create_task(feed(base_url, traffic, stats, concurrency, stop,
                                            token if labels else None))
            with Live(render(stats), console=console, refresh_per_second=4) as live:
                while not task.done():
                    if duration is not None and time.perf_counter() - stats.started > duration:
                        stop.set()
                    live.update(render(stats))
                    await asyncio.sleep(0.25)
                live.update(render(stats))
            await task
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return stats
