// The shadow-audit monitor: argument checks, the audit sample, and the trip rule statistically
// (false trips over many seeds when the surrogate is good, detection time when it is not).
#include "runtime/audit.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

#include "gate/bounds.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

// Feeds Bernoulli(agreement) rows until the monitor trips or `rows` are in; returns the row
// count at which it tripped (0: never).
int rows_to_trip(double agreement, double alpha, double delta, int rows, uint64_t seed,
                 int min_rows = 50) {
  AuditMonitor m(alpha, delta, {0, min_rows, 0});
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution agree(agreement);
  for (int i = 1; i <= rows; ++i)
    if (m.record(agree(rng))) return i;
  return 0;
}

TEST(Audit, RejectsBadArgumentsWithTheFlagToFix) {
  auto message = [](auto make) -> std::string {
    try {
      make();
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message([] { AuditMonitor(0, 0.05); }).find("target"), std::string::npos);
  EXPECT_NE(message([] { AuditMonitor(1, 0.05); }).find("target"), std::string::npos);
  EXPECT_NE(message([] { AuditMonitor(0.95, 0); }).find("delta"), std::string::npos);
  EXPECT_NE(message([] {
              AuditMonitor(0.95, 0.05, {1.5, 50, 0});
            }).find("--audit-share"),
            std::string::npos);
  EXPECT_NE(message([] {
              AuditMonitor(0.95, 0.05, {-0.1, 50, 0});
            }).find("--audit-share"),
            std::string::npos);
  EXPECT_NE(message([] {
              AuditMonitor(0.95, 0.05, {0.1, 0, 0});
            }).find("--audit-min-rows"),
            std::string::npos);
}

TEST(Audit, SampleHasTheRequestedShareAndIsDeterministic) {
  AuditMonitor off(0.95, 0.05, {0, 50, 0});
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(off.should_audit());
  AuditMonitor all(0.95, 0.05, {1, 50, 0});
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(all.should_audit());

  constexpr int kRequests = 200000;
  AuditMonitor a(0.95, 0.05, {0.05, 50, 7}), b(0.95, 0.05, {0.05, 50, 7}),
      c(0.95, 0.05, {0.05, 50, 8});
  int picked = 0, same_as_b = 0, same_as_c = 0;
  for (int i = 0; i < kRequests; ++i) {
    bool x = a.should_audit();
    picked += x;
    same_as_b += x == b.should_audit();
    same_as_c += x == c.should_audit();
  }
  // Binomial(200000, 0.05): sd ~97; 6 sd either side.
  EXPECT_NEAR(picked, 0.05 * kRequests, 600);
  EXPECT_EQ(same_as_b, kRequests);         // same seed, same sample
  EXPECT_LT(same_as_c, kRequests - 1000);  // another seed, another sample
}

TEST(Audit, NeverTripsBeforeMinRowsAndTripsAtOnceOnAFailingSurrogate) {
  AuditMonitor m(0.95, 0.05, {0, 50, 0});
  for (int i = 1; i < 50; ++i) EXPECT_FALSE(m.record(false)) << i;
  EXPECT_FALSE(m.tripped());
  EXPECT_TRUE(m.record(false));  // 0 of 50 agree
  AuditState s = m.state();
  EXPECT_TRUE(s.tripped);
  EXPECT_EQ(s.rows, 50);
  EXPECT_EQ(s.agreed, 0);
  EXPECT_EQ(s.tripped_at_rows, 50);
  EXPECT_LT(s.upper_bound, 0.95);
  EXPECT_DOUBLE_EQ(s.alpha, 0.95);
  EXPECT_DOUBLE_EQ(s.delta, 0.05);
}

TEST(Audit, StaysTrippedAndKeepsCounting) {
  AuditMonitor m(0.9, 0.05, {0, 20, 0});
  for (int i = 0; i < 20; ++i) m.record(false);
  ASSERT_TRUE(m.tripped());
  for (int i = 0; i < 5000; ++i) EXPECT_TRUE(m.record(true));
  AuditState s = m.state();
  EXPECT_TRUE(s.tripped);
  EXPECT_EQ(s.rows, 5020);
  EXPECT_EQ(s.agreed, 5000);
  EXPECT_EQ(s.tripped_at_rows, 20);
  EXPECT_GT(s.agreement, 0.99);
}

TEST(Audit, PerfectAgreementNeverTrips) {
  AuditMonitor m(0.99, 0.01, {0, 1, 0});
  for (int i = 0; i < 10000; ++i) EXPECT_FALSE(m.record(true));
  AuditState s = m.state();
  EXPECT_EQ(s.rows, 10000);
  EXPECT_DOUBLE_EQ(s.agreement, 1);
  EXPECT_DOUBLE_EQ(s.upper_bound, 1);
  AuditState empty = AuditMonitor(0.95, 0.05).state();
  EXPECT_EQ(empty.rows, 0);
  EXPECT_DOUBLE_EQ(empty.agreement, 0);
  EXPECT_DOUBLE_EQ(empty.upper_bound, 1);
  EXPECT_FALSE(empty.tripped);
}

// The trip rule (one binomial tail) is the Clopper–Pearson bound it reports: at each look,
// tripped exactly when the bound at the look's confidence is below alpha; between looks the
// monitor neither trips nor changes the bound it reports.
TEST(Audit, TripsExactlyWhenTheReportedBoundFallsBelowAlpha) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    AuditMonitor m(0.9, 0.05, {0, 30, 0});
    std::mt19937_64 rng(seed);
    std::bernoulli_distribution agree(0.8);
    int look = 0, looks_seen = 0;
    for (int n = 1; n <= 2000; ++n) {
      bool tripped = m.record(agree(rng));
      AuditState s = m.state();
      if (n != AuditMonitor::look_rows(look, 30)) {
        EXPECT_FALSE(tripped) << "seed " << seed << " n " << n;
        EXPECT_EQ(s.checked_rows, look == 0 ? 0 : AuditMonitor::look_rows(look - 1, 30));
        continue;
      }
      ++looks_seen;
      EXPECT_EQ(s.checked_rows, n);
      EXPECT_EQ(s.next_check_rows, AuditMonitor::look_rows(look + 1, 30));
      EXPECT_DOUBLE_EQ(s.confidence, AuditMonitor::look_confidence(look, 0.05));
      EXPECT_DOUBLE_EQ(s.upper_bound,
                       clopper_pearson_upper(n, static_cast<int>(s.agreed), s.confidence));
      EXPECT_EQ(tripped, s.upper_bound < 0.9)
          << "seed " << seed << " n " << n << " k " << s.agreed << " bound " << s.upper_bound;
      ++look;
      if (tripped) break;
    }
    EXPECT_GT(looks_seen, 0);
    EXPECT_TRUE(m.tripped()) << "0.8 against 0.9 is caught within 2000 rows";
  }
}

