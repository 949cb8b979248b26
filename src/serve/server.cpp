#include "serve/server.hpp"

#include <fmt/format.h>
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

#include "io/trace_store.hpp"
#include "serve/audit_queue.hpp"
#include "serve/completions.hpp"
#include "serve/http_server.hpp"
#include "serve/http_text.hpp"
#include "serve/loaded_policy.hpp"
#include "serve/metrics.hpp"
#include "serve/status_json.hpp"
#include "serve/stream_relay.hpp"
#include "serve/upstream.hpp"
#include "util/error.hpp"
#include "util/time_text.hpp"

namespace tracer::serve {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kJson = "application/json";
constexpr const char* kInvalid = "invalid_request_error";
void send_error(httplib::Response& res, int status, std::string_view message,
                std::string_view type) {
  res.status = status;
  res.set_content(error_body(message, type), kJson);
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// How often the server polls the drift monitor by itself, so looks are taken and the stderr
// warning comes even when no one scrapes /metrics. Polls only test blocks no look has tested.
constexpr auto kDriftCheckPeriod = std::chrono::seconds(1);

// Connections the open-file limit allows: raises the soft RLIMIT_NOFILE to the hard one and
// keeps 256 descriptors for everything else (policy files, the trace store, upstream
// connections). Returns at most `wanted`; warns when it must return less.
size_t connection_budget(size_t wanted) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return wanted;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  constexpr rlim_t kReserved = 256;
  const size_t allowed = lim.rlim_cur > 2 * kReserved ? lim.rlim_cur - kReserved : lim.rlim_cur / 2;
  if (wanted <= allowed) return wanted;
  std::cerr << fmt::format(
      "warning: --max-connections {} lowered to {}: the open-file limit is {} (raise it with "
      "ulimit -n)\n",
      wanted, allowed, lim.rlim_cur);
  return allowed;
}

}  // namespace

struct ApiServer::Impl {
  ServeOptions opt;
  PolicySlot slot;
  Metrics metrics;
  std::mutex reload_mu;
  std::string last_reload_error;  // guarded by reload_mu
  std::unique_ptr<Upstream> upstream;
  LabelParser label_parser;
  std::string trace_db;
  std::unique_ptr<TraceStore> store;
  std::atomic<uint64_t> completion_seq{0};
  std::atomic<bool> stopping{false}, running{false};
  bool bound = false;
  int port = 0;
  EventLog log{opt.log_format, std::cerr};
  std::unique_ptr<AuditQueue> audits;  // proxy with --audit-share > 0; uses the members above
  HttpServer http;  // destroyed before the members above, while its handlers' state is alive
  std::mutex stopper_mu;
  std::jthread stopper;  // stops `http` once requests in progress are done (stop()); joined first

  explicit Impl(ServeOptions o)
      : opt(std::move(o)),
        slot(LoadedPolicy::load(opt.policy_dir, checked(opt.audit), checked(opt.drift),
                                opt.memory)) {
    if (opt.threads < 1) throw InputError("--threads must be >= 1");
    if (opt.max_body_bytes < 1) throw InputError("--max-body-bytes must be >= 1");
    if (opt.limits.max_batch < 1) throw InputError("--max-batch must be >= 1");
    if (!(opt.request_timeout_s >= 0 && opt.request_timeout_s <= 3600))
      throw InputError("--request-timeout must be between 0 (none) and 3600 seconds");
    if (!opt.upstream.empty()) {
      label_parser = LabelParser(opt.label_json_field, opt.label_regex);
      upstream = std::make_unique<Upstream>(
          UpstreamOptions{opt.upstream, opt.upstream_api_key, opt.upstream_timeout_s,
                          opt.upstream_retries, opt.upstream_backoff_ms});
      trace_db = opt.trace_db.empty() ? opt.policy_dir + "/traces.db" : opt.trace_db;
      store = std::make_unique<TraceStore>(trace_db);
      if (opt.audit.share > 0)
        audits = std::make_unique<AuditQueue>(opt.audit_concurrency, opt.audit_queue);
    } else if (opt.audit.share > 0) {
      throw InputError(
          "--audit-share samples proxied traffic: add --upstream URL, or send your LLM's labels "
          "to POST /v1/audit instead");
    } else if (!opt.label_json_field.empty() || !opt.label_regex.empty() || opt.record_handled ||
               !opt.upstream_api_key.empty()) {
      throw InputError(
          "--label-json-field, --label-regex, --record-handled and "
          "--upstream-api-key only apply in proxy mode; add --upstream URL");
    }
    configure();
    auto p = slot.get();
    log.event("policy_load", "policy " + p->version() + " loaded from " + opt.policy_dir,
              {{"result", "ok"}, {"policy_version", p->version()}, {"source", opt.policy_dir}});
    log_restored_trip(*p);
  }

  // A policy whose saved audit state says it tripped defers everything from the start.
  void log_restored_trip(const LoadedPolicy& p) {
    if (!p.audit() || !p.audit()->tripped()) return;
    const AuditState a = p.audit()->state();
    log.event("audit_tripped",
              "policy " + p.version() + ": the shadow audit had tripped before the restart (" +
                  std::to_string(a.agreed) + " of " + std::to_string(a.rows) +
                  " audited rows agreed): every request is deferred until a refit is loaded",
              {{"policy_version", p.version()},
               {"rows", a.rows},
               {"agreed", a.agreed},
               {"target", a.alpha},
               {"restored", true}});
  }

