#pragma once
// Server counters, rendered in the Prometheus text format by GET /metrics. Lock-free: every
// counter is a relaxed atomic bumped on the request path.
#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/audit.hpp"
#include "runtime/drift.hpp"
#include "runtime/router.hpp"

namespace tracer::serve {

enum class Endpoint : int {
  kRoute,
  kBatch,
  kChat,
  kHealth,
  kPolicy,
  kMetrics,
  kReload,
  kAudit,
  kDrift,
  kOther
};
inline constexpr int kEndpoints = 10;
std::string_view endpoint_path(Endpoint e);  // "other" for kOther
Endpoint endpoint_of(std::string_view path);

// Why the proxy passed a request to the upstream without routing it (docs/serve.md, "Which
// requests the proxy answers").
enum class Passthrough : int {
  kOutOfScope,   // a chat request for another model or system prompt (--match-*)
  kUnsupported,  // a chat request asking for what a label cannot give (stream aside)
  kEndpoint,     // another OpenAI path (/v1/models, /v1/embeddings, ...)
};
inline constexpr int kPassthroughs = 3;

// kCancelled: the client went away and tracer stopped the call (not the upstream's failure).
enum class UpstreamOutcome : int { kOk, kHttpError, kUnreachable, kTimeout, kCancelled };
inline constexpr int kUpstreamOutcomes = 5;
// "ok", "http_error", "unreachable", "timeout", "client_cancelled": the metric label and the
// log field.
std::string_view upstream_outcome_name(UpstreamOutcome o);

// What became of one shadow-audit sample (proxy) or feedback row (POST /v1/audit).
enum class AuditOutcome : int {
  kAgreed,      // recorded: the LLM gave the surrogate's label
  kDisagreed,   // recorded: it gave another one
  kUnusable,    // not recorded: the upstream failed or its answer held no label
  kDropped,     // not recorded: the audit queue was full (or the server was stopping)
  kNotHandled,  // not recorded: /v1/audit feedback on a text the surrogate defers
};
inline constexpr int kAuditOutcomes = 5;

// Latency buckets (seconds) shared by every histogram.
inline constexpr std::array<double, 16> kLatencyBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   10};

class Histogram {
 public:
  void observe(double seconds);
  // Appends the _bucket/_sum/_count lines of `name` with `labels` (e.g. endpoint="/v1/route").
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size()> buckets_{};  // not cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

class Metrics {
 public:
  void count_request(Endpoint e, int status);
  void observe_latency(Endpoint e, double seconds) {
    latency_[static_cast<int>(e)].observe(seconds);
  }
  void count_decision(const RouteResult& r);
  void count_audit_deferral() { audit_deferred_.fetch_add(1, std::memory_order_relaxed); }
  void count_audit(AuditOutcome o, AuditSource source, uint64_t n = 1) {
    audit_[static_cast<int>(source)][static_cast<int>(o)].fetch_add(n, std::memory_order_relaxed);
  }
  void count_upstream(UpstreamOutcome o, double seconds, int retries);
  void count_trace(bool recorded, bool label_known);
  void count_reload(bool ok);
  void count_passthrough(Passthrough why) {
    passthrough_[static_cast<int>(why)].fetch_add(1, std::memory_order_relaxed);
  }
  void inflight(int delta) { inflight_.fetch_add(delta, std::memory_order_relaxed); }

  uint64_t requests(Endpoint e, int status) const;
  uint64_t handled() const { return decisions_[0].load(std::memory_order_relaxed); }

  // The whole exposition; the policy gauge carries these labels. `audit` is the served
  // policy's audit state (null: the policy has no monitor); `drift` its drift report (null:
  // no drift gauges).
  std::string render(std::string_view policy_version, std::string_view method, size_t num_labels,
                     const AuditState* audit = nullptr, const DriftReport* drift = nullptr) const;

 private:
  static constexpr int kMinStatus = 100, kStatuses = 500;
  static constexpr int kReasons = kDeferReasons;  // index 0 (kNone) counts handled
  std::array<std::array<std::atomic<uint64_t>, kStatuses>, kEndpoints> requests_{};
  std::array<Histogram, kEndpoints> latency_{};
  std::array<std::atomic<uint64_t>, kReasons> decisions_{};
  std::atomic<uint64_t> audit_deferred_{0};  // deferred because the audit tripped
  std::atomic<uint64_t> memory_answers_{0};  // handled decisions answered from memory
  std::array<std::array<std::atomic<uint64_t>, kAuditOutcomes>, 2> audit_{};  // [source]
  std::array<std::atomic<uint64_t>, kUpstreamOutcomes> upstream_{};
  std::atomic<uint64_t> upstream_retries_{0};
  Histogram upstream_latency_;
  std::array<std::atomic<uint64_t>, 2> traces_{};  // [label_known]
  std::atomic<uint64_t> traces_dropped_{0};
  std::array<std::atomic<uint64_t>, 2> reloads_{};  // [ok]
  std::array<std::atomic<uint64_t>, kPassthroughs> passthrough_{};
  std::atomic<int64_t> inflight_{0};
};

// The HTTP layer's gauges and counter in the Prometheus text format: open connections (idle,
// arriving, being answered), requests waiting for a worker thread, and connections answered 503
// because --max-connections or --max-queued was reached.
std::string connection_metrics(size_t open_connections, size_t queued_requests,
                               size_t busy_refusals);

// Escapes a Prometheus label value (backslash, double quote, newline).
std::string prometheus_escape(std::string_view v);

}  // namespace tracer::serve
