// `tracer serve POLICY_DIR`: the HTTP API (and, with --upstream, the OpenAI-compatible proxy).
// Signals: SIGHUP reloads the policy folder; SIGTERM / SIGINT stop gracefully.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/commands.hpp"
#include "io/utf8.hpp"
#include "serve/server.hpp"
#include "util/error.hpp"
#include "util/time_text.hpp"

namespace tracer::cli {
namespace {

struct ServeArgs {
  serve::ServeOptions opt;
  std::string text_from = "last-user";
  std::string memory_ttl;
  bool memory_ttl_given = false;  // absent: never expires
  std::string match_system_prompt_file;
  std::string log_format = "text";
  double shutdown_timeout_s = 30;
};

// The trimmed text of --match-system-prompt's file, without carriage returns (a prompt saved
// with CRLF line endings matches clients that send LF). An empty file means "no system prompt".
std::string read_system_prompt(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("--match-system-prompt: cannot open " + path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError("--match-system-prompt: cannot read " + path);
  if (s.size() > (1u << 20))
    throw InputError("--match-system-prompt: " + path + " is over 1 MiB; give the prompt's text");
  if (!is_valid_utf8(s))
    throw InputError("--match-system-prompt: " + path +
                     " is not UTF-8 text, so no request's system prompt can equal it");
  std::string out;
  for (char c : serve::trim(s))
    if (c != '\r') out += c;
  return out;
}

std::string url_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// After stop(): waits for the server to finish its in-flight requests, at most `timeout_s`
// seconds (0: forever) and until a second SIGTERM/SIGINT. False when it gave up.
bool wait_or_give_up(const std::atomic<bool>& finished, const sigset_t& signals, double timeout_s) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (!finished) {
    if (timeout_s > 0 && Clock::now() >= deadline) return false;
    timespec tick{0, 100'000'000};  // re-check every 100 ms
    const int sig = ::sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) return finished;
  }
  return true;
}

int run_serve(ServeArgs& a) {
  serve::ServeOptions& o = a.opt;
  o.text_from = serve::parse_text_from(a.text_from);
  if (!a.match_system_prompt_file.empty())
    o.match_system_prompt = read_system_prompt(a.match_system_prompt_file);
  if (a.memory_ttl_given) o.memory.ttl_s = parse_duration_seconds(a.memory_ttl, "--memory-ttl");
  if (o.api_key.empty())
    if (const char* k = std::getenv("TRACER_API_KEY")) o.api_key = k;
  // Large blocks (a policy's weight matrices, a read model file) always come from mmap and go
  // back to the system when freed. glibc's default raises its mmap threshold after each such
  // free, so the next policy's buffers land in per-thread arenas and stay there: RSS grew by
  // ~13 MB per reload of a Banking77 policy. The reload also calls malloc_trim.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Block the signals before any thread exists so that every thread inherits the mask and only
  // this one receives them, through sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a client hanging up must not kill the server

  o.log_format = serve::parse_log_format(a.log_format);
  serve::ApiServer server(o);
  int port = server.bind();
  const std::string url = "http://" + url_host(o.host) + ":" + std::to_string(port);
  nlohmann::json fields{
      {"url", url}, {"policy_version", server.policy_version()}, {"api_key", !o.api_key.empty()}};
  if (server.proxy()) fields.update({{"upstream", o.upstream}, {"trace_store", server.trace_db()}});
  server.log_event(
      "start",
      "policy " + server.policy_version() + " from " + o.policy_dir +
          (server.proxy() ? ", proxy to " + o.upstream + ", traces to " + server.trace_db()
                          : std::string()) +
          (o.api_key.empty() ? ", no API key (open)" : ", API key required"),
      std::move(fields));
  std::cout << "listening on " << url << std::endl;

  std::atomic<bool> finished{false};
  std::thread http([&server, &finished] {
    server.run();
    finished = true;
  });
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      server.reload();  // logs its result, like a reload over HTTP
      continue;
    }
    const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    server.log_event("signal", std::string(name) + ", finishing in-flight requests",
                     {{"signal", name}});
    break;
  }
  server.stop();
  if (!wait_or_give_up(finished, signals, a.shutdown_timeout_s)) {
    // Requests still stuck (an upstream that never answers): keep what was recorded and go.
    const std::string error = server.flush_traces();
    server.log_event("shutdown_forced",
                     "requests still in progress after --shutdown-timeout (or a second signal): "
                     "exiting without them" +
                         (error.empty() ? std::string("; traces flushed")
                                        : "; could not flush the traces: " + error),
                     {{"shutdown_timeout_s", a.shutdown_timeout_s}, {"flush", error.empty()}});
    std::_Exit(1);
  }
  http.join();
  server.log_event("stopped", "stopped");
  return 0;
}

}  // namespace

