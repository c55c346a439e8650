"""`settled_memory`: the GC keeps off long-lived state inside the block, and is as it was
after it (a replay run in a test process leaves nothing frozen behind). Run in a fresh
interpreter: the service tests settle this process's memory for good."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from riskengine.longlived import settled_memory

thresholds, callbacks = gc.get_threshold(), list(gc.callbacks)
with settled_memory(young=12_345):
    assert gc.get_threshold()[0] == 12_345
    frozen = gc.get_freeze_count()
    assert frozen > 0
    kept = [[i] for i in range(1_000)]
    gc.collect(1)  # a generation-1 collection freezes what survived it
    assert gc.get_freeze_count() >= frozen + len(kept)
assert gc.get_threshold() == thresholds
assert gc.callbacks == callbacks
assert gc.get_freeze_count() == 0
try:
    with settled_memory(young=999):
        raise RuntimeError("replay stopped")
except RuntimeError:
    pass
assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
print("ok")
"""


def test_survivors_are_frozen_inside_and_everything_is_back_after() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
