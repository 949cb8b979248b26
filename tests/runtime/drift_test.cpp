#include "runtime/drift.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "util/error.hpp"

namespace tracer {
namespace {

std::vector<float> uniform_scores(size_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(u(rng));
  return v;
}

DriftReference reference(size_t n, uint64_t seed) {
  auto s = uniform_scores(n, 0, 1, seed);
  std::vector<uint8_t> handled(n), ood(n);
  for (size_t i = 0; i < n; ++i) handled[i] = s[i] > 0.2f, ood[i] = s[i] < 0.03f;
  return DriftReference::from_calibrate(s, handled, ood);
}

TEST(Drift, ReferenceTableAndCdf) {
  DriftReference r = reference(5000, 1);
  EXPECT_EQ(r.rows, 5000);
  EXPECT_EQ(r.score_quantiles.size(), DriftReference::kTablePoints);
  EXPECT_NEAR(r.handled_share, 0.8, 0.02);
  EXPECT_NEAR(r.ood_share, 0.03, 0.01);
  EXPECT_EQ(r.cdf(-1), 0);
  EXPECT_EQ(r.cdf(2), 1);
  EXPECT_NEAR(r.cdf(0.5), 0.5, 0.02);
  double prev = 0;
  for (double x = 0; x <= 1; x += 0.01) {
    EXPECT_GE(r.cdf(x), prev);
    prev = r.cdf(x);
  }
  // NaN scores count as 0, as the router scores garbage.
  std::vector<float> s = {std::nanf(""), 0.5f, 0.7f};
  std::vector<uint8_t> f(3, 0);
  EXPECT_EQ(DriftReference::from_calibrate(s, f, f).score_quantiles.front(), 0.f);
  std::vector<uint8_t> short_flags(2, 0);
  EXPECT_THROW(DriftReference::from_calibrate(s, short_flags, f), InputError);
}

TEST(Drift, JsonRoundTripAndMalformedSections) {
  DriftReference r = reference(1000, 2);
  DriftReference back = DriftReference::from_json(nlohmann::json::parse(r.to_json().dump()));
  EXPECT_EQ(back.rows, r.rows);
  EXPECT_EQ(back.score_quantiles, r.score_quantiles);
  EXPECT_DOUBLE_EQ(back.handled_share, r.handled_share);
  EXPECT_TRUE(DriftReference::from_json(nullptr).empty());
  EXPECT_TRUE(DriftReference::from_json({{"score_quantiles", "x"}}).empty());
  EXPECT_TRUE(DriftReference::from_json({{"score_quantiles", {0.5, 0.2}}, {"rows", 2}}).empty());
  EXPECT_TRUE(DriftReference::from_json({{"score_quantiles", {0.1, 0.2}}}).empty());  // no rows
}

TEST(Drift, NotAvailableWithoutReferenceOrRows) {
  DriftOptions o;
  auto live = uniform_scores(500, 0, 1, 3);
  DriftReport none = compare_drift(DriftReference{}, live, 400, 10, o);
  EXPECT_FALSE(none.available);
  EXPECT_FALSE(none.drift);
  EXPECT_NE(none.message.find("refit"), std::string::npos);
  auto few = uniform_scores(50, 0, 1, 4);
  DriftReport collecting = compare_drift(reference(1000, 5), few, 40, 1, o);
  EXPECT_FALSE(collecting.available);
  EXPECT_NE(collecting.message.find("50 of 200"), std::string::npos);
}

// False alarms: live traffic from the reference's own distribution. At level 0.01 about 1% of
// checks may fire (the asymptotic p-value is conservative, so usually fewer).
TEST(Drift, RarelyFiresOnTrafficLikeTheTraces) {
  DriftOptions o;
  o.level = 0.01;
  int fired = 0;
  const int runs = 300;
  for (int seed = 0; seed < runs; ++seed) {
    DriftReference ref = reference(2000, 100 + seed);
    auto live = uniform_scores(800, 0, 1, 10000 + seed);
    DriftReport r = compare_drift(ref, live, 600, 20, o);
    ASSERT_TRUE(r.available);
    fired += r.drift;
  }
  EXPECT_LE(fired, 9) << fired << " false alarms in " << runs;  // 1% expected: 3 (+ slack)
}

TEST(Drift, FiresWhenLiveScoresFallAndOnlyThen) {
  DriftOptions o = kFileDriftOptions;  // level 1e-4
  int lower = 0, higher = 0;
  for (int seed = 0; seed < 50; ++seed) {
    DriftReference ref = reference(2000, 200 + seed);
    // 15% of live inputs become unsure (scores near 0): the kind of shift that costs agreement.
    auto live = uniform_scores(1000, 0, 1, 300 + seed);
    for (size_t i = 0; i < 150; ++i) live[i] = live[i] * 0.1f;
    lower += compare_drift(ref, live, 700, 30, o).drift;
    // Live traffic more confident than calibrate is not a warning (one-sided test).
    auto sure = uniform_scores(1000, 0.2, 1, 400 + seed);
    higher += compare_drift(ref, sure, 1000, 0, o).drift;
  }
  EXPECT_GE(lower, 45);
  EXPECT_EQ(higher, 0);
}

// The upper envelope never falls below the exact calibrate CDF, and exceeds it by at most one
// table step.
TEST(Drift, UpperCdfBoundsTheExactShareFromAbove) {
  for (size_t n : {size_t{40}, size_t{257}, size_t{3001}}) {
    auto s = uniform_scores(n, 0, 1, 40 + n);
    std::vector<uint8_t> f(n, 0);
    DriftReference r = DriftReference::from_calibrate(s, f, f);
    std::sort(s.begin(), s.end());
    const double step = 1.0 / (r.score_quantiles.size() - 1);
    for (double x = -0.01; x <= 1.01; x += 0.0007) {
      const double exact =
          double(std::upper_bound(s.begin(), s.end(), static_cast<float>(x)) - s.begin()) / n;
      EXPECT_GE(r.cdf_upper(x) + 1e-12, exact) << "n " << n << " x " << x;
      EXPECT_LE(r.cdf_upper(x), exact + step + 1.0 / n) << "n " << n << " x " << x;
    }
  }
}

}  // namespace
}  // namespace tracer
