#include "serve/upstream.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>
#include <vector>

#include "serve/http.hpp"
#include "serve/worker_pool.hpp"
#include "util/error.hpp"

namespace tracer::serve {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

}  // namespace

struct Upstream::Impl {
  UpstreamOptions opt;
  std::string origin;  // scheme://host[:port]
  std::string prefix;  // the base URL's path without a trailing /v1 ("" or "/openai", ...)
  std::string url;
  std::mutex mu;
  std::vector<std::unique_ptr<httplib::Client>> idle;  // keep-alive connections to reuse

  // A pooled client (reused = true) or a new one.
  std::unique_ptr<httplib::Client> checkout(bool& reused) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!idle.empty()) {
        auto c = std::move(idle.back());
        idle.pop_back();
        reused = true;
        return c;
      }
    }
    reused = false;
    return fresh();
  }
  std::unique_ptr<httplib::Client> fresh() const {
    auto c = std::make_unique<httplib::Client>(origin);
    auto t = std::chrono::microseconds(static_cast<int64_t>(opt.timeout_s * 1e6));
    c->set_connection_timeout(t);
    c->set_read_timeout(t);
    c->set_write_timeout(t);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    return c;
  }
  void give_back(std::unique_ptr<httplib::Client> c) {
    std::lock_guard<std::mutex> lock(mu);
    idle.push_back(std::move(c));
  }
};

Upstream::Upstream(UpstreamOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->opt = std::move(options);
  const std::string& u = impl_->opt.url;
  const std::regex kUrl(R"(^(https?)://([^/?#\s]+)(/[^?#\s]*)?$)", std::regex::icase);
  std::smatch m;
  if (!std::regex_match(u, m, kUrl))
    throw InputError("--upstream '" + u + "' is not an http(s) URL like http://127.0.0.1:11434");
  std::string prefix = m[3].matched ? m[3].str() : "";
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  // OpenAI base URLs usually end in /v1; accept both spellings.
  if (prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0)
    prefix.resize(prefix.size() - 3);
  impl_->origin = m[1].str() + "://" + m[2].str();
  impl_->prefix = prefix;
  impl_->url = impl_->origin + prefix + "/v1/chat/completions";
  if (!(impl_->opt.timeout_s > 0)) throw InputError("--upstream-timeout must be > 0 seconds");
  if (impl_->opt.retries < 0 || impl_->opt.retries > 10)
    throw InputError("--upstream-retries must be between 0 and 10");
  if (impl_->opt.backoff_ms < 0 || impl_->opt.backoff_ms > 60000)
    throw InputError("the upstream backoff must be between 0 and 60000 ms");
  if (!httplib::Client(impl_->origin).is_valid())
    throw InputError("--upstream '" + u + "': cannot make a client for " + impl_->origin);
}

Upstream::~Upstream() = default;

const std::string& Upstream::url() const { return impl_->url; }

namespace {

httplib::Headers upstream_headers(const UpstreamOptions& opt, const Upstream::Headers& headers) {
  httplib::Headers h;
  for (const auto& [k, v] : headers) {
    if (!opt.api_key.empty() && iequals(k, "authorization"))
      continue;  // our own key replaces the client's
    h.emplace(k, v);
  }
  if (!opt.api_key.empty()) h.emplace("Authorization", "Bearer " + opt.api_key);
  return h;
}

}  // namespace

UpstreamReply Upstream::send(const std::string& method, const std::string& target,
                             const std::string& body, const std::string& content_type,
                             const Headers& headers) const {
  httplib::Request req;
  req.method = method;
  req.path = impl_->prefix + target;
  req.headers = upstream_headers(impl_->opt, headers);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    req.body = body;
    if (!content_type.empty()) req.headers.emplace("Content-Type", content_type);
  }
  return call(req, nullptr);
}

UpstreamReply Upstream::stream(const std::string& target, const std::string& body,
                               const Headers& headers,
                               const std::function<bool(int, const std::string&)>& on_start,
                               const std::function<bool(const char*, size_t)>& on_data,
                               UpstreamCancel* cancel) const {
  httplib::Request req;
  req.method = "POST";
  req.path = impl_->prefix + target;
  req.headers = upstream_headers(impl_->opt, headers);
  req.headers.emplace("Content-Type", "application/json");
  req.body = body;
  // Only a 2xx answer is relayed as it arrives; any other is read whole, so that a 5xx is
  // retried as without streaming and a 4xx comes back as one body.
  bool started = false, relaying = false;
  std::string received;
  req.response_handler = [&](const httplib::Response& r) {
    received.clear();
    relaying = r.status >= 200 && r.status < 300;
    if (!relaying) return true;
    started = true;
    return on_start(r.status, r.get_header_value("Content-Type"));
  };
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    received.append(data, size);
    return !relaying || on_data(data, size);
  };
  UpstreamReply reply = call(req, &started, cancel);
  reply.body = std::move(received);
  return reply;
}

