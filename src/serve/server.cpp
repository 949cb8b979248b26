#include "serve/server.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>

#include "io/trace_store.hpp"
#include "serve/http_server.hpp"
#include "serve/loaded_policy.hpp"
#include "serve/metrics.hpp"
#include "serve/upstream.hpp"
#include "util/error.hpp"

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

bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

const char* allowed_methods(Endpoint e) {
  switch (e) {
    case Endpoint::kHealth:
    case Endpoint::kPolicy:
    case Endpoint::kMetrics:
      return "GET, HEAD";
    default:
      return "POST";
  }
}

std::string printable_path(const std::string& path) {
  std::string p = path.substr(0, 200);
  for (char& c : p)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  return p;
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
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
  HttpServer http;  // last: destroyed first, while everything its handlers use is alive

  explicit Impl(ServeOptions o) : opt(std::move(o)), slot(LoadedPolicy::load(opt.policy_dir)) {
    if (opt.threads < 1) throw InputError("--threads must be >= 1");
    if (opt.max_body_bytes < 1) throw InputError("--max-body-bytes must be >= 1");
    if (opt.limits.max_batch < 1) throw InputError("--max-batch must be >= 1");
    if (!opt.upstream.empty()) {
      label_parser = LabelParser(opt.label_json_field, opt.label_regex);
      upstream = std::make_unique<Upstream>(
          UpstreamOptions{opt.upstream, opt.upstream_api_key, opt.upstream_timeout_s,
                          opt.upstream_retries, opt.upstream_backoff_ms});
      trace_db = opt.trace_db.empty() ? opt.policy_dir + "/traces.db" : opt.trace_db;
      store = std::make_unique<TraceStore>(trace_db);
    } else if (!opt.label_json_field.empty() || !opt.label_regex.empty() || opt.record_handled ||
               !opt.upstream_api_key.empty()) {
      throw InputError(
          "--label-json-field, --label-regex, --record-handled and "
          "--upstream-api-key only apply in proxy mode; add --upstream URL");
    }
    configure();
  }

  void configure() {
    int threads = opt.threads;
    http.new_task_queue = [threads] {
      return new httplib::ThreadPool(static_cast<size_t>(threads));
    };
    http.set_payload_max_length(opt.max_body_bytes);
    http.set_tcp_nodelay(true);
    http.set_keep_alive_max_count(100000);
    http.set_keep_alive_timeout(5);
    http.set_read_timeout(5);
    http.set_write_timeout(5);

    http.Get("/healthz", wrap(Endpoint::kHealth, false, [this](const auto&, auto& res) {
               auto p = slot.get();
               json j{{"status", "ok"},
                      {"policy_version", p->version()},
                      {"method", p->method()},
                      {"labels", p->num_labels()},
                      {"proxy", upstream != nullptr}};
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
               res.set_content(metrics.render(p->version(), p->method(), p->num_labels()),
                               "text/plain; version=0.0.4");
             }));
    http.Post("/v1/route", wrap(Endpoint::kRoute, true, [this](const auto& req, auto& res) {
                RouteRequest rq = parse_route_request(req.body, opt.limits);
                auto p = slot.get();
                RouteResult r = p->route(rq.text);
                metrics.count_decision(r);
                json j = p->decision_json(r);
                if (!rq.id.is_null()) j["id"] = rq.id;
                res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
              }));
    http.Post("/v1/route/batch", wrap(Endpoint::kBatch, true, [this](const auto& req, auto& res) {
                std::vector<std::string> texts = parse_batch_request(req.body, opt.limits);
                auto p = slot.get();
                json results = json::array();
                for (const auto& t : texts) {
                  RouteResult r = p->route(t);
                  metrics.count_decision(r);
                  results.push_back(p->decision_json(r));
                }
                json j{{"results", std::move(results)}, {"policy_version", p->version()}};
                res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
              }));
    http.Post("/v1/admin/reload", wrap(Endpoint::kReload, true, [this](const auto&, auto& res) {
                ReloadResult r = reload();
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
    http.Post("/v1/chat/completions",
              wrap(Endpoint::kChat, true, [this](const auto& req, auto& res) { chat(req, res); }));

    http.set_error_handler(httplib::Server::HandlerWithResponse(
        [](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          // httplib answers these before reading the body: the rest of it is still in flight.
          if (res.status == 400 || res.status == 413 || res.status == 414)
            res.set_header("Connection", "close");
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
                           "/healthz, GET /v1/policy, GET /metrics)",
                       "not_found");
          } else if (res.status == 413) {
            send_error(res, 413, "the request body is too large (--max-body-bytes)",
                       "request_too_large");
          } else if (res.status == 400 && !req.has_header("Content-Length") &&
                     !req.has_header("Transfer-Encoding") &&
                     (req.method == "POST" || req.method == "PUT" || req.method == "PATCH")) {
            send_error(res, 400,
                       "a " + req.method +
                           " needs a Content-Length header, even for an empty "
                           "body (curl: add -d '')",
                       kInvalid);
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
      try {
        if (needs_auth) check_auth(req);
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
              std::string raw, const char* decision) {
    StoredTrace t;
    t.time_ms = unix_ms();
    t.input = std::move(input);
    t.teacher = std::move(teacher);
    t.label_known = known;
    t.raw_output = std::move(raw);
    t.source = "proxy";
    t.policy_version = p.version();
    t.decision = decision;
    metrics.count_trace(store->try_append(std::move(t)), known);
  }

  void chat(const httplib::Request& req, httplib::Response& res) {
    if (!upstream)
      throw ApiError(404, "not_found",
                     "proxy mode is off: start `tracer serve POLICY_DIR --upstream URL` to serve "
                     "/v1/chat/completions");
    ChatRequest cr = parse_chat_request(req.body, opt.text_from, opt.limits);
    if (cr.stream)
      throw ApiError(400, kInvalid,
                     "\"stream\": true is not supported by the tracer proxy; send \"stream\": "
                     "false");
    auto p = slot.get();
    RouteResult r = p->route(cr.text);
    metrics.count_decision(r);
    res.set_header("X-Tracer-Policy-Version", p->version());
    if (r.handled) {
      const std::string& label = p->router().label_name(r.label);
      std::string content = label_parser.json_field().empty()
                                ? label
                                : json{{label_parser.json_field(), label}}.dump();
      int64_t now = unix_ms();
      json message{{"role", "assistant"}, {"content", content}};
      json j{{"id", "chatcmpl-tracer-" + std::to_string(now) + "-" +
                        std::to_string(completion_seq.fetch_add(1) + 1)},
             {"object", "chat.completion"},
             {"created", now / 1000},
             {"model", cr.model.empty() ? "tracer-surrogate" : cr.model},
             {"choices",
              json::array(
                  {{{"index", 0}, {"message", std::move(message)}, {"finish_reason", "stop"}}})},
             {"usage", {{"prompt_tokens", 0}, {"completion_tokens", 0}, {"total_tokens", 0}}},
             {"tracer",
              {{"served_by", "surrogate"},
               {"decision", "handled"},
               {"label", label},
               {"probability", r.probability},
               {"accept_score", r.accept_score},
               {"policy_version", p->version()}}}};
      res.set_header("X-Tracer-Decision", "handled");
      res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
      if (opt.record_handled) record(*p, std::move(cr.text), label, true, "", "handled");
      return;
    }
    res.set_header("X-Tracer-Decision", "deferred");
    res.set_header("X-Tracer-Reason", reason_name(r.reason));
    std::vector<std::pair<std::string, std::string>> fwd;
    for (const auto& [k, v] : req.headers) {
      bool auth = iequals(k, "authorization");
      // With --api-key the client's Authorization carries tracer's key: never pass it on.
      if ((auth && opt.api_key.empty()) || (k.size() > 7 && iequals(k.substr(0, 7), "openai-")))
        fwd.emplace_back(k, v);
    }
    UpstreamReply up = upstream->chat_completions(req.body, fwd);
    metrics.count_upstream(up.outcome, up.seconds, up.retries);
    if (up.outcome == UpstreamOutcome::kTimeout) throw ApiError(504, "upstream_timeout", up.error);
    if (up.outcome == UpstreamOutcome::kUnreachable || up.status >= 500)
      throw ApiError(502, "upstream_error", up.error);
    res.status = up.status;
    res.set_content(up.body, up.content_type.empty() ? kJson : up.content_type);
    if (up.outcome != UpstreamOutcome::kOk) return;  // 4xx passed through; nothing learned
    std::string answer;
    std::string label = chat_answer_text(up.body, answer) ? label_parser.extract(answer) : "";
    bool known = !label.empty() && p->label_index(label) >= 0;
    if (known) answer.clear();
    record(*p, std::move(cr.text), known ? std::move(label) : std::string(), known,
           std::move(answer), "deferred");
  }

  ReloadResult reload() {
    std::lock_guard<std::mutex> lock(reload_mu);
    ReloadResult r;
    auto old = slot.get();
    r.previous_policy_version = old->version();
    try {
      auto fresh = LoadedPolicy::load(opt.policy_dir);
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
  m.running = true;
  if (!m.stopping) m.http.listen_after_bind();  // returns once stopped and in-flight work ends
  m.running = false;
  if (m.store) {
    try {
      m.store->flush();
    } catch (const std::exception& e) {
      std::cerr << "warning: could not flush the trace store " << m.trace_db << ": " << e.what()
                << "\n";
    }
  }
}

void ApiServer::stop() {
  Impl& m = *impl_;
  m.stopping = true;
  m.http.begin_shutdown();
  // httplib ignores stop() before its accept loop runs; wait for it if run() is on its way.
  while (m.running && !m.http.is_running())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  m.http.stop();
}

ReloadResult ApiServer::reload() { return impl_->reload(); }
std::string ApiServer::policy_version() const { return impl_->slot.get()->version(); }
const ServeOptions& ApiServer::options() const { return impl_->opt; }
bool ApiServer::proxy() const { return impl_->upstream != nullptr; }
std::string ApiServer::trace_db() const { return impl_->trace_db; }

}  // namespace tracer::serve
