"""`riskengine serve` as a real process on a free port, for tests that need one."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.service.helpers import ADMIN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SHARED_STATE_BUDGET = ["--state-timeout", "5s"]
"""What a test service on Redis gets unless its test sets one: a budget a loaded machine
cannot use up, so that its decisions are never the fallback by accident (the fallback
and the 50 ms default have tests of their own)."""


class ServiceProcess:
    def __init__(self, state_dir: Path, config: Path | None = None,
                 extra: list[str] | None = None) -> None:
        self.state_dir = state_dir
        self.config = config
        self.extra = list(extra or [])
        if "--state" in self.extra and "--state-timeout" not in self.extra:
            self.extra += SHARED_STATE_BUDGET
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir.parent / f"serve-{self.port}.log"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        cmd = [sys.executable, "-m", "riskengine", "serve", "--port", str(self.port),
               "--state-dir", str(self.state_dir), "--log-level", "warning"]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        cmd += self.extra
        env = {**os.environ, "RISKENGINE_ADMIN_TOKEN": ADMIN}
        env.pop("RISKENGINE_API_TOKEN", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("serve did not become ready")

    def kill(self) -> None:
        """kill -9 of the server and its workers: no shutdown handler runs."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM: graceful shutdown."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        return self.proc.returncode
