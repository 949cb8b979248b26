#!/usr/bin/env bash
# Serve benchmark (issue: serve). Fits a Banking77 policy if needed, starts `tracer serve` and
# drives POST /v1/route with wrk (2 threads, 64 connections, 30 s) over the Banking77 test
# texts: requests/s, latency percentiles, errors and the server's RSS. Then proxy overhead, one
# connection at a time: a handled chat completion vs a direct /v1/route on the same texts, and a
# deferred one vs calling the upstream stand-in directly.
# Budgets (DESIGN.md): >= 20,000 req/s, p99 <= 10 ms, 0 errors, RSS <= 100 MB, proxy overhead
# p50 <= 1 ms. Writes bench/results/serve_bench.json.
#
#   bash bench/serve_bench.sh [BUILD_DIR]        (default: build)
# Env: DURATION (30), CONNECTIONS (64), WRK_THREADS (2), SERVER_THREADS (64), PROXY_DURATION (5),
#      TRACER_BENCH_DIR (scratch folder), TRACER_BENCH_POLICY (use this policy), OUT (JSON path).
# Needs: wrk, curl; python3 for the proxy part (the upstream stand-in), skipped without it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
TRACER="$BUILD/tracer"
WORK=${TRACER_BENCH_DIR:-${TMPDIR:-/tmp}/tracer_serve_bench}
POLICY=${TRACER_BENCH_POLICY:-$WORK/policy}
DURATION=${DURATION:-30}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
SERVER_THREADS=${SERVER_THREADS:-64}
PROXY_DURATION=${PROXY_DURATION:-5}
OUT=${OUT:-$ROOT/bench/results/serve_bench.json}
TEST="$ROOT/data/banking77/test.jsonl"
LUA="$ROOT/bench/serve_post.lua"

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "serve_bench: needs $tool (apt-get install $tool)" >&2; exit 1; }
done
[ -x "$TRACER" ] || { echo "serve_bench: no $TRACER; build first (make build)" >&2; exit 1; }
mkdir -p "$WORK" "$(dirname "$OUT")"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

if [ ! -f "$POLICY/model.bin" ]; then
  echo "fitting $POLICY on Banking77 train ..."
  "$TRACER" fit "$ROOT/data/banking77/train.jsonl" -o "$POLICY" --quiet || [ $? -eq 4 ]
fi

# start_server ARGS... : starts `tracer serve ARGS --port 0`; sets SERVER_PID and PORT.
start_server() {
  local log="$WORK/serve.$RANDOM"
  : >"$log.out"
  "$TRACER" serve "$@" --port 0 >"$log.out" 2>"$log.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  PORT=""
  for _ in $(seq 1 300); do
    PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$log.out")
    [ -n "$PORT" ] && break
    sleep 0.1
  done
  [ -n "$PORT" ] || { echo "serve_bench: server did not start:" >&2; cat "$log.err" >&2; exit 1; }
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
}

# wrk_json THREADS CONNECTIONS SECONDS PATH BODIES URL: prints wrk's summary as one JSON object.
wrk_json() {
  TRACER_PATH=$4 TRACER_BODIES=$5 wrk -t"$1" -c"$2" -d"$3"s -s "$LUA" "$6" >"$WORK/wrk.out" 2>&1
  cat "$WORK/wrk.out" >>"$WORK/wrk.log"
  sed -n 's/^TRACER_WRK //p' "$WORK/wrk.out"
}

mb() { awk -v kb="$1" 'BEGIN {printf "%.1f", kb / 1024}'; }

# num JSON KEY: the first number after "KEY": in JSON.
num() { grep -o "\"$2\": [-0-9.e+]*" <<<"$1" | head -1 | sed 's/.*: //'; }

# --- Throughput: /v1/route under load -------------------------------------------------------
start_server "$POLICY" --threads "$SERVER_THREADS"
echo "server pid $SERVER_PID on port $PORT; warming up ..."
wrk_json 1 4 2 /v1/route "$TEST" "http://127.0.0.1:$PORT" >/dev/null
echo "wrk: $WRK_THREADS threads, $CONNECTIONS connections, ${DURATION}s on POST /v1/route ..."
LOAD=$(wrk_json "$WRK_THREADS" "$CONNECTIONS" "$DURATION" /v1/route "$TEST" "http://127.0.0.1:$PORT")
RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
HWM_KB=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
stop_server

RPS=$(num "$LOAD" requests_per_s)
P50=$(num "$LOAD" p50); P90=$(num "$LOAD" p90); P99=$(num "$LOAD" p99)
ERRORS=$(grep -o '"errors": {[^}]*}' <<<"$LOAD" | grep -o '[0-9]\+' | awk '{s += $1} END {print s + 0}')
printf '\n%-34s %12s %10s\n' "measure" "value" "budget"
printf '%-34s %12.0f %10s\n' "requests/s" "$RPS" ">= 20000"
printf '%-34s %12d %10s\n' "latency p50 (us)" "$P50" ""
printf '%-34s %12d %10s\n' "latency p90 (us)" "$P90" ""
printf '%-34s %12d %10s\n' "latency p99 (us)" "$P99" "<= 10000"
printf '%-34s %12d %10s\n' "errors (connect/read/write/status)" "$ERRORS" "0"
printf '%-34s %12.1f %10s\n' "server RSS after run (MB)" "$(mb "$RSS_KB")" ""
printf '%-34s %12.1f %10s\n' "server peak RSS (MB)" "$(mb "$HWM_KB")" "<= 100"