TEST(Audit, LooksGrowGeometricallyAndSpendAtMostDelta) {
  EXPECT_EQ(AuditMonitor::look_rows(0, 50), 50);
  EXPECT_EQ(AuditMonitor::look_rows(1, 50), 63);  // ceil(62.5)
  EXPECT_EQ(AuditMonitor::look_rows(1, 1), 2);    // at least one more row
  for (int j = 0; j < 60; ++j)
    EXPECT_GT(AuditMonitor::look_rows(j + 1, 3), AuditMonitor::look_rows(j, 3)) << j;
  EXPECT_GT(AuditMonitor::look_rows(40, 50), 200000);  // ~50 * 1.25^40: few looks, ever
  double spent = 0;
  for (int j = 0; j < 100000; ++j) spent += 1 - AuditMonitor::look_confidence(j, 0.05);
  EXPECT_LE(spent, 0.05);
  EXPECT_GT(spent, 0.0499);
  EXPECT_DOUBLE_EQ(AuditMonitor::look_confidence(0, 0.05), 1 - 0.05 / 2);
  EXPECT_DOUBLE_EQ(AuditMonitor::look_confidence(3, 0.05), 1 - 0.05 / 20);
}

// Statistical: with the true agreement at the target (the boundary of "the guarantee holds"),
// the monitor may trip with probability at most delta over a long run, however often it looks.
TEST(Audit, FalseTripsAtTheTargetStayBelowDelta) {
  constexpr int kSeeds = 400, kRows = 3000;
  int trips = 0;
  for (int s = 0; s < kSeeds; ++s) trips += rows_to_trip(0.95, 0.95, 0.05, kRows, 1000 + s) > 0;
  // Expected at most 20 (delta * seeds); the union bound makes it far fewer in practice.
  EXPECT_LE(trips, 20) << trips << " of " << kSeeds;
}

TEST(Audit, AGoodSurrogateEssentiallyNeverTrips) {
  constexpr int kSeeds = 300, kRows = 3000;
  int trips = 0;
  for (int s = 0; s < kSeeds; ++s) trips += rows_to_trip(0.98, 0.95, 0.05, kRows, 5000 + s) > 0;
  EXPECT_LE(trips, 1) << trips << " of " << kSeeds;
}

