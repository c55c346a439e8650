#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs riskengine with its dev tools.
# Safe to run again: reuses the venv and only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
