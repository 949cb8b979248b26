#include "runtime/drift_monitor.hpp"

#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "util/error.hpp"

namespace tracer {
namespace {

DriftReference reference(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<float> s(n);
  for (auto& x : s) x = u(rng);
  std::vector<uint8_t> handled(n), ood(n);
  for (size_t i = 0; i < n; ++i) handled[i] = s[i] > 0.2f, ood[i] = s[i] < 0.03f;
  return DriftReference::from_calibrate(s, handled, ood);
}

// Records `n` scores uniform on [lo, hi).
void feed(DriftMonitor& m, size_t n, float lo, float hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(lo, hi);
  for (size_t i = 0; i < n; ++i) {
    float s = u(rng);
    m.record(s, s > 0.2f, s < 0.03f);
  }
}

DriftOptions options(size_t window, size_t min_rows, double level) {
  DriftOptions o;
  o.window = window;
  o.min_rows = min_rows;
  o.level = level;
  return o;
}

TEST(DriftMonitor, BlocksAndLevels) {
  DriftOptions o = options(500, 200, 0.01);
  EXPECT_EQ(DriftMonitor::block_begin(0, o), 0);
  EXPECT_EQ(DriftMonitor::block_end(0, o), 200);
  EXPECT_EQ(DriftMonitor::block_begin(1, o), 200);
  EXPECT_EQ(DriftMonitor::block_end(3, o), 1700);
  // The levels sum to the whole level: sum_{k<K} 1/((k+1)(k+2)) = 1 - 1/(K+1).
  double sum = 0;
  for (int k = 0; k < 100000; ++k) sum += DriftMonitor::look_level(k, 0.01);
  EXPECT_NEAR(sum, 0.01 * (1 - 1.0 / 100001), 1e-12);
  EXPECT_DOUBLE_EQ(DriftMonitor::look_level(0, 0.01), 0.005);
  EXPECT_DOUBLE_EQ(DriftMonitor::look_level(1, 0.01), 0.01 / 6);
}

TEST(DriftMonitor, EachLookTestsABlockNoLookTestedBefore) {
  DriftMonitor m(reference(2000, 1), options(500, 200, 0.01));
  std::mt19937_64 rng(2);
  DriftReport r = m.poll();
  EXPECT_FALSE(r.available);
  EXPECT_NE(r.message.find("0 of 200"), std::string::npos) << r.message;
  feed(m, 199, 0, 1, rng);
  EXPECT_EQ(m.poll().looks, 0);
  feed(m, 1, 0, 1, rng);
  r = m.poll();
  EXPECT_TRUE(r.available);
  EXPECT_EQ(r.looks, 1);
  EXPECT_EQ(r.rows, 200);
  EXPECT_EQ(r.rows_seen, 200);
  EXPECT_EQ(r.next_look_rows, 700);
  EXPECT_DOUBLE_EQ(r.look_level, 0.005);
  EXPECT_DOUBLE_EQ(r.level, 0.01);
  // Asking again looks at nothing new.
  EXPECT_EQ(m.poll().looks, 1);
  feed(m, 499, 0, 1, rng);
  EXPECT_EQ(m.poll().looks, 1);
  feed(m, 1, 0, 1, rng);
  r = m.poll();
  EXPECT_EQ(r.looks, 2);
  EXPECT_EQ(r.rows, 500);
  EXPECT_DOUBLE_EQ(r.look_level, 0.01 / 6);
  // Three blocks complete between two polls: only the newest is tested, the others never.
  feed(m, 1500 + 100, 0, 1, rng);
  r = m.poll();
  EXPECT_EQ(r.looks, 3);
  EXPECT_EQ(r.rows_seen, 2300);
  EXPECT_EQ(r.next_look_rows, 2700);
  EXPECT_FALSE(r.drift) << r.message;
  EXPECT_NE(r.message.find("no drift in 3 looks"), std::string::npos) << r.message;
}

TEST(DriftMonitor, WithoutReferenceItNeverLooks) {
  DriftMonitor m(DriftReference{}, options(100, 100, 0.01));
  std::mt19937_64 rng(3);
  feed(m, 1000, 0, 1, rng);
  DriftReport r = m.poll();
  EXPECT_FALSE(r.available);
  EXPECT_EQ(r.looks, 0);
  EXPECT_NE(r.message.find("refit"), std::string::npos) << r.message;
}

TEST(DriftMonitor, BadOptionsAreClearErrors) {
  EXPECT_THROW(DriftMonitor(reference(10, 1), options(10, 1, 0)), InputError);
  EXPECT_THROW(DriftMonitor(reference(10, 1), options(10, 1, 1)), InputError);
  EXPECT_THROW(DriftMonitor(reference(10, 1), options(0, 1, 0.01)), InputError);
  EXPECT_THROW(DriftMonitor(reference(10, 1), options(10, 11, 0.01)), InputError);
  EXPECT_THROW(DriftMonitor(reference(10, 1), options(10, 0, 0.01)), InputError);
}

// The lifetime false-alarm rate. 400 monitors, each polled after every block for 60 looks on
// traffic with the calibrate split's own distribution, at level 0.1: at most 10% of them may
// ever report drift (40 expected at worst; the bound below is 3 standard deviations above).
// The same looks each tested at the full level, as a sliding window re-checked at a fixed
// level would be, report drift in most monitors: the spending is what keeps the promise.
TEST(DriftMonitor, LifetimeFalseAlarmsStayWithinTheLevel) {
  const int monitors = 400, looks = 60;
  const double level = 0.1;
  int spent = 0, unspent = 0;
  for (int seed = 0; seed < monitors; ++seed) {
    const DriftReference ref = reference(1000, 1000 + seed);
    DriftMonitor m(ref, options(300, 100, level));
    std::mt19937_64 rng(5000 + seed);
    bool fixed_level_alarm = false;
    std::uniform_real_distribution<float> u(0, 1);
    for (int k = 0; k < looks; ++k) {
      std::vector<float> block(k == 0 ? 100 : 300);
      for (auto& s : block) {
        s = u(rng);
        m.record(s, s > 0.2f, s < 0.03f);
      }
      DriftReport r = m.poll();
      ASSERT_EQ(r.looks, k + 1);
      DriftOptions single = options(0, 1, level);
      fixed_level_alarm |= compare_drift(ref, block, 0, 0, single).drift;
    }
    spent += m.poll().drift;
    unspent += fixed_level_alarm;
  }
  EXPECT_LE(spent, 58) << spent << " of " << monitors << " monitors reported drift";
  EXPECT_GT(unspent, monitors / 2) << unspent;
}

// Power: 30% of traffic becomes unsure (scores near 0). Every monitor reports it within its
// first three looks, and the report stays drifted after traffic recovers.
TEST(DriftMonitor, ReportsAShiftQuicklyAndKeepsReportingIt) {
  for (int seed = 0; seed < 50; ++seed) {
    DriftMonitor m(reference(2000, 200 + seed), options(500, 200, 0.01));
    std::mt19937_64 rng(300 + seed);
    std::uniform_real_distribution<float> u(0, 1);
    int64_t found = 0;
    for (int k = 0; k < 3 && found == 0; ++k) {
      for (int i = 0; i < (k == 0 ? 200 : 500); ++i) {
        float s = u(rng) < 0.3 ? 0.05f * u(rng) : u(rng);
        m.record(s, s > 0.2f, s < 0.03f);
      }
      found = m.poll().detected_at_look;
    }
    ASSERT_GT(found, 0) << "seed " << seed;
    DriftReport r = m.poll();
    EXPECT_TRUE(r.drift);
    EXPECT_NE(r.message.find("drift since look"), std::string::npos) << r.message;
    feed(m, 1000, 0, 1, rng);
    DriftReport later = m.poll();
    EXPECT_TRUE(later.drift);
    EXPECT_EQ(later.detected_at_look, found);
    EXPECT_GT(later.looks, r.looks);
  }
}

// Four threads record while a fifth polls: every look reads whole blocks of real rows.
TEST(DriftMonitor, RecordsFromManyThreadsWhileLooking) {
  DriftMonitor m(reference(2000, 7), options(1000, 1000, 0.01));
  std::atomic<bool> done{false};
  std::thread poller([&] {
    while (!done.load()) {
      DriftReport r = m.poll();
      if (r.looks > 0) {
        EXPECT_EQ(r.rows, 1000);
        EXPECT_GE(r.ks, 0);
        EXPECT_LE(r.live_handled_share, 1.0);
      }
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t)
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(20 + t);
      feed(m, 50000, 0, 1, rng);
    });
  for (auto& w : writers) w.join();
  done = true;
  poller.join();
  DriftReport r = m.poll();
  EXPECT_EQ(r.rows_seen, 200000);
  EXPECT_GE(r.looks, 1);
  EXPECT_FALSE(r.drift) << r.message;
}

}  // namespace
}  // namespace tracer
