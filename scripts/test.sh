#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (the Python packages at
# the versions of requirements/dev.lock, see scripts/bootstrap.sh), then runs
# lint (ruff), types (mypy --strict), the doctests and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/install_services.sh
.venv/bin/ruff check riskengine tests benchmarks
.venv/bin/mypy
.venv/bin/pytest --doctest-modules riskengine tests "$@"
