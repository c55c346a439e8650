#!/usr/bin/env bash
# The main job: installs riskengine, generates labelled demo traffic, decides it with the
# example config and prints the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/riskengine demo "$@"