// One request with the retry policy: connect errors (and, while nothing was passed on, 5xx
// answers) are retried with backoff. `started`, for a streamed request, says whether the
// client already got the upstream's answer under way: then nothing is retried.
void UpstreamCancel::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  if (client_ != nullptr) client_->stop();  // shuts the socket down; the read in flight fails
}

bool UpstreamCancel::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool UpstreamCancel::attach(httplib::Client* client) {
  std::lock_guard lock(mu_);
  client_ = cancelled_ ? nullptr : client;
  return !cancelled_;
}

void UpstreamCancel::detach() {
  std::lock_guard lock(mu_);
  client_ = nullptr;
}

UpstreamReply Upstream::call(httplib::Request& req, const bool* started,
                             UpstreamCancel* cancel) const {
  WorkerPool::Blocking waiting;  // a request thread waits for the LLM without a CPU slot
  using Clock = std::chrono::steady_clock;
  const UpstreamOptions& opt = impl_->opt;
  const std::string url = impl_->origin + req.path;
  UpstreamReply reply;
  auto start = Clock::now();
  for (int attempt = 0; attempt <= opt.retries; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(opt.backoff_ms << (attempt - 1)));
      reply.retries = attempt;
    }
    bool reused = false;
    auto client = impl_->checkout(reused);
    auto t0 = Clock::now();
    // One send, stoppable through `cancel`; nullopt when it was cancelled before it began.
    const auto send_on = [&](httplib::Client& c) -> std::optional<httplib::Result> {
      if (cancel != nullptr && !cancel->attach(&c)) return std::nullopt;
      httplib::Result r = c.send(req);
      if (cancel != nullptr) cancel->detach();
      return r;
    };
    std::optional<httplib::Result> sent = send_on(*client);
    double took = std::chrono::duration<double>(Clock::now() - t0).count();
    if (sent && !*sent && reused && took < opt.timeout_s * 0.95 && !(started && *started) &&
        (sent->error() == httplib::Error::Read || sent->error() == httplib::Error::Write) &&
        !(cancel != nullptr && cancel->cancelled())) {
      // Most likely a pooled keep-alive connection the upstream had closed: once more on a new one.
      client = impl_->fresh();
      t0 = Clock::now();
      sent = send_on(*client);
      took = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    if (!sent || (cancel != nullptr && cancel->cancelled())) {
      reply.outcome = UpstreamOutcome::kCancelled;
      reply.error = "the client went away before the upstream " + url + " finished";
      break;
    }
    httplib::Result& res = *sent;
    if (!res) {
      httplib::Error err = res.error();
      if (err == httplib::Error::Connection || err == httplib::Error::ConnectionTimeout) {
        reply.outcome = err == httplib::Error::Connection ? UpstreamOutcome::kUnreachable
                                                          : UpstreamOutcome::kTimeout;
        reply.error =
            "cannot connect to the upstream " + url + " (" + httplib::to_string(err) + ")";
        continue;  // the request never reached the model: safe to retry
      }
      // Sent but no (complete) answer: retrying could run the model twice, so stop here.
      if (took >= opt.timeout_s * 0.95) {
        reply.outcome = UpstreamOutcome::kTimeout;
        reply.error = "the upstream " + url + " did not answer within " +
                      std::to_string(opt.timeout_s) + " s (--upstream-timeout)";
      } else {
        reply.outcome = UpstreamOutcome::kUnreachable;
        reply.error = "the upstream " + url + " failed (" + httplib::to_string(err) + ")";
      }
      break;
    }
    reply.status = res->status;
    reply.body = std::move(res->body);
    reply.content_type = res->get_header_value("Content-Type");
    impl_->give_back(std::move(client));
    if (reply.status >= 500) {
      reply.outcome = UpstreamOutcome::kHttpError;
      reply.error = "the upstream " + url + " answered HTTP " + std::to_string(reply.status);
      if (started && *started) break;  // already passed on to the client
      continue;
    }
    reply.outcome = reply.status >= 200 && reply.status < 300 ? UpstreamOutcome::kOk
                                                              : UpstreamOutcome::kHttpError;
    reply.error.clear();
    break;
  }
  reply.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return reply;
}

}  // namespace tracer::serve
