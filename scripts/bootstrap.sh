#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs riskengine with its dev tools at the exact versions
# of requirements/dev.lock (pip and the build requirements included), so that every machine
# tests the same packages. Safe to run again: reuses the venv and moves each locked package to
# its locked version. Refresh the lock with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOCK=requirements/dev.lock
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
pip=(.venv/bin/python -m pip --quiet)
"${pip[@]}" install -c "$LOCK" pip setuptools wheel
"${pip[@]}" install -c "$LOCK" --build-constraint "$LOCK" -e '.[dev]'
"${pip[@]}" check
.venv/bin/python scripts/check_lock.py "$LOCK"
