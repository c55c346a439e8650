#!/usr/bin/env bash
# What would a rule change have done? Installs riskengine (scripts/bootstrap.sh), generates
# labelled demo traffic into a new temporary folder, backtests the example candidate
# ruleset (riskengine/examples/candidate-transfer.json) against the example config's live
# rules, and writes the report there: report.md, report.json and PNG charts.
# EVENTS=N changes the amount of traffic (default 150000, a day and a half); further
# arguments go to `riskengine backtest` (e.g. --limit 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
events="${EVENTS:-150000}"
work="$(mktemp -d "${TMPDIR:-/tmp}/riskengine-backtest.XXXXXX")"
.venv/bin/riskengine generate --events "$events" --seed 7 --output "$work/transfers.parquet"
.venv/bin/riskengine backtest "$work/transfers.parquet" \
    --candidate riskengine/examples/candidate-transfer.json --report "$work/report" "$@"
