"""Processes of the HTTP benchmark: free ports, CPU pinning, readiness, CPU accounting.

Every server runs as its own process group, pinned with ``taskset`` when the machine has
it, and is stopped by its own process id (SIGINT, then SIGKILL after a grace period).
"""

from __future__ import annotations

import http.client
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says what to fix."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cmd: Sequence[str], cpu: int | None) -> list[str]:
    """`cmd` run on one CPU through taskset (unchanged when there is no taskset or cpu)."""
    if cpu is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(cpu), *cmd]


@dataclass
class Proc:
    """A started server: its name, port, process and log file."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        fields = _stat(self.pid)
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mb(self) -> float:
        try:
            pages = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return float("nan")
        return pages * PAGE / 1e6

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 60.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from the 3rd (state) on


def start(name: str, cmd: Sequence[str], *, port: int, cpu: int | None, log_dir: Path,
          env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Proc:
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    full_env = {**os.environ, **(env or {})}
    popen = subprocess.Popen(pinned(cmd, cpu), stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=full_env, cwd=cwd)
    return Proc(name, port, popen, log_path, log)


def wait_ready(proc: Proc, path: str = "/readyz", timeout_s: float = 60.0) -> None:
    """Poll GET `path` until it answers 200; fail with the server's log if it dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                             f"{proc.log_tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{proc.name} not ready after {timeout_s:.0f} s:\n{proc.log_tail()}")


def wait_port(proc: Proc, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited:\n{proc.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", proc.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{proc.name} does not listen on {proc.port}:\n{proc.log_tail()}")


def tool_version(cmd: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, Any]:
    model = cpu_model()
    mem_gb = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(kb / 1e6, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": mem_gb,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "platform": platform.platform(), "taskset": shutil.which("taskset") is not None}


def core_jiffies(cpu: int) -> tuple[int, int]:
    """(busy, total) clock ticks of one CPU since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            total = sum(values[:8])  # guest time is already in user
            return total - values[3] - values[4], total  # minus idle and iowait
    return 0, 0


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []
