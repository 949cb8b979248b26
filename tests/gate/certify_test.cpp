#include "gate/certify.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "gate/bounds.hpp"
#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------------------------
// threshold_sequence

TEST(ThresholdSequence, QuantilesFromStartToFullCoverage) {
  std::vector<float> scores;
  for (int i = 0; i < 1000; ++i) scores.push_back(static_cast<float>(i) / 1000);
  const auto t = threshold_sequence(scores, 1000, 100, 0.01);
  // Coverages 0.10, 0.11, ..., 0.99 and then everything.
  ASSERT_EQ(t.size(), 91u);
  EXPECT_FLOAT_EQ(t[0], 0.900f);  // the 100th highest score accepts 100 rows
  EXPECT_FLOAT_EQ(t[1], 0.890f);
  EXPECT_FLOAT_EQ(t[89], 0.010f);  // coverage 0.99
  EXPECT_EQ(t.back(), -kInf);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_LT(t[i], t[i - 1]);
}

TEST(ThresholdSequence, StartScalesWithCalibrationSize) {
  std::vector<float> scores;
  for (int i = 0; i < 1000; ++i) scores.push_back(static_cast<float>(i) / 1000);
  // 150 rows expected out of a calibration split of 500: start at 30% coverage.
  const auto t = threshold_sequence(scores, 500, 150, 0.05);
  ASSERT_FALSE(t.empty());
  EXPECT_FLOAT_EQ(t[0], 0.700f);
  EXPECT_FLOAT_EQ(t[1], 0.650f);
  EXPECT_EQ(t.back(), -kInf);
  // No minimum: start at one step.
  const auto u = threshold_sequence(scores, 500, 0, 0.25);
  ASSERT_EQ(u.size(), 4u);
  EXPECT_FLOAT_EQ(u[0], 0.750f);
  EXPECT_FLOAT_EQ(u[2], 0.250f);
}

TEST(ThresholdSequence, TiesCollapseToAStrictlyDecreasingSequence) {
  std::vector<float> scores;
  for (int i = 0; i < 300; ++i) scores.push_back(i < 100 ? 0.9f : i < 200 ? 0.5f : 0.1f);
  scores.push_back(std::nanf(""));
  const auto t = threshold_sequence(scores, 300, 10, 0.01);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_FLOAT_EQ(t[0], 0.9f);
  EXPECT_FLOAT_EQ(t[1], 0.5f);
  EXPECT_FLOAT_EQ(t[2], 0.1f);
  EXPECT_EQ(t[3], -kInf);
  // All scores equal: one real threshold, then everything.
  const std::vector<float> same(50, 0.42f);
  const auto s = threshold_sequence(same, 100, 5);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_FLOAT_EQ(s[0], 0.42f);
  EXPECT_EQ(s[1], -kInf);
}

TEST(ThresholdSequence, DegenerateInputsGiveFullCoverageOnly) {
  const std::vector<float> scores = {0.1f, 0.5f, 0.9f};
  EXPECT_EQ(threshold_sequence({}, 100, 10), std::vector<double>{-kInf});
  EXPECT_EQ(threshold_sequence(scores, 0, 10), std::vector<double>{-kInf});
  EXPECT_EQ(threshold_sequence(scores, 100, 100), std::vector<double>{-kInf});
  EXPECT_EQ(threshold_sequence(scores, 100, 500), std::vector<double>{-kInf});
  EXPECT_THROW(threshold_sequence(scores, 100, 10, 0.0), InputError);
  EXPECT_THROW(threshold_sequence(scores, 100, 10, 1.5), InputError);
}

// ---------------------------------------------------------------------------------------------
// certify_fixed_sequence on hand-made data

struct Calib {
  std::vector<float> scores;
  std::vector<uint8_t> agree;
};

// 100 rows with scores 0.00 .. 0.99; the top `good` rows agree, the rest do not.
Calib staircase(int good) {
  Calib c;
  for (int i = 0; i < 100; ++i) {
    c.scores.push_back(static_cast<float>(i) / 100);
    c.agree.push_back(i >= 100 - good ? 1 : 0);
  }
  return c;
}

TEST(CertifyFixedSequence, WalksStrictToLooseAndStopsAtFirstFailure) {
  const Calib c = staircase(80);
  const std::vector<double> t = {0.895, 0.695, 0.495, 0.295, 0.095, -kInf};
  const auto r = certify_fixed_sequence(t, c.scores, c.agree, 0.9, 0.05, 29);
  ASSERT_TRUE(r.certified);
  // 10 rows: skipped; 30, 50, 70 all agree: pass; 90 with 80 agreeing: fail; -inf never walked.
  ASSERT_EQ(r.steps.size(), 5u);
  EXPECT_TRUE(r.steps[0].skipped);
  EXPECT_FALSE(r.steps[0].passed);
  EXPECT_EQ(r.steps[0].n, 10);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(r.steps[i].passed) << i;
    EXPECT_FALSE(r.steps[i].skipped) << i;
    EXPECT_EQ(r.steps[i].n, 10 + 20 * i);
    EXPECT_EQ(r.steps[i].k, r.steps[i].n);
    EXPECT_NEAR(r.steps[i].p_value, std::pow(0.9, r.steps[i].n), 1e-15);
  }
  EXPECT_FALSE(r.steps[4].passed);
  EXPECT_EQ(r.steps[4].n, 90);
  EXPECT_EQ(r.steps[4].k, 80);
  EXPECT_NEAR(r.steps[4].p_value, binomial_upper_tail(90, 80, 0.9), 1e-15);
  EXPECT_GT(r.steps[4].p_value, 0.05);

  EXPECT_DOUBLE_EQ(r.threshold, 0.295);
  EXPECT_EQ(r.n, 70);
  EXPECT_EQ(r.k, 70);
  EXPECT_DOUBLE_EQ(r.coverage, 0.70);
  EXPECT_DOUBLE_EQ(r.agreement, 1.0);
  EXPECT_NEAR(r.lower_bound, std::pow(0.05, 1.0 / 70), 1e-12);
  EXPECT_GE(r.lower_bound, 0.9);
}

TEST(CertifyFixedSequence, DoesNotResumeAfterAFailure) {
  // The second step fails; the looser third would pass on its own but must not be reached.
  Calib c;
  for (int i = 0; i < 300; ++i) {
    c.scores.push_back(static_cast<float>(i) / 300);
    // Top 100 all agree; next 20 all disagree; the 180 below all agree.
    c.agree.push_back(i >= 200 || i < 180 ? 1 : 0);
  }
  const std::vector<double> t = {200.0 / 300 - 1e-6, 180.0 / 300 - 1e-6, -kInf};
  const auto r = certify_fixed_sequence(t, c.scores, c.agree, 0.9, 0.05, 22);
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_TRUE(r.steps[0].passed);
  EXPECT_FALSE(r.steps[1].passed);
  EXPECT_EQ(r.n, 100);
  EXPECT_LT(binomial_upper_tail(300, 280, 0.9), 0.05);  // the unreached step would have passed
}

TEST(CertifyFixedSequence, TiesAtTheThresholdAreAccepted) {
  Calib c;
  for (int i = 0; i < 40; ++i) {
    c.scores.push_back(0.5f);
    c.agree.push_back(1);
  }
  for (int i = 0; i < 40; ++i) {
    c.scores.push_back(0.25f);
    c.agree.push_back(0);
  }
  const std::vector<double> t = {0.5, 0.25};
  const auto r = certify_fixed_sequence(t, c.scores, c.agree, 0.9, 0.05, 1);
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0].n, 40);
  EXPECT_EQ(r.steps[1].n, 80);
  EXPECT_EQ(r.steps[1].k, 40);
  EXPECT_TRUE(r.certified);
  EXPECT_DOUBLE_EQ(r.threshold, 0.5);
  EXPECT_DOUBLE_EQ(r.coverage, 0.5);
}

TEST(CertifyFixedSequence, NothingCertifiedFailsSafe) {
  // Too few rows anywhere: every step skipped.
  const Calib small = staircase(100);
  const std::vector<double> t = {0.5, -kInf};
  const auto r = certify_fixed_sequence(t, small.scores, small.agree, 0.99, 0.05, 299);
  EXPECT_FALSE(r.certified);
  EXPECT_EQ(r.threshold, kInf);
  EXPECT_EQ(r.coverage, 0);
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_TRUE(r.steps[0].skipped && r.steps[1].skipped);
  // First tested step fails: the walk ends there.
  const Calib bad = staircase(50);
  const auto r2 = certify_fixed_sequence(t, bad.scores, bad.agree, 0.95, 0.05, 10);
  EXPECT_FALSE(r2.certified);
  ASSERT_EQ(r2.steps.size(), 1u);
  EXPECT_EQ(r2.threshold, kInf);
  // Empty calibration split.
  const auto r3 = certify_fixed_sequence(t, {}, {}, 0.9, 0.05, 0);
  EXPECT_FALSE(r3.certified);
}

TEST(CertifyFixedSequence, NanScoresAreNeverAccepted) {
  Calib c = staircase(100);
  for (int i = 0; i < 10; ++i) {
    c.scores.push_back(std::nanf(""));
    c.agree.push_back(1);
  }
  const std::vector<double> t = {-kInf};
  const auto r = certify_fixed_sequence(t, c.scores, c.agree, 0.9, 0.05, 22);
  ASSERT_TRUE(r.certified);
  EXPECT_EQ(r.n, 100);
  EXPECT_NEAR(r.coverage, 100.0 / 110, 1e-12);
}

TEST(CertifyFixedSequence, PValueAndLowerBoundAgree) {
  // p <= delta exactly when the Clopper–Pearson lower bound at 1 - delta is >= alpha.
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    Calib c;
    const int n = 50 + static_cast<int>(rng() % 400);
    const double rate = 0.85 + 0.15 * ((rng() >> 11) * 0x1.0p-53);
    for (int i = 0; i < n; ++i) {
      c.scores.push_back(1.0f);
      c.agree.push_back((rng() >> 11) * 0x1.0p-53 < rate ? 1 : 0);
    }
    const std::vector<double> t = {-kInf};
    const auto r = certify_fixed_sequence(t, c.scores, c.agree, 0.9, 0.1, 1);
    ASSERT_EQ(r.steps.size(), 1u);
    const auto& s = r.steps[0];
    const double lb = clopper_pearson_lower(s.n, s.k, 0.9);
    ASSERT_EQ(s.passed, lb >= 0.9) << "n=" << s.n << " k=" << s.k << " p=" << s.p_value;
    if (r.certified) {
      EXPECT_DOUBLE_EQ(r.lower_bound, lb);
    }
  }
}

TEST(CertifyFixedSequence, RejectsBadInput) {
  const Calib c = staircase(100);
  const std::vector<double> ok = {0.5, -kInf};
  const std::vector<double> up = {0.2, 0.5};
  const std::vector<double> dup = {0.5, 0.5};
  EXPECT_THROW(certify_fixed_sequence(up, c.scores, c.agree, 0.9, 0.05, 1), InputError);
  EXPECT_THROW(certify_fixed_sequence(dup, c.scores, c.agree, 0.9, 0.05, 1), InputError);
  const std::vector<uint8_t> short_agree(10, 1);
  EXPECT_THROW(certify_fixed_sequence(ok, c.scores, short_agree, 0.9, 0.05, 1), InputError);
  EXPECT_THROW(certify_fixed_sequence(ok, c.scores, c.agree, 1.0, 0.05, 1), InputError);
  EXPECT_THROW(certify_fixed_sequence(ok, c.scores, c.agree, 0.9, 0.0, 1), InputError);
}

// ---------------------------------------------------------------------------------------------
// Statistical validity: the promise P(true agreement on the handled region < alpha) <= delta,
// checked by counting violations over many independent synthetic worlds whose agreement curve
// is known exactly.

double uniform(std::mt19937_64& rng) { return (rng() >> 11) * 0x1.0p-53; }

// Scores are U(0,1); P(agree | s) = f(s). agreement_above(tau) is the exact agreement of the
// region {s >= tau}: (1 / (1 - tau)) * integral_tau^1 f(s) ds.
struct World {
  const char* name;
  std::function<double(double)> f;
  std::function<double(double)> integral_above;  // integral_t^1 f(s) ds for t in [0, 1]
  double agreement_above(double tau) const {
    const double t = std::clamp(tau, 0.0, 1.0);
    if (t >= 1) return f(1);
    return integral_above(t) / (1 - t);
  }
};

// f = lo below the step point c, hi from there up.
World step_world(const char* name, double c, double lo, double hi) {
  return {name, [=](double s) { return s < c ? lo : hi; },
          [=](double t) { return t >= c ? hi * (1 - t) : hi * (1 - c) + lo * (c - t); }};
}

std::vector<World> worlds(double alpha) {
  return {
      // Smoothly increasing agreement: the boundary is somewhere in the middle.
      {"quadratic", [](double s) { return 0.80 + 0.2 * s * s; },
       [](double t) { return 0.8 * (1 - t) + 0.2 * (1 - t * t * t) / 3; }},
      // A flat region just above alpha, then a cliff: many thresholds sit near the boundary.
      step_world("cliff", 0.5, 0.8, alpha + 0.01),
      // Flat just below alpha: every threshold is a true null, any certification is a violation.
      step_world("plateau_below", 0.3, 0.6, alpha - 0.01),
  };
}

struct Tally {
  int runs = 0;
  int certified = 0;
  int violations = 0;
  int naive_violations = 0;
  int full_coverage = 0;
};

// One experiment: thresholds from a select split, certification on an independent calibration
// split, the truth from the world's exact curve. The naive rule (loosest threshold whose
// empirical agreement reaches alpha) runs on the same data as a negative control.
Tally run_world(const World& w, double alpha, double delta, int runs, int n_select, int n_calib,
                int min_first_rows, uint64_t seed) {
  const int min_rows = min_rows_to_certify(alpha, delta);
  Tally tally;
  std::vector<float> select(n_select), scores(n_calib);
  std::vector<uint8_t> agree(n_calib);
  for (int run = 0; run < runs; ++run) {
    std::mt19937_64 rng(seed * 1000003 + run);
    for (auto& s : select) s = static_cast<float>(uniform(rng));
    const auto thresholds = threshold_sequence(select, n_calib, min_first_rows);
    for (int i = 0; i < n_calib; ++i) {
      const double s = static_cast<float>(uniform(rng));
      scores[i] = static_cast<float>(s);
      agree[i] = uniform(rng) < w.f(s) ? 1 : 0;
    }
    const auto r = certify_fixed_sequence(thresholds, scores, agree, alpha, delta, min_rows);
    ++tally.runs;
    if (r.certified) {
      ++tally.certified;
      if (w.agreement_above(r.threshold) < alpha) ++tally.violations;
      if (r.threshold == -kInf) ++tally.full_coverage;
    }
    // Negative control.
    std::vector<std::pair<float, uint8_t>> rows;
    for (int i = 0; i < n_calib; ++i) rows.emplace_back(scores[i], agree[i]);
    std::sort(rows.begin(), rows.end(), std::greater<>());
    double naive = kInf;
    size_t n = 0;
    int k = 0;
    for (double tau : thresholds) {
      for (; n < rows.size() && rows[n].first >= tau; ++n) k += rows[n].second;
      if (static_cast<int>(n) >= min_rows && k >= alpha * static_cast<double>(n)) naive = tau;
    }
    if (naive < kInf && w.agreement_above(naive) < alpha) ++tally.naive_violations;
  }
  return tally;
}

// Largest violation count still consistent with a rate <= delta: the 99.9% quantile of
// Binomial(runs, delta).
int allowed_violations(int runs, double delta) {
  int c = 0;
  while (binomial_upper_tail(runs, c + 1, delta) > 0.001) ++c;
  return c;
}

TEST(CertifyStatistics, ViolationRateIsAtMostDelta) {
  const int runs = testing::sanitized() ? 250 : 500;
  const int n_select = 2000, n_calib = 2000;
  for (double delta : {0.05, 0.2}) {
    int pooled_runs = 0, pooled_violations = 0;
    for (double alpha : {0.9, 0.95}) {
      const int min_rows = min_rows_to_certify(alpha, delta);
      const int allowed = allowed_violations(runs, delta);
      for (const World& w : worlds(alpha)) {
        const Tally t = run_world(w, alpha, delta, runs, n_select, n_calib, 3 * min_rows,
                                  static_cast<uint64_t>(alpha * 1000 + delta * 100));
        std::printf(
            "  %-14s alpha=%.2f delta=%.2f: certified %3d/%d, violations %3d "
            "(allowed %3d), naive control %3d\n",
            w.name, alpha, delta, t.certified, t.runs, t.violations, allowed, t.naive_violations);
        EXPECT_LE(t.violations, allowed) << w.name << " alpha=" << alpha << " delta=" << delta;
        // The test can fail: a procedure without the bound breaks it in the same worlds.
        EXPECT_GT(t.naive_violations, allowed)
            << "negative control: " << w.name << " alpha=" << alpha << " delta=" << delta;
        pooled_runs += t.runs;
        pooled_violations += t.violations;
      }
    }
    // Pooled over worlds and targets the count is tighter still.
    EXPECT_LE(pooled_violations, allowed_violations(pooled_runs, delta)) << "delta=" << delta;
  }
}

// The fallback procedure (weights on later steps, tested even after the walk stopped) keeps the
// family-wise error at delta: violations counted over the same worlds, with a fifth of delta on
// the loosest step and a tenth on every tenth step.
TEST(CertifyStatistics, FallbackWalkViolationRateIsAtMostDelta) {
  const int runs = testing::sanitized() ? 200 : 400;
  const int n_select = 1000, n_calib = 1000;
  const double delta = 0.1;
  int pooled_runs = 0, pooled_violations = 0, rescued = 0;
  for (double alpha : {0.9, 0.95}) {
    const int min_rows = min_rows_to_certify(alpha, delta);
    for (const World& w : worlds(alpha)) {
      int violations = 0;
      for (int run = 0; run < runs; ++run) {
        std::mt19937_64 rng(static_cast<uint64_t>(alpha * 1e4) * 7919 + run);
        std::vector<float> select(n_select);
        for (auto& x : select) x = static_cast<float>(uniform(rng));
        const auto thresholds = threshold_sequence(select, n_calib, 2 * min_rows);
        std::vector<std::pair<double, int>> rows(n_calib);
        for (auto& r : rows) {
          r.first = static_cast<float>(uniform(rng));
          r.second = uniform(rng) < w.f(r.first) ? 1 : 0;
        }
        std::sort(rows.begin(), rows.end(), std::greater<>());
        std::vector<CertifyStep> steps;
        size_t pos = 0;
        int k = 0;
        for (double tau : thresholds) {
          for (; pos < rows.size() && rows[pos].first >= tau; ++pos) k += rows[pos].second;
          CertifyStep st;
          st.threshold = tau;
          st.n = static_cast<int>(pos);
          st.k = k;
          steps.push_back(st);
        }
        std::vector<double> weights(steps.size(), 0.0);
        for (size_t j = 10; j < steps.size(); j += 10) weights[j] = 0.1;
        double sum = 0;
        for (double x : weights) sum += x;
        if (sum > 0.7) {
          for (auto& x : weights) x *= 0.7 / sum;
        }
        weights.back() += 0.2;
        const auto r = walk_steps(steps, rows.size(), alpha, delta, min_rows, weights);
        const auto plain = walk_steps(steps, rows.size(), alpha, delta, min_rows);
        rescued += r.certified && (!plain.certified || r.n > plain.n);
        if (r.certified && w.agreement_above(r.threshold) < alpha) ++violations;
      }
      std::printf("  fallback %-14s alpha=%.2f: violations %3d of %d\n", w.name, alpha, violations,
                  runs);
      EXPECT_LE(violations, allowed_violations(runs, delta)) << w.name << " alpha=" << alpha;
      pooled_runs += runs;
      pooled_violations += violations;
    }
  }
  EXPECT_LE(pooled_violations, allowed_violations(pooled_runs, delta));
  EXPECT_GT(rescued, 0) << "the weights never changed a result: the test could not fail";
}

