#!/usr/bin/env bash
# Builds every libFuzzer target under fuzz/ with clang++ (ASan + UBSan) and runs each for
# SECONDS (default 60). Called by `make fuzz`; needs clang (apt-get install clang).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-60}"
OUT="${FUZZ_OUT:-build-fuzz}"
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang)"; exit 1; }
mkdir -p "$OUT"
FLAGS=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -I/usr/include/eigen3)
build() {  # name, sources..., then libraries after --
  local name=$1; shift
  echo "fuzz: building $name"
  clang++ "${FLAGS[@]}" "$@" -o "$OUT/$name"
}
build fuzz_traces fuzz/fuzz_traces.cpp src/io/traces.cpp src/io/csv.cpp -lutf8proc -lfmt
build fuzz_tfidf fuzz/fuzz_tfidf.cpp src/features/*.cpp -lutf8proc
build fuzz_route_request fuzz/fuzz_route_request.cpp src/serve/requests.cpp src/serve/completions.cpp -lre2
build fuzz_policy fuzz/fuzz_policy.cpp src/policy/*.cpp src/models/*.cpp src/features/*.cpp \
  src/gate/*.cpp -lutf8proc -lxgboost -DTRACER_VERSION='"fuzz"'
build fuzz_audit_state fuzz/fuzz_audit_state.cpp src/runtime/audit.cpp src/gate/bounds.cpp
build fuzz_time_text fuzz/fuzz_time_text.cpp src/util/time_text.cpp
build fuzz_request_arrived fuzz/fuzz_request_arrived.cpp src/serve/connection_loop.cpp
for t in fuzz_traces fuzz_tfidf fuzz_route_request fuzz_policy fuzz_audit_state fuzz_time_text \
  fuzz_request_arrived; do
  mkdir -p "$OUT/corpus_$t"
  echo "fuzz: running $t for ${SECONDS_EACH}s"
  "$OUT/$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 "$OUT/corpus_$t" 2>&1 | tail -3
done
