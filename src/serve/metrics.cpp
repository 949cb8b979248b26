#include "serve/metrics.hpp"

#include <fmt/format.h>

#include <cmath>

namespace tracer::serve {
namespace {

constexpr std::array<std::string_view, kEndpoints> kPaths = {"/v1/route",
                                                             "/v1/route/batch",
                                                             "/v1/chat/completions",
                                                             "/healthz",
                                                             "/v1/policy",
                                                             "/metrics",
                                                             "/v1/admin/reload",
                                                             "/v1/audit",
                                                             "/v1/drift",
                                                             "other"};
constexpr std::array<std::string_view, kUpstreamOutcomes> kOutcomes = {
    "ok", "http_error", "unreachable", "timeout", "client_cancelled"};
constexpr std::array<std::string_view, kAuditOutcomes> kAuditOutcomeNames = {
    "agreed", "disagreed", "unusable", "dropped", "not_handled"};

uint64_t load(const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); }

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

std::string_view endpoint_path(Endpoint e) { return kPaths[static_cast<int>(e)]; }

std::string connection_metrics(size_t open_connections, size_t queued_requests,
                               size_t busy_refusals) {
  std::string out;
  header(out, "tracer_http_connections", "gauge",
         "Open client connections: idle keep-alive, arriving, being answered.");
  out += fmt::format("tracer_http_connections {}\n", open_connections);
  header(out, "tracer_http_queued_requests", "gauge",
         "Requests that arrived and wait for a free worker thread.");
  out += fmt::format("tracer_http_queued_requests {}\n", queued_requests);
  header(out, "tracer_http_busy_refusals_total", "counter",
         "Connections answered 503 because --max-connections or --max-queued was reached.");
  out += fmt::format("tracer_http_busy_refusals_total {}\n", busy_refusals);
  return out;
}

std::string_view upstream_outcome_name(UpstreamOutcome o) {
  return kOutcomes[static_cast<size_t>(o)];
}

Endpoint endpoint_of(std::string_view path) {
  for (int i = 0; i + 1 < kEndpoints; ++i)
    if (kPaths[i] == path) return static_cast<Endpoint>(i);
  return Endpoint::kOther;
}

std::string prometheus_escape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  if (i < kLatencyBuckets.size()) buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double ns = std::max(0.0, seconds) * 1e9;
  sum_ns_.fetch_add(static_cast<uint64_t>(std::llround(ns)), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    cumulative += load(buckets_[i]);
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, kLatencyBuckets[i],
                       cumulative);
  }
  uint64_t n = count();
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, n);
  std::string braces = labels.empty() ? "" : fmt::format("{{{}}}", labels);
  out += fmt::format("{}_sum{} {}\n", name, braces, static_cast<double>(load(sum_ns_)) / 1e9);
  out += fmt::format("{}_count{} {}\n", name, braces, n);
}

void Metrics::count_request(Endpoint e, int status) {
  int s = std::clamp(status, kMinStatus, kMinStatus + kStatuses - 1) - kMinStatus;
  requests_[static_cast<int>(e)][s].fetch_add(1, std::memory_order_relaxed);
}

uint64_t Metrics::requests(Endpoint e, int status) const {
  int s = std::clamp(status, kMinStatus, kMinStatus + kStatuses - 1) - kMinStatus;
  return load(requests_[static_cast<int>(e)][s]);
}

