#pragma once
// The upstream LLM of proxy mode: an OpenAI-compatible POST /v1/chat/completions with timeouts,
// retries with exponential backoff (connect errors and 5xx only) and pooled keep-alive clients.
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "serve/metrics.hpp"

namespace httplib {
struct Request;
class Client;
}  // namespace httplib

namespace tracer::serve {

// Lets another thread stop a streamed call at once when its client went away: cancel() shuts the
// upstream connection down, so the call ends without waiting for the LLM's next byte, with
// outcome kCancelled (not an upstream failure). Thread-safe.
class UpstreamCancel {
 public:
  void cancel();  // idempotent
  bool cancelled() const;

 private:
  friend class Upstream;
  bool attach(httplib::Client* client);  // false when already cancelled
  void detach();

  mutable std::mutex mu_;
  httplib::Client* client_ = nullptr;  // the connection in use, while a call is on it
  bool cancelled_ = false;
};

struct UpstreamOptions {
  std::string url;        // http(s)://host[:port][/prefix]; a trailing /v1 is accepted
  std::string api_key;    // when set, sent as "Authorization: Bearer KEY" instead of the client's
  double timeout_s = 60;  // connect, read and write timeout of one attempt
  int retries = 2;        // extra attempts after a connect error or a 5xx answer
  int backoff_ms = 100;   // wait before retry i (1-based): backoff_ms * 2^(i-1)
};

struct UpstreamReply {
  UpstreamOutcome outcome = UpstreamOutcome::kOk;
  int status = 0;  // the upstream's HTTP status (0 when it never answered)
  std::string body;
  std::string content_type;
  int retries = 0;     // attempts beyond the first
  double seconds = 0;  // whole call including backoff
  std::string error;   // what went wrong, for kUnreachable / kTimeout / 5xx
};

class Upstream {
 public:
  explicit Upstream(UpstreamOptions options);  // throws InputError on a bad URL
  ~Upstream();
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  using Headers = std::vector<std::pair<std::string, std::string>>;

  // Never throw for network errors: the reply's outcome says what happened (kOk: 2xx;
  // kHttpError: any other answer, after retries for 5xx). The client's Authorization is dropped
  // when an api_key is configured.

  // Any request, passed through: `method` (GET, POST, ...), `target` the path below the
  // upstream's base URL with its query ("/v1/models", "/v1/chat/completions?api-version=1"),
  // `body` and its `content_type` ("" when there is none). Connect errors and 5xx answers are
  // retried with backoff.
  UpstreamReply send(const std::string& method, const std::string& target, const std::string& body,
                     const std::string& content_type, const Headers& headers) const;

  // POST `target` and pass the answer on as it arrives (server-sent events): `on_start` gets
  // the status and Content-Type once the upstream's headers are in, `on_data` every piece of the
  // body; either returns false to stop (the client went away). Retried only while nothing was
  // received. The reply's body holds everything received (for the trace). `cancel` (optional)
  // stops the call from another thread.
  UpstreamReply stream(
      const std::string& target, const std::string& body, const Headers& headers,
      const std::function<bool(int status, const std::string& content_type)>& on_start,
      const std::function<bool(const char* data, size_t size)>& on_data,
      UpstreamCancel* cancel = nullptr) const;

  const std::string& url() const;  // the full chat-completions URL, for messages

 private:
  UpstreamReply call(httplib::Request& req, const bool* started,
                     UpstreamCancel* cancel = nullptr) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tracer::serve