  // Logs an upstream call that failed (throttled: an upstream that is down fails at request
  // rate). 4xx answers are the client's business and are not logged.
  void log_upstream(const UpstreamReply& up, std::string_view what) {
    if (up.outcome == UpstreamOutcome::kOk || up.outcome == UpstreamOutcome::kCancelled ||
        (up.outcome == UpstreamOutcome::kHttpError && up.status < 500))
      return;
    log.throttled("upstream_error", std::string(what) + ": " + up.error,
                  {{"outcome", upstream_outcome_name(up.outcome)},
                   {"status", up.status},
                   {"retries", up.retries},
                   {"seconds", up.seconds},
                   {"call", what},
                   {"error", up.error}});
  }

  // Throws InputError on bad audit options even when the policy has no monitor to use them.
  static const AuditOptions& checked(const AuditOptions& a) {
    AuditMonitor probe(0.5, 0.5, a);
    return a;
  }

  // Checked before the policy loads, in the words of the flags.
  static const DriftOptions& checked(const DriftOptions& d) {
    constexpr size_t kMaxWindow = 1'000'000;  // two blocks are held in memory, one is sorted
    if (d.window < 1 || d.window > kMaxWindow)
      throw InputError(fmt::format("--drift-window must be between 1 and {} routed inputs (got {})",
                                   kMaxWindow, d.window));
    if (d.min_rows < 1 || d.min_rows > d.window)
      throw InputError(fmt::format(
          "--drift-min-rows must be between 1 and --drift-window ({}); got {} (the first look "
          "tests that many routed inputs, later ones --drift-window each)",
          d.window, d.min_rows));
    if (!(d.level > 0 && d.level < 1))
      throw InputError(fmt::format(
          "--drift-level must be strictly between 0 and 1 (got {}); e.g. 0.01", d.level));
    return d;
  }

