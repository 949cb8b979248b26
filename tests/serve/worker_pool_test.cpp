#include "serve/worker_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace tracer::serve {
namespace {

using namespace std::chrono_literals;

// Counts jobs inside a region and remembers the most seen at once.
struct Concurrency {
  std::atomic<int> now{0};
  std::atomic<int> most{0};
  void enter() {
    int n = now.fetch_add(1) + 1;
    int seen = most.load();
    while (n > seen && !most.compare_exchange_weak(seen, n)) {
    }
  }
  void leave() { now.fetch_sub(1); }
};

// Waits until `count` parties arrived, or `limit` passed (then false, instead of hanging).
class Gate {
 public:
  explicit Gate(int count) : left_(count) {}
  bool arrive_and_wait(std::chrono::milliseconds limit) {
    std::unique_lock lock(mu_);
    if (--left_ <= 0) cv_.notify_all();
    return cv_.wait_for(lock, limit, [this] { return left_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_;
};

TEST(WorkerPool, RunsEveryJobInSubmissionOrderOnOneSlot) {
  std::vector<int> order;
  std::mutex mu;
  {
    WorkerPool pool(8, 1);
    for (int i = 0; i < 50; ++i)
      pool.submit([&, i] {
        std::lock_guard lock(mu);
        order.push_back(i);
      });
    pool.shutdown();  // runs what is queued first
  }
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
}

// CPU jobs never run more at once than the slots, however many threads may exist.
TEST(WorkerPool, RunsAtMostCpuSlotsJobsAtOnce) {
  Concurrency c;
  WorkerPool pool(32, 3);
  for (int i = 0; i < 200; ++i)
    pool.submit([&] {
      c.enter();
      std::this_thread::sleep_for(200us);
      c.leave();
    });
  pool.shutdown();
  EXPECT_LE(c.most.load(), 3);
  EXPECT_GE(c.most.load(), 1);
  EXPECT_LE(pool.threads(), 32u);
}

// A job waiting on I/O gives its slot up: with one slot, four jobs that each wait for all four
// to be inside their Blocking scope only finish if all four run at once.
TEST(WorkerPool, BlockingJobsLetOthersRun) {
  Gate all_in(4);
  std::atomic<int> met{0};
  WorkerPool pool(8, 1);
  for (int i = 0; i < 4; ++i)
    pool.submit([&] {
      WorkerPool::Blocking waiting;
      if (all_in.arrive_and_wait(10s)) met.fetch_add(1);
    });
  pool.shutdown();
  EXPECT_EQ(met.load(), 4);
  EXPECT_EQ(pool.threads(), 4u);
}

// No more threads than max_threads, even when every job blocks: the rest wait their turn.
TEST(WorkerPool, NeverMoreThreadsThanTheMaximum) {
  Concurrency c;
  WorkerPool pool(3, 1);
  for (int i = 0; i < 12; ++i)
    pool.submit([&] {
      WorkerPool::Blocking waiting;
      c.enter();
      std::this_thread::sleep_for(2ms);
      c.leave();
    });
  pool.shutdown();
  EXPECT_LE(pool.threads(), 3u);
  EXPECT_LE(c.most.load(), 3);
}

// Blocking scopes on threads that are not the pool's, and nested ones, change nothing.
TEST(WorkerPool, BlockingOutsideThePoolIsANoOpAndScopesNest) {
  { WorkerPool::Blocking outside; }
  WorkerPool pool(4, 1);
  std::atomic<int> done{0};
  for (int i = 0; i < 20; ++i)
    pool.submit([&] {
      {
        WorkerPool::Blocking a;
        WorkerPool::Blocking b;
      }
      done.fetch_add(1);
    });
  pool.shutdown();
  EXPECT_EQ(done.load(), 20);
  pool.submit([&] { done.fetch_add(1); });  // after shutdown: dropped
  EXPECT_EQ(done.load(), 20);
}

}  // namespace
}  // namespace tracer::serve
