#!/usr/bin/env bash
# The main job: installs riskengine, starts the decision service with the example config on
# embedded defaults and feeds it labelled demo traffic, with a live view (Ctrl-C stops).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/riskengine demo "$@"
