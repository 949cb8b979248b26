#include "serve/stream_relay.hpp"

#include <chrono>

#include "serve/worker_pool.hpp"

namespace tracer::serve {

StreamRelay::StreamRelay(const Upstream& upstream, std::string target, std::string body,
                         Upstream::Headers headers,
                         std::function<void(const UpstreamReply&)> on_finish)
    : on_finish_(std::move(on_finish)) {
  worker_ = std::thread([this, &upstream, target = std::move(target), body = std::move(body),
                         headers = std::move(headers)] { run(upstream, target, body, headers); });
}

StreamRelay::~StreamRelay() {
  {
    std::lock_guard lock(mu_);
    cancelled_ = true;
  }
  cancel_.cancel();  // ends the upstream read now, not at the LLM's next piece
  worker_.join();
}

void StreamRelay::run(const Upstream& upstream, const std::string& target, const std::string& body,
                      const Upstream::Headers& headers) {
  UpstreamReply reply;
  try {
    reply = upstream.stream(
        target, body, headers,
        [this](int status, const std::string& content_type) {
          std::lock_guard lock(mu_);
          started_ = true;
          status_ = status;
          content_type_ = content_type;
          cv_.notify_all();
          return !cancelled_;
        },
        [this](const char* data, size_t size) {
          std::lock_guard lock(mu_);
          pieces_.emplace_back(data, size);
          cv_.notify_all();
          return !cancelled_;
        },
        &cancel_);
  } catch (const std::exception& e) {  // never leave the connection's thread waiting
    reply.outcome = UpstreamOutcome::kUnreachable;
    reply.error = std::string("the upstream call failed: ") + e.what();
  }
  {
    std::lock_guard lock(mu_);
    reply_ = reply;
    done_ = true;
    cv_.notify_all();
  }
  try {
    if (on_finish_) on_finish_(reply);
  } catch (...) {  // recording is best effort: the client has its answer
  }
}

bool StreamRelay::wait_start(int& status, std::string& content_type) {
  WorkerPool::Blocking waiting;  // for the LLM
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return started_ || done_; });
  if (!started_) return false;
  status = status_;
  content_type = content_type_;
  return true;
}

bool StreamRelay::ended_badly() {
  std::lock_guard lock(mu_);
  return client_went_away_ || (done_ && started_ && reply_.outcome != UpstreamOutcome::kOk);
}

bool StreamRelay::next(std::string& piece, const std::function<bool()>& client_gone) {
  WorkerPool::Blocking waiting;  // for the LLM
  std::unique_lock lock(mu_);
  // Between the LLM's pieces, look at the client now and then: one that went away ends the
  // relay (and the upstream call) now rather than at the next piece.
  constexpr auto kLook = std::chrono::milliseconds(100);
  while (!cv_.wait_for(lock, kLook, [this] { return !pieces_.empty() || done_; }))
    if (client_gone && client_gone()) {
      client_went_away_ = true;
      return false;
    }
  if (pieces_.empty()) return false;
  piece = std::move(pieces_.front());
  pieces_.pop_front();
  return true;
}

}  // namespace tracer::serve
