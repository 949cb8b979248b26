#!/usr/bin/env bash
# Runs every benchmark (called by `make bench`); each prints a table and writes JSON under
# bench/results/. The gate and real-trace benchmarks read ../shared/data (CLINC150, SNLI, the
# Banking77 LLM traces) when present. real_traces_bench fits 400 times (100 re-splits of 4
# datasets): at least half an hour on 2 cores; run it by hand with --quick for 10 re-splits.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
"$BUILD/fit_bench"
"$BUILD/route_bench"
if [ -d ../shared/data ]; then
  "$BUILD/gate_bench"
  "$BUILD/real_traces_bench"
else
  echo "bench: ../shared/data not found; skipping gate_bench and real_traces_bench (pass --data DIR to run them)"
fi
bash bench/serve_bench.sh "$BUILD"