  // Polls the served policy's drift monitor every kDriftCheckPeriod (which logs the warning the
  // first time it shows drift) until `stop` is requested.
  void watch_drift(std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, stop, kDriftCheckPeriod, [] { return false; }) &&
           !stop.stop_requested()) {
      try {
        slot.get()->drift_report();
      } catch (const std::exception& e) {
        std::cerr << "warning: drift check failed: " << e.what() << "\n";
      }
    }
  }

  void count(const Decision& d) {
    if (d.audit_tripped)
      metrics.count_audit_deferral();
    else
      metrics.count_decision(d.route);
  }

  void configure() {
    http.set_worker_threads(opt.threads);
    http.set_max_connections(connection_budget(opt.max_connections));
    http.set_max_queued(opt.max_queued);
    http.set_busy_body(
        error_body("the server is busy (--max-connections or --max-queued reached); retry later",
                   "server_busy"));
    http.set_payload_max_length(opt.max_body_bytes);
    // A body whose size is not announced (chunked) is cut while it is read: the body limit plus
    // room for the request line, headers and chunk framing.
    http.set_request_byte_limit(opt.max_body_bytes + opt.max_body_bytes / 8 + (1 << 20));
    // httplib's default also sets SO_REUSEPORT, which lets a second `tracer serve` bind the same
    // port and the kernel split traffic between two policies. SO_REUSEADDR alone still allows a
    // quick restart (sockets in TIME_WAIT) but refuses a port another server holds.
    http.set_request_timeout_ms(static_cast<int>(std::lround(opt.request_timeout_s * 1000)));
    http.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    http.set_tcp_nodelay(true);
    http.set_keep_alive_max_count(100000);
    http.set_keep_alive_timeout(5);
    http.set_read_timeout(5);
    http.set_write_timeout(5);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return screen_before_body(req, res) ? httplib::Server::HandlerResponse::Handled
                                          : httplib::Server::HandlerResponse::Unhandled;
    });

    http.Get("/healthz", wrap(Endpoint::kHealth, false, [this](const auto&, auto& res) {
               auto p = slot.get();
               json j{{"status", "ok"},
                      {"policy_version", p->version()},
                      {"method", p->method()},
                      {"labels", p->num_labels()},
                      {"proxy", upstream != nullptr}};
               if (p->audit()) j["audit_tripped"] = p->audit()->tripped();
               j["drift"] = p->drift_report().drift;
               {
                 std::lock_guard<std::mutex> lock(reload_mu);
                 if (!last_reload_error.empty()) j["last_reload_error"] = last_reload_error;
               }
               res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
             }));
    http.Get("/v1/policy", wrap(Endpoint::kPolicy, true, [this](const auto&, auto& res) {
               res.set_content(slot.get()->manifest_json(), kJson);
             }));
    http.Get("/metrics", wrap(Endpoint::kMetrics, true, [this](const auto&, auto& res) {
               auto p = slot.get();
               std::optional<AuditState> a;
               if (p->audit()) a = p->audit()->state();
               DriftReport drift = p->drift_report();
               res.set_content(metrics.render(p->version(), p->method(), p->num_labels(),
                                              a ? &*a : nullptr, &drift) +
                                   memory_metrics(p->memory()) +
                                   connection_metrics(http.open_connections(), http.queued(),
                                                      http.refused_busy()),
                               "text/plain; version=0.0.4");
             }));
    http.Get("/v1/drift", wrap(Endpoint::kDrift, true, [this](const auto&, auto& res) {
               res.set_content(dump(drift_json(*slot.get(), opt.drift)), kJson);
             }));
    http.Post("/v1/route", wrap(Endpoint::kRoute, true, [this](const auto& req, auto& res) {
                RouteRequest rq = parse_route_request(req.body, opt.limits);
                auto p = slot.get();
                Decision d = p->decide(rq.text);
                count(d);
                json j = p->decision_json(d);
                if (!rq.id.is_null()) j["id"] = rq.id;
                res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
              }));
    http.Post("/v1/route/batch", wrap(Endpoint::kBatch, true, [this](const auto& req, auto& res) {
                std::vector<std::string> texts = parse_batch_request(req.body, opt.limits);
                auto p = slot.get();
                json results = json::array();
                for (const auto& t : texts) {
                  Decision d = p->decide(t);
                  count(d);
                  results.push_back(p->decision_json(d));
                }
                json j{{"results", std::move(results)}, {"policy_version", p->version()}};
                res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
              }));
    http.Post("/v1/admin/reload", wrap(Endpoint::kReload, true, [this](const auto&, auto& res) {
                ReloadResult r = reload("http");
                json j{{"reloaded", r.ok},
                       {"policy_version", r.policy_version},
                       {"previous_policy_version", r.previous_policy_version}};
                if (!r.ok) {
                  res.status = 500;
                  j["error"] = {{"message", "reload failed; still serving policy " +
                                                r.policy_version + ": " + r.error},
                                {"type", "reload_failed"}};
                }
                res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
              }));
    http.Get("/v1/audit", wrap(Endpoint::kAudit, true, [this](const auto&, auto& res) {
               res.set_content(dump(audit_json(*slot.get())), kJson);
             }));
    http.Post("/v1/audit", wrap(Endpoint::kAudit, true,
                                [this](const auto& req, auto& res) { feedback(req, res); }));
    http.Post("/v1/chat/completions",
              wrap(Endpoint::kChat, true, [this](const auto& req, auto& res) { chat(req, res); }));
    if (upstream) {
      // Proxy mode: the OpenAI client's other calls reach the LLM too (docs/serve.md).
      http.Post("/chat/completions", wrap(Endpoint::kChat, true,
                                          [this](const auto& req, auto& res) { chat(req, res); }));
      auto through = wrap(Endpoint::kOther, true,
                          [this](const auto& req, auto& res) { pass_through(req, res); });
      http.Get(R"(/v1/.+)", through);
      http.Post(R"(/v1/.+)", through);
      http.Delete(R"(/v1/.+)", through);
      http.Put(R"(/v1/.+)", through);
      http.Patch(R"(/v1/.+)", through);
    }

    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                       httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (!res.has_header("X-Tracer-Policy-Version"))
        res.set_header("X-Tracer-Policy-Version", slot.get()->version());
      // The upstream's own answer, passed through: an empty-bodied 4xx/5xx stays as it is.
      if (res.has_header("X-Tracer-Upstream-Status"))
        return httplib::Server::HandlerResponse::Unhandled;
      // httplib answers these before reading the body: the rest of it is still in flight.
      if (res.status == 400 || res.status == 413 || res.status == 414) {
        res.set_header("Connection", "close");
        HttpServer::close_after_response();  // never read the rest as another request
      }
      Endpoint e = endpoint_of(req.path);
      if (res.status == 404 && e != Endpoint::kOther) {
        res.status = 405;
        res.set_header("Allow", allowed_methods(e));
        send_error(res, 405,
                   "method " + printable_path(req.method) + " is not allowed on " + req.path +
                       "; use " + allowed_methods(e),
                   "method_not_allowed");
      } else if (res.status == 404) {
        send_error(res, 404,
                   "no endpoint " + printable_path(req.path) +
                       "; see docs/serve.md (POST /v1/route, POST /v1/route/batch, GET "
                       "/healthz, GET /v1/policy, GET /metrics, GET/POST /v1/audit, GET /v1/drift)",
                   "not_found");
      } else if (HttpServer::head_too_large()) {
        res.status = 431;
        send_error(res, 431, "the request line and headers are too large: at most 64 KiB in all",
                   "request_headers_too_large");
        res.set_header("Connection", "close");
        HttpServer::close_after_response();
      } else if (HttpServer::request_timed_out()) {
        res.status = 408;  // the connection is closed after it (HttpServer)
        send_error(res, 408,
                   "the request did not arrive in time: it must arrive within "
                   "--request-timeout (" +
                       fmt::format("{:g}", opt.request_timeout_s) +
                       " s) of its first byte, with no pause of 5 s or more",
                   "request_timeout");
      } else if (HttpServer::request_over_budget()) {
        res.status = 413;
        send_error(res, 413,
                   "the request is too large: its body (chunked uploads included) may hold at "
                   "most --max-body-bytes",
                   "request_too_large");
      } else if (res.status == 413 && req.get_header_value("Content-Type")
                                              .rfind("application/x-www-form-urlencoded", 0) == 0) {
        // cpp-httplib caps form-encoded bodies at 8 KiB whatever --max-body-bytes says, and
        // `curl -d` sends that content type by default.
        send_error(res, 413,
                   "the request body is too large: at most --max-body-bytes, and at most 8 KiB "
                   "when sent as application/x-www-form-urlencoded (curl -d's default); send "
                   "JSON with 'Content-Type: application/json' (curl: add -H 'Content-Type: "
                   "application/json')",
                   "request_too_large");
      } else if (res.status == 413) {
        send_error(res, 413, "the request body is too large (--max-body-bytes)",
                   "request_too_large");
      } else if (res.status == 400) {
        send_error(res, 400, "malformed HTTP request", kInvalid);
      } else if (res.status == 414) {
        send_error(res, 414, "the request line (URL) is too long", kInvalid);
      } else {
        send_error(res, res.status, "HTTP error " + std::to_string(res.status), "http_error");
      }
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count_request(endpoint_of(req.path), res.status);
    });
  }

  httplib::Server::Handler wrap(
      Endpoint ep, bool needs_auth,
      std::function<void(const httplib::Request&, httplib::Response&)> body) {
    return [this, ep, needs_auth, body = std::move(body)](const httplib::Request& req,
                                                          httplib::Response& res) {
      auto t0 = Clock::now();
      metrics.inflight(1);
      res.set_header("X-Tracer-Policy-Version", slot.get()->version());
      try {
        if (needs_auth) check_auth(req);
        if (req.body.size() > opt.max_body_bytes)  // chunked: within the read budget, over this
          throw ApiError(413, "request_too_large",
                         "the request body is too large (--max-body-bytes), chunked uploads "
                         "included");
        body(req, res);
      } catch (const ApiError& e) {
        if (e.status() == 401) res.set_header("WWW-Authenticate", "Bearer");
        send_error(res, e.status(), e.what(), e.type());
      } catch (const std::exception& e) {
        send_error(res, 500, std::string("internal error: ") + e.what(), "internal_error");
      }
      metrics.inflight(-1);
      metrics.observe_latency(ep, std::chrono::duration<double>(Clock::now() - t0).count());
    };
  }

  // Runs on the headers alone, before cpp-httplib reads the body. Refuses (true, response set,
  // connection closed) ambiguous framing, which a proxy in front could read differently
  // (request smuggling): two Content-Length headers that disagree, or Content-Length together
  // with Transfer-Encoding. And checks the API key, so an unauthenticated client cannot make
  // the server read and hold a large body.
  bool screen_before_body(const httplib::Request& req, httplib::Response& res) const {
    const size_t lengths = req.get_header_value_count("Content-Length");
    bool conflicting = lengths > 0 && req.has_header("Transfer-Encoding");
    for (size_t i = 0; i < lengths && !conflicting; ++i) {
      // RFC 9110: digits only ("+13", "-1" and lists such as "13, 200" are not a length).
      const std::string v = req.get_header_value("Content-Length", i);
      conflicting = v.empty() || v.find_first_not_of("0123456789") != std::string::npos ||
                    v != req.get_header_value("Content-Length", 0);
    }
    if (conflicting) {
      send_error(res, 400,
                 "ambiguous request framing: send one Content-Length of digits only, or "
                 "Transfer-Encoding without Content-Length",
                 kInvalid);
      res.set_header("Connection", "close");
      HttpServer::close_after_response();  // never read what follows as another request
      return true;
    }
    // httplib reads a body only for POST, PUT, PATCH and DELETE: another method's body would be
    // read as the next request (request smuggling past a proxy that allows only GET).
    const bool body_read = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
                           req.method == "DELETE";
    if (!body_read && (req.has_header("Transfer-Encoding") ||
                       (lengths > 0 && req.get_header_value("Content-Length") != "0"))) {
      send_error(res, 400,
                 "a " + printable_path(req.method) +
                     " request cannot carry a body here; send it without one (or use POST)",
                 kInvalid);
      res.set_header("Connection", "close");
      HttpServer::close_after_response();
      return true;
    }
    if (opt.api_key.empty() || req.path == "/healthz") return false;
    try {
      check_auth(req);
    } catch (const ApiError& e) {
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, e.status(), e.what(), e.type());
      res.set_header("Connection", "close");  // the body, if any, was not read
      HttpServer::close_after_response();
      return true;
    }
    return false;
  }

  void check_auth(const httplib::Request& req) const {
    if (opt.api_key.empty()) return;
    std::string h = req.get_header_value("Authorization");
    if (h.empty())
      throw ApiError(401, "authentication_error",
                     "missing API key: send the header \"Authorization: Bearer KEY\"");
    std::string_view v = h;
    if (v.size() < 7 || !iequals(v.substr(0, 7), "bearer "))
      throw ApiError(401, "authentication_error",
                     "the Authorization header must be \"Bearer KEY\"");
    if (!constant_time_equal(trim(v.substr(7)), opt.api_key))
      throw ApiError(401, "authentication_error", "invalid API key");
  }

  void record(const LoadedPolicy& p, std::string input, std::string teacher, bool known,
              std::string raw, const char* decision, const char* source = "proxy",
              bool sampled = false) {
    StoredTrace t;
    t.sampled = sampled;
    t.time_ms = unix_now_ms();
    t.input = std::move(input);
    t.teacher = std::move(teacher);
    t.label_known = known;
    t.raw_output = std::move(raw);
    t.source = source;
    t.policy_version = p.version();
    t.decision = decision;
    metrics.count_trace(store->try_append(std::move(t)), known);
  }

  // The LLM's answer in an upstream chat completion, read as traces record it.
  struct LlmAnswer {
    std::string label;   // what the label parser extracted ("" when nothing)
    bool known = false;  // label is one of the policy's
    std::string raw;     // the whole answer, kept for unknown labels
  };
  LlmAnswer read_answer(const LoadedPolicy& p, const std::string& body) const {
    LlmAnswer a;
    if (chat_answer_text(body, a.raw)) a.label = label_parser.extract(a.raw);
    a.known = !a.label.empty() && p.label_index(a.label) >= 0;
    if (a.known) a.raw.clear();
    return a;
  }

  // Compares the LLM's label with the surrogate's in the monitor of the policy that answered.
  void record_audit(const LoadedPolicy& p, const std::string& llm_label,
                    const std::string& surrogate_label, AuditSource source) {
    bool agreed = llm_label == surrogate_label;
    const bool was_tripped = p.audit()->tripped();
    if (p.audit()->record(agreed, source) && !was_tripped) {
      const AuditState a = p.audit()->state();
      log.event("audit_tripped",
                "policy " + p.version() + ": the shadow audit tripped (" +
                    std::to_string(a.checked_agreed) + " of " + std::to_string(a.checked_rows) +
                    " audited rows agreed; upper bound " + fmt::format("{:.4f}", a.upper_bound) +
                    " < target " + fmt::format("{:g}", a.alpha) +
                    "): every request is deferred until a refit is loaded",
                {{"policy_version", p.version()},
                 {"rows", a.checked_rows},
                 {"agreed", a.checked_agreed},
                 {"upper_bound", a.upper_bound},
                 {"target", a.alpha}});
    }
    metrics.count_audit(agreed ? AuditOutcome::kAgreed : AuditOutcome::kDisagreed, source);
  }

  // A shadow audit that produced no row, counted in /metrics and in the policy's audit state.
  void count_lost_audit(const LoadedPolicy& p, AuditOutcome why, uint64_t n = 1) {
    metrics.count_audit(why, AuditSource::kShadow, n);
    if (p.audit()) {
      if (why == AuditOutcome::kDropped)
        p.audit()->count_dropped(static_cast<int64_t>(n));
      else
        p.audit()->count_unusable(static_cast<int64_t>(n));
    }
  }

  // Where a chat completion goes upstream: /v1/chat/completions with the client's query string
  // (Azure-style upstreams need ?api-version=...).
  static std::string chat_target(const httplib::Request& req) {
    const size_t q = req.target.find('?');
    return "/v1/chat/completions" + (q == std::string::npos ? std::string() : req.target.substr(q));
  }

  // The forwarded headers of a proxied request.
  std::vector<std::pair<std::string, std::string>> forwarded(const httplib::Request& req) const {
    std::vector<std::pair<std::string, std::string>> fwd;
    for (const auto& [k, v] : req.headers) {
      bool auth = iequals(k, "authorization");
      // With --api-key the client's Authorization carries tracer's key: never pass it on.
      if ((auth && opt.api_key.empty()) || (k.size() > 7 && iequals(k.substr(0, 7), "openai-")))
        fwd.emplace_back(k, v);
    }
    return fwd;
  }

  // Queues a shadow audit of a handled chat completion: the same request goes to the LLM in a
  // worker, after the client has the surrogate's answer. Returns false when it was dropped.
  bool submit_audit(std::shared_ptr<const LoadedPolicy> p, const httplib::Request& req,
                    std::string body, std::string text, std::string surrogate_label,
                    bool from_memory) {
    auto job = [this, p = std::move(p), body = std::move(body), fwd = forwarded(req),
                target = chat_target(req), text = std::move(text),
                surrogate_label = std::move(surrogate_label), from_memory]() mutable {
      try {
        UpstreamReply up = upstream->send("POST", target, body, "application/json", fwd);
        metrics.count_upstream(up.outcome, up.seconds, up.retries);
        log_upstream(up, "shadow audit");
        LlmAnswer a;
        if (up.outcome == UpstreamOutcome::kOk) a = read_answer(*p, up.body);
        if (a.label.empty()) {
          count_lost_audit(*p, AuditOutcome::kUnusable);
          if (up.outcome != UpstreamOutcome::kOk) return;  // nothing learned
        } else {
          record_audit(*p, a.label, surrogate_label, AuditSource::kShadow);
          if (from_memory) p->evict_if_stale(text, a.label);
        }
        record(*p, std::move(text), a.known ? std::move(a.label) : std::string(), a.known,
               std::move(a.raw), "handled", "audit", /*sampled=*/true);
      } catch (const std::exception& e) {
        count_lost_audit(*p, AuditOutcome::kUnusable);
        std::cerr << "warning: shadow audit failed: " << e.what() << "\n";
      }
    };
    if (audits->try_submit(std::move(job))) return true;
    count_lost_audit(*slot.get(), AuditOutcome::kDropped);
    return false;
  }

  // POST /v1/audit: a client's LLM label for a text; recorded when the surrogate handles it.
  void feedback(const httplib::Request& req, httplib::Response& res) {
    AuditRequest ar = parse_audit_request(req.body, opt.limits);
    auto p = slot.get();
    if (!p->audit())
      throw ApiError(409, "audit_unavailable",
                     "the served policy's manifest.json has no gate.target / gate.delta to "
                     "audit against; refit it with this version of tracer");
    Decision d = p->decide(ar.text);
    const std::string& surrogate = p->router().label_name(d.route.label);
    json j{{"surrogate_label", surrogate},
           {"label", ar.label},
           {"decision", d.route.handled ? "handled" : "deferred"},
           {"answered_by", d.route.stage == 0 ? "memory" : "surrogate"}};
    if (d.route.handled) {
      record_audit(*p, ar.label, surrogate, AuditSource::kFeedback);
      j["evicted"] = d.route.stage == 0 && p->evict_if_stale(ar.text, ar.label);
      j["recorded"] = true;
      j["agreed"] = ar.label == surrogate;
    } else {
      // The guarantee covers handled traffic only: deferred texts say nothing about it.
      metrics.count_audit(AuditOutcome::kNotHandled, AuditSource::kFeedback);
      j["recorded"] = false;
      j["reason"] = reason_name(d.route.reason);
    }
    if (!ar.id.is_null()) j["id"] = ar.id;
    j["audit"] = audit_json(*p);
    res.set_content(dump(j), kJson);
  }

  // Why a chat request is not the task (--match-model, --match-system-prompt); "" when it is.
  // Line endings do not matter (a prompt file saved with CRLF matches a client's LF).
  std::string out_of_scope(const std::string& model, const std::string& system_prompt) const {
    if (!opt.match_models.empty() && std::find(opt.match_models.begin(), opt.match_models.end(),
                                               model) == opt.match_models.end())
      return "model";
    if (opt.match_system_prompt && without_cr(trim(system_prompt)) != *opt.match_system_prompt)
      return "system_prompt";
    return {};
  }

  // Requests of another task go to the LLM untouched and are not recorded, whatever else they
  // hold (tracer's own validation is for its task). True when `req` was one.
  bool passed_out_of_scope(const httplib::Request& req, httplib::Response& res) {
    if (opt.match_models.empty() && !opt.match_system_prompt) return false;
    std::string model, system_prompt;
    if (!peek_chat_scope(req.body, model, system_prompt)) return false;
    const std::string why = out_of_scope(model, system_prompt);
    if (why.empty()) return false;
    metrics.count_passthrough(Passthrough::kOutOfScope);
    res.set_header("X-Tracer-Decision", "passthrough");
    res.set_header("X-Tracer-Reason", "out_of_scope:" + why);
    ChatRequest cr;
    cr.stream = stream_requested(req.body);
    forward_chat(req, res, cr, nullptr, false);
    return true;
  }

  void chat(const httplib::Request& req, httplib::Response& res) {
    if (!upstream)
      throw ApiError(404, "not_found",
                     "proxy mode is off: start `tracer serve POLICY_DIR --upstream URL` to serve "
                     "/v1/chat/completions");
    if (passed_out_of_scope(req, res)) return;
    ChatRequest cr = parse_chat_request(req.body, opt.text_from, opt.limits);
    auto p = slot.get();
    std::string unsupported = cr.unsupported;
    if (unsupported.empty() && cr.response_format == "json_object" &&
        label_parser.json_field().empty())
      unsupported = "response_format json_object (the labels are not JSON: --label-json-field)";
    if (!unsupported.empty()) {
      // A label cannot answer it in the shape it asks for: deferred whatever the text says.
      metrics.count_passthrough(Passthrough::kUnsupported);
      res.set_header("X-Tracer-Decision", "deferred");
      res.set_header("X-Tracer-Reason", "unsupported");
      res.set_header("X-Tracer-Unsupported", header_safe(unsupported));
      forward_chat(req, res, cr, cr.recordable ? p : nullptr, false);
      return;
    }
    Decision d = p->decide(cr.text);
    if (d.handled()) {
      const std::string content = handled_content(*p, d.route);
      if (std::string why = label_fits(cr, content); !why.empty()) {
        // The LLM's answer would be cut at a stop sequence or max_tokens: let it give it.
        metrics.count_passthrough(Passthrough::kUnsupported);
        res.set_header("X-Tracer-Decision", "deferred");
        res.set_header("X-Tracer-Reason", "unsupported");
        res.set_header("X-Tracer-Unsupported", why);
        forward_chat(req, res, cr, nullptr, false);
        return;
      }
      count(d);
      answer_handled(req, res, cr, p, d.route, content);
      return;
    }
    count(d);
    res.set_header("X-Tracer-Decision", "deferred");
    res.set_header("X-Tracer-Reason", d.reason());
    // The audit coin is drawn for deferred requests too: the audited handled requests and the
    // deferred ones that draw it form a uniform sample of traffic, the only recorded traces
    // that may certify a refit (docs/trace_store.md, "Which traces certify a refit"). While the
    // policy defers everything whatever the text says (its audit tripped, or it answers
    // nothing), every deferred request is part of the sample: they are a census of traffic.
    const bool defers_all = d.audit_tripped || p->router().answers_nothing();
    const bool coin = audits && p->audit() && p->audit()->should_audit();
    forward_chat(req, res, cr, cr.recordable ? p : nullptr, coin || defers_all);
  }

  // A handled chat completion: the label as the assistant's answer (streamed when asked), then
  // maybe a shadow audit of it.
  // The assistant's content of a handled answer: the label, or {"FIELD": label}.
  std::string handled_content(const LoadedPolicy& p, const RouteResult& r) const {
    const std::string& label = p.router().label_name(r.label);
    if (label_parser.json_field().empty()) return label;
    return json{{label_parser.json_field(), label_json(label, p.label_json_kind())}}.dump();
  }

  void answer_handled(const httplib::Request& req, httplib::Response& res, ChatRequest& cr,
                      const std::shared_ptr<const LoadedPolicy>& p, const RouteResult& r,
                      std::string content) {
    const std::string& label = p->router().label_name(r.label);
    const int64_t now = unix_now_ms();
    HandledAnswer a;
    a.id = "chatcmpl-tracer-" + std::to_string(now) + "-" +
           std::to_string(completion_seq.fetch_add(1) + 1);
    a.created_s = now / 1000;
    a.model = cr.model.empty() ? "tracer-surrogate" : cr.model;
    a.content = std::move(content);
    a.prompt_bytes = cr.prompt_bytes;
    a.tracer = {{"served_by", r.stage == 0 ? "memory" : "surrogate"},
                {"decision", "handled"},
                {"label", label},
                {"probability", r.probability},
                {"accept_score", r.accept_score},
                {"policy_version", p->version()},
                {"usage_estimated", true}};
    res.set_header("X-Tracer-Decision", "handled");
    if (r.stage == 0) res.set_header("X-Tracer-Reason", "memory");
    if (cr.stream)
      res.set_content(completion_sse(a, cr.include_usage), "text/event-stream");
    else
      res.set_content(completion_json(a), kJson);
    // An audited request gets the LLM's trace from the audit, which beats the surrogate's.
    bool audited = audits && p->audit() && p->audit()->should_audit() &&
                   submit_audit(p, req, audit_body(req.body), cr.text, label, r.stage == 0);
    if (opt.record_handled && !audited) record(*p, std::move(cr.text), label, true, "", "handled");
  }

  // Sends the chat request to the LLM and its answer to the client (relayed as it arrives when
  // streamed). With a policy `p`, the answer becomes a trace (`sampled`: part of the traffic
  // sample); without, nothing is recorded.
  void forward_chat(const httplib::Request& req, httplib::Response& res, ChatRequest& cr,
                    std::shared_ptr<const LoadedPolicy> p, bool sampled) {
    auto learn = [this, p, sampled, text = cr.text](const UpstreamReply& up) mutable {
      if (!p || up.outcome != UpstreamOutcome::kOk) return;  // 4xx passed through: nothing learned
      LlmAnswer a = read_answer(*p, up.body);
      record(*p, std::move(text), a.known ? std::move(a.label) : std::string(), a.known,
             std::move(a.raw), "deferred", "proxy", sampled);
    };
    if (cr.stream) {
      relay_stream(req, res, std::move(learn));
      return;
    }
    UpstreamReply up =
        upstream->send("POST", chat_target(req), req.body, "application/json", forwarded(req));
    metrics.count_upstream(up.outcome, up.seconds, up.retries);
    log_upstream(up, "chat completion");
    if (up.outcome == UpstreamOutcome::kTimeout) throw ApiError(504, "upstream_timeout", up.error);
    if (up.outcome == UpstreamOutcome::kUnreachable || up.status >= 500)
      throw ApiError(502, "upstream_error", up.error);
    res.status = up.status;
    res.set_content(up.body, up.content_type.empty() ? kJson : up.content_type);
    learn(up);
  }

  // A streamed chat completion relayed from the upstream as it arrives; `learn` gets the whole
  // answer at its end (on the relay's worker).
  void relay_stream(const httplib::Request& req, httplib::Response& res,
                    std::function<void(const UpstreamReply&)> learn) {
    auto relay = std::make_shared<StreamRelay>(
        *upstream, chat_target(req), req.body, forwarded(req),
        [this, learn = std::move(learn)](const UpstreamReply& up) {
          metrics.count_upstream(up.outcome, up.seconds, up.retries);
          log_upstream(up, "streamed chat completion");
          // The trace needs the answer as one completion: assemble the streamed deltas. A
          // stream that is not a complete chat completion (cut off, truncated) records nothing.
          std::string answer;
          if (up.outcome != UpstreamOutcome::kOk || !sse_answer_text(up.body, answer)) return;
          UpstreamReply streamed = up;
          streamed.body =
              json{{"choices", json::array({{{"message", {{"content", answer}}}}})}}.dump(
                  -1, ' ', false, json::error_handler_t::replace);
          learn(streamed);
        });
    int status = 0;
    std::string content_type;
    if (!relay->wait_start(status, content_type)) {
      const UpstreamReply f = relay->failure();
      if (f.outcome == UpstreamOutcome::kTimeout) throw ApiError(504, "upstream_timeout", f.error);
      if (f.status == 0 || f.status >= 500)
        throw ApiError(502, "upstream_error",
                       f.error.empty() ? "the upstream did not answer" : f.error);
      res.status = f.status;  // a 4xx: the upstream's own answer, as without streaming
      res.set_content(f.body, f.content_type.empty() ? kJson : f.content_type);
      return;
    }
    res.status = status;
    res.set_chunked_content_provider(
        // Exactly "text/event-stream" (an upstream's "; charset=utf-8" would make httplib gzip
        // the events for clients that accept it, and gzip holds them back until its buffer fills).
        content_type.empty() || content_type.rfind("text/event-stream", 0) == 0
            ? std::string("text/event-stream")
            : content_type,
        [relay](size_t, httplib::DataSink& sink) {
          std::string piece;
          if (relay->next(piece, HttpServer::client_gone))
            return sink.write(piece.data(), piece.size());
          // Cut short upstream (timeout, failure): end without the last chunk, so the client
          // sees a broken stream rather than a complete but truncated answer.
          if (relay->ended_badly()) return false;
          sink.done();
          return true;
        },
        [relay](bool) {});
  }

  // Any other OpenAI path in proxy mode (/v1/models, /v1/embeddings, /v1/completions, ...):
  // passed to the upstream and its answer back, untouched; nothing is recorded.
  void pass_through(const httplib::Request& req, httplib::Response& res) {
    const Endpoint e = endpoint_of(req.path);
    if (e != Endpoint::kOther) {  // one of tracer's own paths with another method
      res.set_header("Allow", allowed_methods(e));
      throw ApiError(405, "method_not_allowed",
                     "method " + printable_path(req.method) + " is not allowed on " + req.path +
                         "; use " + allowed_methods(e));
    }
    if (has_dot_segment(req.path))
      throw ApiError(400, kInvalid,
                     "the path " + printable_path(req.path) +
                         " has a '.' or '..' segment; the proxy passes on paths under /v1/ only");
    metrics.count_passthrough(Passthrough::kEndpoint);
    res.set_header("X-Tracer-Decision", "passthrough");
    const std::string target = req.target.empty() ? req.path : req.target;
    UpstreamReply up = upstream->send(req.method, target, req.body,
                                      req.get_header_value("Content-Type"), forwarded(req));
    metrics.count_upstream(up.outcome, up.seconds, up.retries);
    log_upstream(up, req.method + " " + req.path);
    if (up.outcome == UpstreamOutcome::kTimeout) throw ApiError(504, "upstream_timeout", up.error);
    if (up.status == 0) throw ApiError(502, "upstream_error", up.error);
    res.status = up.status;
    res.set_header("X-Tracer-Upstream-Status", std::to_string(up.status));
    res.set_content(up.body, up.content_type.empty() ? kJson : up.content_type);
  }

  ReloadResult reload(std::string_view trigger) {
    std::lock_guard<std::mutex> lock(reload_mu);
    ReloadResult r;
    auto old = slot.get();
    r.previous_policy_version = old->version();
    try {
      auto fresh = LoadedPolicy::reload(opt.policy_dir, opt.audit, opt.drift, *old, opt.memory);
      r.policy_version = fresh->version();
      slot.set(std::move(fresh));
      r.ok = true;
      last_reload_error.clear();
    } catch (const std::exception& e) {
      r.policy_version = old->version();
      r.error = e.what();
      last_reload_error = r.error;
    }
    metrics.count_reload(r.ok);
    json fields{{"trigger", trigger},
                {"result", r.ok ? "ok" : "failed"},
                {"policy_version", r.policy_version},
                {"previous_policy_version", r.previous_policy_version},
                {"source", opt.policy_dir}};
    if (r.ok) {
      log.event("policy_reload",
                "reloaded policy " + r.previous_policy_version + " -> " + r.policy_version +
                    " from " + opt.policy_dir + " (" + std::string(trigger) + ")",
                std::move(fields));
      auto fresh = slot.get();
      if (old->audit() && old->audit()->tripped() && !(fresh->audit() && fresh->audit()->tripped()))
        log.event(
            "audit_recovered",
            "policy " + fresh->version() + " replaces " + old->version() +
                ", whose shadow audit had tripped: requests are routed again",
            {{"policy_version", fresh->version()}, {"previous_policy_version", old->version()}});
      log_restored_trip(*fresh);
    } else {
      fields["error"] = r.error;
      log.event("policy_reload",
                "reload failed, still serving " + r.policy_version + ": " + r.error,
                std::move(fields));
    }
    // Give the old policy's memory back to the system. glibc keeps freed blocks in per-thread
    // arenas, and a reload runs on whichever thread took the request: without this, RSS grew
    // from 30 MB to 434 MB over 30 reloads of a 13 MB Banking77 model and stayed there. (An old
    // policy still held by in-flight requests is freed with them and trimmed by the next reload.)
    old.reset();
    ::malloc_trim(0);
    return r;
  }
};

