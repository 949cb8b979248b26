#pragma once
// The threads that answer requests. Two kinds of work share them: routing, which only needs a
// CPU, and proxying, which mostly waits on the LLM. Running more CPU work at once than there
// are cores only adds context switches and lock-holder preemption (measured: 64 runnable
// threads on 2 cores answered 10k req/s with p99 90 ms where 4 answered 15k with p99 9 ms),
// while waiting work needs many threads. So the pool runs at most `cpu_slots` jobs at once,
// except that a job waiting on I/O (inside a `Blocking` scope) gives up its slot: another job
// starts, on a new thread if none is free, up to `max_threads`. This is managed blocking, as
// in Go's scheduler and Java's ForkJoinPool.ManagedBlocker.
//
// Jobs start in submission order. Threads are created when first needed and kept.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tracer::serve {

class WorkerPool {
 public:
  // max_threads >= 1; cpu_slots >= 1 (0: default_cpu_slots()).
  WorkerPool(size_t max_threads, size_t cpu_slots = 0);
  // Hardware threads + 2 (from the measurements above).
  static size_t default_cpu_slots();
  ~WorkerPool();  // shutdown()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `job`; never blocks. After shutdown() the job is dropped.
  void submit(std::function<void()> job);
  // Refuses new jobs, runs what is queued, then joins every thread. Idempotent.
  void shutdown();

  size_t queued() const;   // jobs waiting to start
  size_t threads() const;  // threads created so far

  // While alive on one of this pool's threads, its job counts as waiting on I/O (see above).
  // On any other thread it does nothing. Scopes may nest.
  class Blocking {
   public:
    Blocking();
    ~Blocking();
    Blocking(const Blocking&) = delete;
    Blocking& operator=(const Blocking&) = delete;

   private:
    WorkerPool* pool_;
  };

 private:
  void work();
  bool may_start() const;       // under mu_
  void add_thread_if_needed();  // under mu_
  void enter_blocking();
  void leave_blocking();

  const size_t max_threads_;
  const size_t cpu_slots_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_, as everything below
  size_t running_ = 0;  // jobs started, not finished, not inside a Blocking scope
  size_t idle_ = 0;     // threads waiting for a job
  bool stopping_ = false;
  size_t created_ = 0;  // threads started (never more than max_threads_)
  std::vector<std::thread> threads_;
};

}  // namespace tracer::serve