Command add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  serve::ServeOptions& o = args->opt;
  auto* sub = app.add_subcommand(
      "serve",
      "Serve a policy over HTTP: POST /v1/route, /v1/route/batch, GET /healthz, /v1/policy, "
      "/metrics, GET/POST /v1/audit, GET /v1/drift. With --upstream, also an OpenAI-compatible "
      "POST "
      "/v1/chat/completions that answers with the surrogate when it is certified to, and "
      "otherwise forwards to the LLM and records the new trace. SIGHUP or POST /v1/admin/reload "
      "reloads the policy folder.");
  sub->add_option("policy", o.policy_dir, "Policy folder written by `tracer fit`")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--host", o.host, "Address to bind (0.0.0.0 to listen on every interface)")
      ->capture_default_str();
  sub->add_option("-p,--port", o.port, "Port (0: any free port; the bound one is printed)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  sub->add_option("--threads", o.threads,
                  "Requests that may wait on the LLM at once (a deferred request holds a worker "
                  "thread while the LLM answers); cores + 2 more threads keep routing meanwhile. "
                  "Idle and slow connections hold none")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_option("--max-connections", o.max_connections,
                  "Open connections at most (idle keep-alive ones included); more get a 503 and "
                  "are closed. Clamped to the open-file limit (ulimit -n)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  sub->add_option("--max-queued", o.max_queued,
                  "Requests that arrived and wait for a free worker thread, at most; more get a "
                  "503 with Retry-After: 1 (so does a request that waited longer than "
                  "--request-timeout)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  sub->add_option("--api-key", o.api_key,
                  "Require \"Authorization: Bearer KEY\" on every endpoint but /healthz (default: "
                  "env TRACER_API_KEY; unset = open)");
  // Sizes are unsigned: without a range, "-1" would wrap around to "no limit".
  sub->add_option("--max-body-bytes", o.max_body_bytes, "Largest request body accepted (413 above)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 34));
  sub->add_option("--request-timeout", o.request_timeout_s,
                  "Seconds a request (line, headers and body) may take to arrive from its first "
                  "byte; slower clients are cut (0: no limit; each read also times out after 5 s "
                  "of silence)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  sub->add_option("--max-text-bytes", o.limits.max_text_bytes,
                  "Longest text accepted for routing (413 above; the proxy sends a longer chat "
                  "request to the "
                  "LLM instead)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 34));
  sub->add_option("--max-batch", o.limits.max_batch, "Most texts in one /v1/route/batch")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  sub->add_option(
      "--upstream", o.upstream,
      "Proxy mode: OpenAI-compatible base URL of the LLM (e.g. http://127.0.0.1:11434); "
      "deferred chat completions go to URL/v1/chat/completions");
  sub->add_option("--upstream-api-key", o.upstream_api_key,
                  "Bearer key for the upstream (default: pass the client's Authorization through, "
                  "unless --api-key is set)");
  sub->add_option("--upstream-timeout", o.upstream_timeout_s,
                  "Seconds to wait for the upstream per attempt (504 after)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  sub->add_option("--upstream-retries", o.upstream_retries,
                  "Retries on connect errors and 5xx, with exponential backoff from 100 ms")
      ->capture_default_str()
      ->check(CLI::Range(0, 10));
  sub->add_option("--text-from", args->text_from,
                  "Which messages are classified: last-user, all-user or system+last-user")
      ->capture_default_str();
  sub->add_option("--label-json-field", o.label_json_field,
                  "The LLM answers JSON: read the label from this field (handled answers are "
                  "JSON too)");
  sub->add_option("--label-regex", o.label_regex,
                  "Read the label from the LLM's answer with this regex's one capture group (RE2 "
                  "syntax: linear time, no backreferences or lookarounds)");
  sub->add_option("--trace-db", o.trace_db,
                  "Trace store for proxied traffic (default: "
                  "POLICY_DIR/traces.db)");
  sub->add_option("--shutdown-timeout", args->shutdown_timeout_s,
                  "Seconds SIGTERM/SIGINT waits for requests in progress (an upstream call may "
                  "take --upstream-timeout); then, or at a second signal, the traces are flushed "
                  "and the server exits 1 without them (0: wait forever)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  sub->add_option("--log-format", args->log_format,
                  "Operational log on stderr (start, policy loads and reloads, audit trips and "
                  "recoveries, upstream errors, shutdown): text, or json (one object per line)")
      ->capture_default_str();
  sub->add_option("--match-model", o.match_models,
                  "Scope: only chat requests for this \"model\" are the classification task "
                  "(repeat for several); others go to the upstream untouched and are not recorded")
      ->allow_extra_args(false)
      ->take_all();
  sub->add_option("--match-system-prompt", args->match_system_prompt_file,
                  "Scope: only chat requests whose system prompt (system and developer messages "
                  "joined by newlines, trimmed) equals this file's text (trimmed) are the task; "
                  "others go to the upstream untouched and are not recorded")
      ->check(CLI::ExistingFile);
  sub->add_flag("--record-handled", o.record_handled,
                "Also record requests the surrogate answered (their label is the surrogate's)");
  sub->add_option("--audit-share", o.audit.share,
                  "Shadow audit (proxy mode): also send this share of handled requests to the LLM "
                  "and track live agreement; when it is shown below the policy's target, defer "
                  "everything until a refit (0 = off; e.g. 0.02). The audit's state, a trip "
                  "included, is saved in POLICY_DIR/audit_state.json and survives restarts")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--audit-min-rows", o.audit.min_rows,
                  "Audited rows (proxy samples and POST /v1/audit feedback) before the audit may "
                  "trip")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000000));
  sub->add_option("--audit-seed", o.audit.seed, "Seed of the shadow-audit sample")
      ->capture_default_str();
  sub->add_option("--audit-concurrency", o.audit_concurrency,
                  "Shadow-audit calls to the upstream at once (background workers)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--audit-queue", o.audit_queue,
                  "Shadow audits waiting for a worker; more are dropped and counted")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  sub->add_option("--drift-window", o.drift.window,
                  "Drift warning (label-free): after the first look, each look compares the "
                  "stage-1 acceptor scores of this many routed inputs, none tested before, with "
                  "the calibrate split's (one-sided KS test; GET /v1/drift, tracer_drift_* "
                  "metrics). It never changes a decision, and only labels can prove agreement "
                  "fell: use the shadow audit for that")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  sub->add_option("--drift-min-rows", o.drift.min_rows,
                  "Routed inputs tested by the first drift look (at most --drift-window)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  sub->add_option("--drift-level", o.drift.level,
                  "Probability that a policy version ever reports drift while traffic has not "
                  "moved: look k is tested at level / ((k+1)(k+2)), which sums to this")
      ->capture_default_str();
  sub->add_option_function<std::string>(
      "--memory-ttl",
      [args](const std::string& v) {
        args->memory_ttl = v;
        args->memory_ttl_given = true;
      },
      "Stop using the memory tier's remembered answers this long after the fit "
      "(e.g. 7d, 12h, 3600): requests then go through the surrogate gate until a "
      "refit (`tracer update`) rebuilds the table. Default: no expiry");
  return {sub, [args] { return run_serve(*args); }};
}

}  // namespace tracer::cli