TEST(CertifyFallback, RejectsBadWeights) {
  std::vector<CertifyStep> steps(2);
  steps[0].n = steps[1].n = 100;
  steps[0].k = steps[1].k = 100;
  const std::vector<double> wrong_size = {0.5};
  const std::vector<double> negative = {-0.1, 0.2};
  const std::vector<double> too_much = {0.7, 0.7};
  EXPECT_THROW(walk_steps(steps, 100, 0.9, 0.05, 1, wrong_size), InputError);
  EXPECT_THROW(walk_steps(steps, 100, 0.9, 0.05, 1, negative), InputError);
  EXPECT_THROW(walk_steps(steps, 100, 0.9, 0.05, 1, too_much), InputError);
}

TEST(CertifyStatistics, CertifiesFullCoverageWhenAgreementIsHighEverywhere) {
  const int runs = testing::sanitized() ? 60 : 200;
  for (double alpha : {0.9, 0.95}) {
    const double delta = 0.05;
    const World w{"high", [alpha](double s) { return alpha + 0.03 + 0.02 * s; },
                  [alpha](double t) { return (alpha + 0.03) * (1 - t) + 0.01 * (1 - t * t); }};
    // The first step is sized to pass at the known agreement floor with 80% power.
    const int first = rows_for_power(alpha, delta, alpha + 0.03, 0.8);
    ASSERT_GT(first, 0);
    const Tally t = run_world(w, alpha, delta, runs, 2000, 2000, first, 99);
    std::printf(
        "  high-everywhere alpha=%.2f first step %d rows: certified %d/%d, full "
        "coverage %d\n",
        alpha, first, t.certified, t.runs, t.full_coverage);
    EXPECT_EQ(t.violations, 0);
    EXPECT_GE(t.full_coverage, 0.8 * runs) << "alpha=" << alpha;
  }
}

TEST(CertifyStatistics, RowsForPowerMeetsItsPromise) {
  EXPECT_EQ(rows_for_power(0.9, 0.05, 0.9), -1);
  EXPECT_EQ(rows_for_power(0.9, 0.05, 0.85), -1);
  EXPECT_EQ(rows_for_power(0.95, 0.05, 1.0), 59);  // all agree: the minimum already passes
  for (double alpha : {0.8, 0.9, 0.95, 0.99}) {
    for (double gap : {0.005, 0.02, 0.05}) {
      const double a = std::min(alpha + gap, 0.999);
      const int n = rows_for_power(alpha, 0.05, a, 0.8);
      ASSERT_GT(n, 0);
      // Exact power at n: P(Bin(n, a) >= critical count).
      int kc = 0;
      while (binomial_upper_tail(n, kc, alpha) > 0.05) ++kc;
      EXPECT_GE(binomial_upper_tail(n, kc, a), 0.8) << alpha << " " << gap;
      // And not wildly oversized: at 70% of n the power is below target.
      const int m = std::max(min_rows_to_certify(alpha, 0.05), (7 * n) / 10);
      int km = 0;
      while (binomial_upper_tail(m, km, alpha) > 0.05) ++km;
      if (m < n) {
        EXPECT_LT(binomial_upper_tail(m, km, a), 0.8) << alpha << " " << gap;
      }
    }
  }
  // Smaller gaps need more rows.
  EXPECT_GT(rows_for_power(0.9, 0.05, 0.92), rows_for_power(0.9, 0.05, 0.95));
}

}  // namespace
}  // namespace tracer
