#include "serve/audit_queue.hpp"

#include <string>

#include "util/error.hpp"

namespace tracer::serve {

AuditQueue::AuditQueue(int threads, size_t capacity) : capacity_(capacity) {
  if (threads < 1)
    throw InputError("--audit-concurrency must be >= 1, got " + std::to_string(threads));
  if (capacity < 1) throw InputError("--audit-queue must be >= 1");
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

AuditQueue::~AuditQueue() { stop(); }

bool AuditQueue::try_submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || jobs_.size() >= capacity_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

size_t AuditQueue::stop() {
  size_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    dropped = jobs_.size();
    jobs_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  return dropped;
}

size_t AuditQueue::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_.size();
}

void AuditQueue::work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace tracer::serve
