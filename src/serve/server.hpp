#pragma once
// `tracer serve`: the HTTP API over a policy folder, and the OpenAI-compatible proxy when an
// upstream is given. See docs/serve.md for the endpoints.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/audit.hpp"
#include "runtime/drift.hpp"
#include "runtime/router.hpp"
#include "serve/event_log.hpp"
#include "serve/requests.hpp"

namespace tracer::serve {

struct ServeOptions {
  std::string policy_dir;
  std::string host = "127.0.0.1";
  int port = 8000;   // 0: any free port (see ApiServer::bind)
  int threads = 64;  // requests that may wait on the LLM at once (one worker thread each)
  // Open connections at most (idle, arriving, answered); over it new ones get a 503. Clamped
  // to what the process's open-file limit allows.
  size_t max_connections = 10000;
  // Requests that arrived and wait for a worker thread, at most; over it a 503.
  size_t max_queued = 16384;
  std::string api_key;  // bearer token for everything but /healthz ("" = open)
  size_t max_body_bytes = 1 << 20;
  // Longest time a request (line, headers, body) may take to arrive from its first byte; past
  // it the connection is closed (408 when the headers were in). 0: no limit.
  double request_timeout_s = 10;
  RequestLimits limits;
  // Proxy mode (on when upstream is set).
  std::string upstream;
  std::string upstream_api_key;
  double upstream_timeout_s = 60;
  int upstream_retries = 2;
  int upstream_backoff_ms = 100;
  TextFrom text_from = TextFrom::kLastUser;
  std::string label_json_field;
  std::string label_regex;
  std::string trace_db;  // "" = POLICY_DIR/traces.db
  bool record_handled = false;
  // Scope (docs/serve.md, "Which requests the proxy answers"): when set, only chat requests
  // whose "model" is one of match_models and whose system prompt (system and developer
  // messages joined by newlines, trimmed) equals match_system_prompt are the task; every other
  // request goes to the upstream untouched and is not recorded.
  std::vector<std::string> match_models;
  std::optional<std::string> match_system_prompt;
  // Shadow audit (docs/serve.md, "Shadow audit"). audit.share samples handled proxy traffic
  // (proxy mode only; 0 = off); POST /v1/audit takes LLM labels from clients in any mode.
  AuditOptions audit;
  int audit_concurrency = 2;  // proxy: audit calls to the upstream at once
  size_t audit_queue = 64;    // proxy: audits waiting for a worker; more are dropped
  // Drift warning (docs/serve.md, "Drift warning"): the latest `window` routed inputs' stage-1
  // acceptor scores against the calibrate split's. Never changes a decision.
  DriftOptions drift;
  // Memory tier (docs/serve.md, "Memory tier"): expiry of the remembered answers.
  ServedMemoryOptions memory;
  // The operational log on stderr (docs/serve.md, "Logs").
  LogFormat log_format = LogFormat::kText;
};

struct ReloadResult {
  bool ok = false;
  std::string policy_version;           // served after the call
  std::string previous_policy_version;  // served before it
  std::string error;                    // why it failed (the old policy stays)
};

class ApiServer {
 public:
  // Loads the policy and, in proxy mode, opens the trace store. Throws InputError/FormatError.
  explicit ApiServer(ServeOptions options);
  ~ApiServer();  // call stop() and wait for run() to return first
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  int bind();   // binds host:port; returns the bound port; throws InputError when it cannot
  void run();   // serves until stop(); then finishes in-flight requests and flushes traces
  void stop();  // thread-safe; makes run() return
  // Commits the traces queued so far (thread-safe; for a shutdown that cannot wait for stuck
  // requests). Returns "" or why the commit failed.
  std::string flush_traces();
  // Thread-safe; loads the policy folder again and swaps it in. `trigger` names the cause in
  // the log ("signal", "http").
  ReloadResult reload(std::string_view trigger = "signal");
  // One line of the operational log (serve/event_log.hpp).
  void log_event(std::string_view event, std::string_view message,
                 nlohmann::json fields = nlohmann::json::object());

  std::string policy_version() const;
  const ServeOptions& options() const;
  bool proxy() const;
  std::string trace_db() const;  // "" when not in proxy mode

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tracer::serve
