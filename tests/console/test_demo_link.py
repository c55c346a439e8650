"""`riskengine demo` tells a newcomer where the console is and how to sign in."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_the_demo_prints_the_console_address_and_its_admin_token(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "riskengine", "demo", "--duration", "3", "--events", "400",
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=180, env={"COLUMNS": "200", "PATH": ""},
        check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r"console: (http://127\.0\.0\.1:\d+)/console \(sign in with the "
                      r"admin token (\S+)\)", out.stdout)
    assert found, out.stdout[-2000:]
    assert (tmp_path / "state").exists()
    assert "labels × outcomes" in out.stdout
