#pragma once
// A fixed set of worker threads running jobs from a bounded queue. The proxy's shadow-audit
// calls to the LLM run here, after the client already has the surrogate's answer: a slow LLM
// then costs a worker, never a request thread, and a full queue refuses new jobs (the caller
// counts them dropped) instead of growing.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tracer::serve {

class AuditQueue {
 public:
  // Throws InputError unless threads >= 1 and capacity >= 1.
  AuditQueue(int threads, size_t capacity);
  ~AuditQueue();  // stop()
  AuditQueue(const AuditQueue&) = delete;
  AuditQueue& operator=(const AuditQueue&) = delete;

  // Queues `job` (which must not throw); false when the queue is full or stopped.
  bool try_submit(std::function<void()> job);
  // Stops taking jobs, discards the queued ones (returns how many) and waits for the running
  // ones. Idempotent.
  size_t stop();
  size_t pending() const;

 private:
  void work();

  size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace tracer::serve
