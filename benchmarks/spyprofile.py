"""Summarise a py-spy ``--format raw --threads --full-filenames`` profile of the service.

Every sample is put in one bucket — HTTP, engine, JSON, decision log, metrics,
service glue, event loop — and functions are ranked by self and total time.

A sample's bucket: samples of the decision-log writer thread are the decision log; samples
under the decision-log hand-off on the event loop (building the record, waiting for the
commit) too; a sample whose innermost line calls orjson is JSON; otherwise the innermost
frame outside the standard library decides (stdlib frames such as ``typing`` or
``asyncio.gather`` are charged to whoever called them), and a sample with only the
server's own frames above the standard library is the event loop itself (uvloop's C code:
sockets, HTTP parsing, scheduling).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_ADDRESS = re.compile(r" (object )?at 0x[0-9a-fA-F]+")
_WAITS = ("wait(", ".get(block=True)", "acquire(", "sleep(")
_STDLIB = re.compile(r"/lib/python3\.\d+/(?!site-packages/)")
LOG_HANDOFF = ("ServiceRuntime.commit", "LogRecord.", "DecisionLog.append", "TickWaiter.")
FRAMEWORK = ("/fastapi/", "/starlette/", "/pydantic/", "/pydantic_core/", "/anyio/",
             "/httptools/", "/h11/", "/uvicorn/protocols/", "/uvicorn/middleware/")
SERVER_ROOT = ("/riskengine/__main__.py", "/uvicorn/server.py", "/uvicorn/_compat.py",
               "/uvicorn/main.py", "/riskengine/cli.py", "/typer/", "/click/", "<frozen runpy>")

BUCKETS = ("HTTP (uvicorn's protocol and riskengine's, FastAPI, Starlette)",
           "event loop (uvloop: sockets, HTTP parsing, scheduling)",
           "engine (features, rules, decision)",
           "JSON (orjson)",
           "decision log: writer thread (SQLite)",
           "decision log: record + commit wait on the loop",
           "metrics (prometheus_client, riskengine's tallies)",
           "service glue (riskengine/service)",
           "other threads",
           "other")


@dataclass(frozen=True, slots=True)
class Frame:
    func: str
    file: str
    line: int

    @property
    def short(self) -> str:
        return f"{self.func} ({shorten(self.file)})"

    @property
    def root(self) -> bool:
        """A frame every sample of the server's main thread has (not worth ranking)."""
        return any(part in self.file for part in SERVER_ROOT) \
            or self.func in ("Runner.run", "BaseEventLoop.run_until_complete")


def shorten(path: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


@cache
def _parse(text: str) -> Frame:
    m = _FRAME.match(text)
    if m is None:
        return Frame(text, "", 0)
    file = _ADDRESS.sub("", m["file"])  # generated code is named after an object
    return Frame(m["func"], file, int(m["line"] or 0))


@cache
def _source_line(path: str, line: int) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _is_stdlib(frame: Frame) -> bool:
    return bool(_STDLIB.search(frame.file)) or frame.file.startswith("<frozen") \
        or frame.file == "<string>"


def idle(frames: list[Frame]) -> bool:
    """A thread blocked in a stdlib wait (py-spy does not always see it as idle)."""
    leaf = frames[-1]
    return _is_stdlib(leaf) and any(w in _source_line(leaf.file, leaf.line) for w in _WAITS)


def bucket(thread: str, frames: list[Frame]) -> str:
    if "decision-log-writer" in thread:
        return BUCKETS[4]
    if "MainThread" not in thread:
        return BUCKETS[8]
    if any(f.func.startswith(LOG_HANDOFF) or "/riskengine/decisionlog/" in f.file
           for f in frames):
        return BUCKETS[5]
    leaf = frames[-1]
    if "orjson" in _source_line(leaf.file, leaf.line):
        return BUCKETS[3]
    for frame in reversed(frames):
        if _is_stdlib(frame):
            continue
        path = frame.file
        if path.endswith("/riskengine/service/protocol.py"):
            return BUCKETS[0]
        if path.endswith("/riskengine/service/tallies.py"):
            return BUCKETS[6]
        if "/riskengine/service/" in path:
            return BUCKETS[7]
        if "/riskengine/" in path or path.startswith("<fast path") \
                or path.startswith("<ruleset"):
            return BUCKETS[2]
        if "/prometheus_client/" in path:
            return BUCKETS[6]
        if any(part in path for part in FRAMEWORK):
            return BUCKETS[0]
        if any(part in path for part in SERVER_ROOT):
            return BUCKETS[1]
        return BUCKETS[9]
    return BUCKETS[1]


def read_raw(path: Path) -> Iterable[tuple[str, list[Frame], int]]:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        yield parts[0], [_parse(p) for p in parts[1:]], int(count)


def summarise(path: Path, top: int = 25) -> dict[str, object]:
    total = waits = 0
    buckets: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    for thread, frames, count in read_raw(path):
        if not frames:
            continue
        if idle(frames):
            waits += count
            continue
        total += count
        name = re.sub(r"^thread \(\d+\): ", "", thread)
        threads[name] += count
        buckets[bucket(thread, frames)] += count
        self_time[frames[-1].short] += count
        for key in {f.short for f in frames if not f.root}:
            total_time[key] += count

    def share(counter: Counter[str], n: int | None = None) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in counter.most_common(n)]

    return {"samples": total, "idle_wait_samples": waits, "threads": share(threads),
            "buckets": [(b, round(100.0 * buckets[b] / total, 1)) for b in BUCKETS
                        if buckets[b]],
            "self": share(self_time, top), "total": share(total_time, top)}


def render(summary: dict[str, object], title: str) -> str:
    out = [title, "", f"samples: {summary['samples']} (and {summary['idle_wait_samples']} "
           "samples of threads blocked in a wait, left out)", "", "by thread (% of samples):"]
    out += [f"  {p:5.1f}  {k}" for k, p in summary["threads"]]  # type: ignore[attr-defined]
    out += ["", "where the time goes (% of samples):"]
    out += [f"  {p:5.1f}  {k}" for k, p in summary["buckets"]]  # type: ignore[attr-defined]
    out += ["", "functions by self time (%):"]
    out += [f"  {p:5.1f}  {k}" for k, p in summary["self"]]  # type: ignore[attr-defined]
    out += ["", "functions by total time (%):"]
    out += [f"  {p:5.1f}  {k}" for k, p in summary["total"]]  # type: ignore[attr-defined]
    return "\n".join(out) + "\n"