ApiServer::ApiServer(ServeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

ApiServer::~ApiServer() = default;

int ApiServer::bind() {
  Impl& m = *impl_;
  if (m.bound) return m.port;
  if (m.opt.port == 0) {
    m.port = m.http.bind_to_any_port(m.opt.host);
    if (m.port <= 0)
      throw InputError("cannot listen on " + m.opt.host + " (any port): check --host");
  } else {
    if (!m.http.bind_to_port(m.opt.host, m.opt.port))
      throw InputError("cannot listen on " + m.opt.host + ":" + std::to_string(m.opt.port) +
                       " (in use, or a bad --host?); choose another --port");
    m.port = m.opt.port;
  }
  m.http.widen_backlog();
  m.bound = true;
  return m.port;
}

void ApiServer::run() {
  Impl& m = *impl_;
  bind();
  std::jthread drift_watch([&m](std::stop_token stop) { m.watch_drift(stop); });
  m.running = true;
  if (!m.stopping) m.http.listen_after_bind();  // returns once stopped and in-flight work ends
  m.running = false;
  drift_watch.request_stop();
  drift_watch.join();
  // Audits finish their LLM call before the store is flushed; queued ones are dropped.
  size_t dropped = 0;
  if (m.audits)
    if (dropped = m.audits->stop(); dropped > 0)
      m.count_lost_audit(*m.slot.get(), AuditOutcome::kDropped, dropped);
  // The audit's counts since its last look, so a restart resumes them (looks save themselves).
  m.slot.get()->save_audit_state();
  json fields{{"audits_dropped", dropped}};
  std::string message = "requests finished";
  if (m.store) {
    fields["trace_store"] = m.trace_db;
    try {
      m.store->flush();
      fields["flush"] = "ok";
      message += "; trace store " + m.trace_db + " flushed";
    } catch (const std::exception& e) {
      fields["flush"] = "failed";
      fields["error"] = e.what();
      message += "; could not flush the trace store " + m.trace_db + ": " + e.what();
    }
  }
  if (dropped > 0) message += fmt::format("; {} queued shadow audits dropped", dropped);
  m.log.event("shutdown", message, std::move(fields));
}

void ApiServer::stop() {
  Impl& m = *impl_;
  m.stopping = true;
  m.http.begin_shutdown();  // idle connections close; new ones are closed at once
  // httplib's stop() also ends streamed answers being relayed: call it once the requests in
  // progress are done, on a thread of its own, so stop() returns at once (the CLI times the
  // wait with --shutdown-timeout).
  std::lock_guard lock(m.stopper_mu);
  if (m.stopper.joinable()) return;
  m.stopper = std::jthread([&m](std::stop_token cancel) {
    while (!cancel.stop_requested() && m.running && m.http.busy() > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // httplib ignores stop() before its accept loop runs; wait for it if run() is on its way.
    while (!cancel.stop_requested() && m.running && !m.http.is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    m.http.stop();
  });
}

std::string ApiServer::flush_traces() {
  if (!impl_->store) return {};
  try {
    impl_->store->flush();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

ReloadResult ApiServer::reload(std::string_view trigger) { return impl_->reload(trigger); }
void ApiServer::log_event(std::string_view event, std::string_view message, nlohmann::json fields) {
  impl_->log.event(event, message, std::move(fields));
}
std::string ApiServer::policy_version() const { return impl_->slot.get()->version(); }
const ServeOptions& ApiServer::options() const { return impl_->opt; }
bool ApiServer::proxy() const { return impl_->upstream != nullptr; }
std::string ApiServer::trace_db() const { return impl_->trace_db; }

}  // namespace tracer::serve