void Metrics::count_decision(const RouteResult& r) {
  int i = r.handled ? 0 : std::clamp(static_cast<int>(r.reason), 1, kReasons - 1);
  decisions_[i].fetch_add(1, std::memory_order_relaxed);
  if (r.handled && r.stage == 0) memory_answers_.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_upstream(UpstreamOutcome o, double seconds, int retries) {
  upstream_[static_cast<int>(o)].fetch_add(1, std::memory_order_relaxed);
  upstream_retries_.fetch_add(static_cast<uint64_t>(std::max(0, retries)),
                              std::memory_order_relaxed);
  upstream_latency_.observe(seconds);
}

void Metrics::count_trace(bool recorded, bool label_known) {
  if (!recorded)
    traces_dropped_.fetch_add(1, std::memory_order_relaxed);
  else
    traces_[label_known ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_reload(bool ok) {
  reloads_[ok ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render(std::string_view policy_version, std::string_view method,
                            size_t num_labels, const AuditState* audit,
                            const DriftReport* drift) const {
  std::string out;
  out.reserve(8192);
  header(out, "tracer_requests_total", "counter", "HTTP requests by endpoint and status code.");
  for (int e = 0; e < kEndpoints; ++e)
    for (int s = 0; s < kStatuses; ++s)
      if (uint64_t n = load(requests_[e][s]))
        out += fmt::format("tracer_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", kPaths[e],
                           s + kMinStatus, n);
  header(out, "tracer_request_duration_seconds", "histogram",
         "Time spent handling a request (parse, route, upstream call, reply).");
  for (int e = 0; e < kEndpoints; ++e)
    if (latency_[e].count())
      latency_[e].render(out, "tracer_request_duration_seconds",
                         fmt::format("endpoint=\"{}\"", kPaths[e]));
  header(out, "tracer_decisions_total", "counter",
         "Routing decisions: handled by the surrogate, or deferred to the LLM by reason.");
  out += fmt::format("tracer_decisions_total{{decision=\"handled\"}} {}\n", load(decisions_[0]));
  for (int r = 1; r < kReasons; ++r)
    out += fmt::format("tracer_decisions_total{{decision=\"deferred\",reason=\"{}\"}} {}\n",
                       reason_name(static_cast<DeferReason>(r)), load(decisions_[r]));
  out += fmt::format("tracer_decisions_total{{decision=\"deferred\",reason=\"audit\"}} {}\n",
                     load(audit_deferred_));
  header(out, "tracer_memory_answers_total", "counter",
         "Handled decisions answered from the memory tier (the LLM's remembered label of a "
         "repeated request); included in tracer_decisions_total{decision=\"handled\"}.");
  out += fmt::format("tracer_memory_answers_total {}\n", load(memory_answers_));
  header(out, "tracer_upstream_requests_total", "counter",
         "Proxy calls to the upstream LLM by outcome (after retries).");
  for (int o = 0; o < kUpstreamOutcomes; ++o)
    out += fmt::format("tracer_upstream_requests_total{{outcome=\"{}\"}} {}\n", kOutcomes[o],
                       load(upstream_[o]));
  header(out, "tracer_upstream_retries_total", "counter", "Upstream attempts that were retried.");
  out += fmt::format("tracer_upstream_retries_total {}\n", load(upstream_retries_));
  header(out, "tracer_upstream_duration_seconds", "histogram",
         "Upstream call time including retries.");
  upstream_latency_.render(out, "tracer_upstream_duration_seconds", "");
  header(out, "tracer_traces_recorded_total", "counter",
         "Traces queued for the trace store, by whether the LLM's answer is a known label.");
  out += fmt::format("tracer_traces_recorded_total{{label_known=\"true\"}} {}\n", load(traces_[1]));
  out +=
      fmt::format("tracer_traces_recorded_total{{label_known=\"false\"}} {}\n", load(traces_[0]));
  header(out, "tracer_traces_dropped_total", "counter",
         "Traces dropped because the trace store's queue was full.");
  out += fmt::format("tracer_traces_dropped_total {}\n", load(traces_dropped_));
  header(out, "tracer_policy_reloads_total", "counter", "Policy reloads by result.");
  out += fmt::format("tracer_policy_reloads_total{{result=\"success\"}} {}\n", load(reloads_[1]));
  out += fmt::format("tracer_policy_reloads_total{{result=\"failure\"}} {}\n", load(reloads_[0]));
  header(out, "tracer_proxy_passthrough_total", "counter",
         "Proxy requests sent to the upstream without routing, by why: out_of_scope (another "
         "model or system prompt), unsupported (asks for what a label cannot give), endpoint "
         "(another OpenAI path).");
  for (auto [why, name] : {std::pair{Passthrough::kOutOfScope, "out_of_scope"},
                           std::pair{Passthrough::kUnsupported, "unsupported"},
                           std::pair{Passthrough::kEndpoint, "endpoint"}})
    out += fmt::format("tracer_proxy_passthrough_total{{why=\"{}\"}} {}\n", name,
                       load(passthrough_[static_cast<int>(why)]));
  header(out, "tracer_inflight_requests", "gauge", "Requests being handled now.");
  out += fmt::format("tracer_inflight_requests {}\n", inflight_.load(std::memory_order_relaxed));
  header(out, "tracer_audit_requests_total", "counter",
         "Audit rows by source (shadow: sampled from handled traffic by the proxy; feedback: sent "
         "to POST /v1/audit) and outcome (only agreed and disagreed are recorded in the monitor).");
  for (int src = 0; src < 2; ++src)
    for (int o = 0; o < kAuditOutcomes; ++o)
      out += fmt::format("tracer_audit_requests_total{{source=\"{}\",outcome=\"{}\"}} {}\n",
                         src == 0 ? "shadow" : "feedback", kAuditOutcomeNames[o],
                         load(audit_[src][o]));
  auto gauge = [&out](std::string_view name, std::string_view help, auto value) {
    header(out, name, "gauge", help);
    out += fmt::format("{} {}\n", name, value);
  };
  if (audit) {
    // Gauges of the served policy's monitor: a reload to a new policy version starts them over.
    gauge("tracer_audit_rows", "Audited rows of the served policy (n).", audit->rows);
    gauge("tracer_audit_feedback_rows",
          "Of them, rows sent by clients to POST /v1/audit (not a random sample).",
          audit->feedback_rows);
    gauge("tracer_audit_lost_rows",
          "Shadow audits of the served policy that produced no row: the LLM's answer held no "
          "label, or the audit queue was full.",
          audit->unusable + audit->dropped);
    gauge("tracer_audit_agreed_rows", "Of them, where the surrogate agreed with the LLM (k).",
          audit->agreed);
    gauge("tracer_audit_agreement", "Live agreement k / n (0 while n = 0).", audit->agreement);
    gauge("tracer_audit_agreement_upper_bound",
          "One-sided Clopper-Pearson upper bound on the live agreement (see docs/serve.md).",
          audit->upper_bound);
    gauge("tracer_audit_target", "The policy's target agreement alpha.", audit->alpha);
    gauge("tracer_audit_tripped",
          "1 once the upper bound fell below the target: everything is deferred.",
          audit->tripped ? 1 : 0);
  }
  if (drift) {
    // The served policy's drift monitor (a new policy version starts a fresh one).
    gauge("tracer_drift_available",
          "1 once the drift monitor has taken a look (the manifest has a drift reference and "
          "--drift-min-rows inputs were routed).",
          drift->available ? 1 : 0);
    gauge("tracer_drift_rows_seen", "Routed inputs recorded by the drift monitor.",
          drift->rows_seen);
    gauge("tracer_drift_looks", "Drift tests taken, each on a block of inputs no look has tested.",
          drift->looks);
    gauge("tracer_drift_window_rows", "Routed inputs compared by the last look.", drift->rows);
    gauge("tracer_drift_ks",
          "Last look's one-sided KS distance: how much more live stage-1 acceptor score mass "
          "sits below the calibrate split's (0 before the first look).",
          drift->ks);
    gauge("tracer_drift_p_value", "Its p-value (1 before the first look).", drift->p_value);
    gauge("tracer_drift_detected",
          "1 once a look reported drift (stays 1 for this policy version): a warning, routing is "
          "unchanged. Without drift, a version ever reports it with probability at most "
          "--drift-level.",
          drift->drift ? 1 : 0);
  }
  header(out, "tracer_policy_info", "gauge", "The policy being served (value is always 1).");
  out += fmt::format("tracer_policy_info{{policy_version=\"{}\",method=\"{}\",labels=\"{}\"}} 1\n",
                     prometheus_escape(policy_version), prometheus_escape(method), num_labels);
  return out;
}

}  // namespace tracer::serve
