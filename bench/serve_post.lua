-- wrk script for bench/serve_bench.sh: POSTs one JSON body per request, cycling through a file
-- with one body per line (env TRACER_BODIES, default the Banking77 test traces, which
-- /v1/route accepts as is through their "input" field) to env TRACER_PATH (default /v1/route).
-- Prints one machine-readable line at the end: TRACER_WRK {json}.
local path = os.getenv("TRACER_PATH") or "/v1/route"
local file = os.getenv("TRACER_BODIES") or "data/banking77/test.jsonl"
local bodies = {}
for line in io.lines(file) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local i = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("TRACER_API_KEY")
if key and #key > 0 then wrk.headers["Authorization"] = "Bearer " .. key end

function request()
  i = i % #bodies + 1
  return wrk.format(nil, path, nil, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'TRACER_WRK {"requests": %d, "duration_s": %.3f, "requests_per_s": %.1f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