TEST(Audit, ABadSurrogateTripsWithinAFewHundredRows) {
  constexpr int kSeeds = 200;
  std::vector<int> at;
  for (int s = 0; s < kSeeds; ++s) at.push_back(rows_to_trip(0.80, 0.95, 0.05, 5000, 9000 + s));
  EXPECT_EQ(std::count(at.begin(), at.end(), 0), 0) << "some seeds never tripped";
  std::sort(at.begin(), at.end());
  EXPECT_LE(at[kSeeds / 2], 80) << "median rows to trip";
  EXPECT_LE(at.back(), 300) << "slowest";
  // A milder drift (0.90 against 0.95) still trips, just later.
  int slow_trips = 0;
  for (int s = 0; s < 50; ++s) slow_trips += rows_to_trip(0.90, 0.95, 0.05, 3000, 700 + s) > 0;
  EXPECT_EQ(slow_trips, 50);
}

TEST(Audit, ConcurrentRecordsAreAllCounted) {
  AuditMonitor m(0.5, 0.05, {0.5, 50, 3});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&m, t] {
      for (int i = 0; i < 5000; ++i) {
        m.should_audit();
        m.record((i + t) % 4 != 0);
      }
    });
  for (auto& th : threads) th.join();
  AuditState s = m.state();
  EXPECT_EQ(s.rows, 20000);
  EXPECT_EQ(s.agreed, 15000);
  EXPECT_FALSE(s.tripped);
}

// A monitor saved after any row and restored into a fresh one continues exactly as the original:
// the same looks, the same trip, the same state.
TEST(Audit, ARestoredMonitorContinuesExactlyAsTheOriginal) {
  for (int cut : {0, 37, 50, 51, 63, 200}) {
    AuditMonitor original(0.9, 0.05, {0, 50, 0});
    std::mt19937_64 rng(cut);
    std::bernoulli_distribution agree(0.87);
    std::vector<bool> rows(1500);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = agree(rng);
    std::vector<AuditSnapshot> looks;
    original.on_look([&looks](const AuditSnapshot& s) { looks.push_back(s); });
    for (int i = 0; i < cut; ++i)
      original.record(rows[i], i % 3 ? AuditSource::kShadow : AuditSource::kFeedback);
    original.count_unusable(2);
    original.count_dropped();
    const AuditSnapshot saved = original.snapshot();
    AuditMonitor resumed(0.9, 0.05, {0, 50, 0});
    resumed.restore(AuditSnapshot::from_json(nlohmann::json::parse(saved.to_json().dump()), 50));
    EXPECT_EQ(resumed.state().restored_rows, cut);
    for (size_t i = cut; i < rows.size(); ++i) {
      AuditSource src = i % 3 ? AuditSource::kShadow : AuditSource::kFeedback;
      ASSERT_EQ(original.record(rows[i], src), resumed.record(rows[i], src)) << "row " << i;
    }
    EXPECT_EQ(original.snapshot().to_json(), resumed.snapshot().to_json()) << "cut " << cut;
    AuditState a = original.state(), b = resumed.state();
    EXPECT_EQ(a.tripped_at_rows, b.tripped_at_rows);
    EXPECT_DOUBLE_EQ(a.upper_bound, b.upper_bound);
    EXPECT_EQ(a.shadow_rows + a.feedback_rows, a.rows);
    EXPECT_EQ(b.unusable, 2);
    EXPECT_EQ(b.dropped, 1);
    // The sink saw every look, the tripping one included.
    ASSERT_FALSE(looks.empty());
    EXPECT_EQ(looks.front().rows, 50);
    if (a.tripped) {
      EXPECT_TRUE(looks.back().tripped);
    }
  }
}

TEST(Audit, SnapshotsOffTheLookScheduleAreRejected) {
  AuditMonitor m(0.9, 0.05, {0, 50, 0});
  for (int i = 0; i < 70; ++i) m.record(true);
  nlohmann::json good = m.snapshot().to_json();
  EXPECT_NO_THROW(AuditSnapshot::from_json(good, 50));
  EXPECT_THROW(AuditSnapshot::from_json(good, 40), InputError);  // another min_rows
  for (auto [key, value] :
       std::vector<std::pair<std::string, nlohmann::json>>{{"agreed", 71},
                                                           {"rows", -1},
                                                           {"last_rows", 51},
                                                           {"next_look", 3},
                                                           {"tripped", 1},
                                                           {"tripped_at_rows", 50},
                                                           {"feedback_rows", 5},
                                                           {"rows", "70"},
                                                           {"rows", 18446744073709551615ull}}) {
    nlohmann::json bad = good;
    bad[key] = value;
    EXPECT_THROW(AuditSnapshot::from_json(bad, 50), InputError) << key << " " << value;
  }
  nlohmann::json missing = good;
  missing.erase("dropped");
  try {
    AuditSnapshot::from_json(missing, 50);
    ADD_FAILURE() << "accepted a state without \"dropped\"";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("dropped"), std::string::npos) << e.what();
  }
  AuditMonitor used(0.9, 0.05, {0, 50, 0});
  used.record(true);
  EXPECT_THROW(used.restore(AuditSnapshot{}), InputError);  // only before any row
}

}  // namespace
}  // namespace tracer
