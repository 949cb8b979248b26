#!/usr/bin/env bash
# Runs the offline demo from the repository root (called by `make demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
exec "$BUILD/tracer" demo --train data/banking77/train.jsonl --test data/banking77/test.jsonl \
  -o "$BUILD/demo-policy"
