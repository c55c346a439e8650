"""Make the shared test helpers (`tests/oracle.py`, `tests/streams.py`) importable.

The repository root goes first on sys.path too, so the tests always import the working
tree's `riskengine` (an editable install made before `riskengine/__init__.py` existed
resolves it as an empty namespace package).
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _path in (str(_TESTS.parent), str(_TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