# --- Proxy overhead --------------------------------------------------------------------------
PROXY_JSON=null
if command -v python3 >/dev/null; then
  "$TRACER" predict "$POLICY" --input "$TEST" -o "$WORK/pred.jsonl"
  python3 - "$TEST" "$WORK/pred.jsonl" "$WORK" <<'EOF'
import json, sys
test, pred, work = sys.argv[1:4]
files = {k: open(f"{work}/{k}.jsonl", "w") for k in ("route_handled", "chat_handled", "chat_deferred")}
for t, p in zip(open(test), open(pred)):
    text = json.loads(t)["input"]
    chat = json.dumps({"model": "bench", "messages": [{"role": "user", "content": text}]})
    if json.loads(p)["decision"] == "handled":
        files["route_handled"].write(json.dumps({"text": text}) + "\n")
        files["chat_handled"].write(chat + "\n")
    else:
        files["chat_deferred"].write(chat + "\n")
EOF
  # The upstream stand-in: answers each chat completion with the teacher label of its text.
  cat >"$WORK/fake_llm.py" <<'EOF'
import json, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
teacher = {}
for line in open(sys.argv[1]):
    j = json.loads(line)
    teacher[j["input"]] = j["teacher"]
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()  # headers and body go out in two writes: no Nagle delay between them
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        out = json.dumps({"id": "x", "object": "chat.completion", "model": "fake",
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant",
                                                   "content": teacher.get(text, "unknown")}}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                    "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *args):
        pass
class Server(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass  # wrk resets its connections at the end
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
  python3 "$WORK/fake_llm.py" "$TEST" >"$WORK/fake_llm.port" &
  FAKE_PID=$!
  PIDS+=("$FAKE_PID")
  for _ in $(seq 1 100); do [ -s "$WORK/fake_llm.port" ] && break; sleep 0.1; done
  UP_PORT=$(head -1 "$WORK/fake_llm.port")
  start_server "$POLICY" --upstream "http://127.0.0.1:$UP_PORT" --trace-db "$WORK/traces.db"
  URL="http://127.0.0.1:$PORT"
  echo "proxy overhead: one connection, ${PROXY_DURATION}s per measure ..."
  ROUTE=$(wrk_json 1 1 "$PROXY_DURATION" /v1/route "$WORK/route_handled.jsonl" "$URL")
  HANDLED=$(wrk_json 1 1 "$PROXY_DURATION" /v1/chat/completions "$WORK/chat_handled.jsonl" "$URL")
  UPSTREAM=$(wrk_json 1 1 "$PROXY_DURATION" /v1/chat/completions "$WORK/chat_deferred.jsonl" \
    "http://127.0.0.1:$UP_PORT")
  DEFERRED=$(wrk_json 1 1 "$PROXY_DURATION" /v1/chat/completions "$WORK/chat_deferred.jsonl" "$URL")
  stop_server
  kill "$FAKE_PID" 2>/dev/null || true
  H_OVER=$(( $(num "$HANDLED" p50) - $(num "$ROUTE" p50) ))
  D_OVER=$(( $(num "$DEFERRED" p50) - $(num "$UPSTREAM" p50) ))
  printf '%-34s %12d %10s\n' "direct /v1/route p50 (us)" "$(num "$ROUTE" p50)" ""
  printf '%-34s %12d %10s\n' "proxy handled p50 (us)" "$(num "$HANDLED" p50)" ""
  printf '%-34s %12d %10s\n' "  handled overhead p50 (us)" "$H_OVER" "<= 1000"
  printf '%-34s %12d %10s\n' "upstream stand-in direct p50 (us)" "$(num "$UPSTREAM" p50)" ""
  printf '%-34s %12d %10s\n' "proxy deferred p50 (us)" "$(num "$DEFERRED" p50)" ""
  printf '%-34s %12d %10s\n' "  deferred overhead p50 (us)" "$D_OVER" "<= 1000"
  PROXY_JSON=$(printf '{"direct_route": %s, "proxy_handled": %s, "upstream_direct": %s, "proxy_deferred": %s, "handled_overhead_p50_us": %d, "deferred_overhead_p50_us": %d}' \
    "$ROUTE" "$HANDLED" "$UPSTREAM" "$DEFERRED" "$H_OVER" "$D_OVER")
else
  echo "python3 not found: skipping the proxy overhead part"
fi

cat >"$OUT" <<EOF
{
  "policy": "$POLICY",
  "wrk": {"threads": $WRK_THREADS, "connections": $CONNECTIONS, "duration_s": $DURATION},
  "server_threads": $SERVER_THREADS,
  "load": $LOAD,
  "errors_total": $ERRORS,
  "server_rss_mb": $(mb "$RSS_KB"),
  "server_peak_rss_mb": $(mb "$HWM_KB"),
  "proxy": $PROXY_JSON,
  "budgets": {"requests_per_s": 20000, "p99_us": 10000, "errors": 0, "rss_mb": 100,
              "proxy_overhead_p50_us": 1000},
  "machine": {"cpus": $(nproc)}
}
EOF
echo "wrote $OUT"
