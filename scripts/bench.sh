#!/usr/bin/env bash
# Runs every benchmark (called by `make bench`); each prints a table and writes JSON under
# bench/results/. The gate benchmark reads ../shared/data (CLINC150, SNLI) when present.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
"$BUILD/fit_bench"
"$BUILD/route_bench"
if [ -d ../shared/data ]; then
  "$BUILD/gate_bench"
else
  echo "bench: ../shared/data not found; skipping gate_bench (pass --data DIR to run it)"
fi
bash bench/serve_bench.sh "$BUILD"
