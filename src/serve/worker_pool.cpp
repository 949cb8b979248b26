#include "serve/worker_pool.hpp"

#include <algorithm>
#include <utility>

namespace tracer::serve {
namespace {

// The pool whose thread this is, and how deep its job is in Blocking scopes.
thread_local WorkerPool* t_pool = nullptr;
thread_local int t_blocking_depth = 0;

}  // namespace

WorkerPool::WorkerPool(size_t max_threads, size_t cpu_slots)
    : max_threads_(std::max<size_t>(max_threads, 1)),
      cpu_slots_(cpu_slots > 0 ? cpu_slots : default_cpu_slots()) {}

size_t WorkerPool::default_cpu_slots() {
  return std::max<size_t>(std::thread::hardware_concurrency(), 1) + 2;
}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::submit(std::function<void()> job) {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  queue_.push_back(std::move(job));
  add_thread_if_needed();
  if (may_start()) cv_.notify_one();
}

void WorkerPool::shutdown() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  cv_.notify_all();
  // Queued jobs still run, and one that blocks may still start a thread: join until none is left.
  while (!threads_.empty()) {
    std::vector<std::thread> threads;
    threads.swap(threads_);
    lock.unlock();
    for (auto& t : threads) t.join();
    lock.lock();
  }
}

size_t WorkerPool::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

size_t WorkerPool::threads() const {
  std::lock_guard lock(mu_);
  return created_;
}

bool WorkerPool::may_start() const { return !queue_.empty() && running_ < cpu_slots_; }

void WorkerPool::add_thread_if_needed() {
  if (may_start() && idle_ == 0 && created_ < max_threads_) {
    ++idle_;  // counted from now, so the next submit does not start another one too
    ++created_;
    threads_.emplace_back([this] { work(); });
  }
}

void WorkerPool::work() {
  t_pool = this;
  std::unique_lock lock(mu_);
  for (;;) {  // idle_ counts this thread here
    cv_.wait(lock, [this] { return may_start() || (stopping_ && queue_.empty()); });
    --idle_;
    if (queue_.empty()) return;  // stopping, nothing left
    std::function<void()> job = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    job();
    job = nullptr;  // destroy what it captured before counting it finished
    lock.lock();
    --running_;
    ++idle_;
    if (stopping_ && queue_.empty())
      cv_.notify_all();  // idle threads may exit
    else if (may_start())
      cv_.notify_one();
  }
}

void WorkerPool::enter_blocking() {
  std::lock_guard lock(mu_);
  --running_;
  add_thread_if_needed();
  if (may_start()) cv_.notify_one();
}

void WorkerPool::leave_blocking() {
  std::lock_guard lock(mu_);
  ++running_;  // the job goes on at once, even if that exceeds cpu_slots for a while
}

WorkerPool::Blocking::Blocking() : pool_(t_pool) {
  if (pool_ != nullptr && t_blocking_depth++ == 0) pool_->enter_blocking();
}

WorkerPool::Blocking::~Blocking() {
  if (pool_ != nullptr && --t_blocking_depth == 0) pool_->leave_blocking();
}

}  // namespace tracer::serve
