#include "gate/bounds.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "util/error.hpp"

namespace tracer {
namespace {

// Sum_{j >= k} C(n, j) p^j (1-p)^(n-j) term by term in long double: the reference for small n.
double direct_tail(int n, int k, double p) {
  const long double q = 1.0L - static_cast<long double>(p);
  long double coef = 1, sum = 0;  // coef = C(n, j)
  for (int j = 0; j <= n; ++j) {
    if (j > 0) coef = coef * (n - j + 1) / j;
    if (j >= k) sum += coef * std::pow(static_cast<long double>(p), j) * std::pow(q, n - j);
  }
  return static_cast<double>(sum);
}

void expect_rel_near(double got, double want, double rel, const char* what) {
  if (want == 0) {
    EXPECT_EQ(got, 0) << what;
    return;
  }
  EXPECT_LE(std::fabs(got - want), rel * std::fabs(want))
      << what << ": got " << got << " want " << want;
}

TEST(BinomialTail, MatchesDirectSummationForSmallN) {
  const std::vector<double> ps = {1e-6, 0.01, 0.1, 0.25, 0.3, 0.5, 0.77, 0.9, 0.95, 0.99, 1 - 1e-6};
  int checked = 0;
  for (int n = 1; n <= 60; ++n) {
    for (int k = 0; k <= n; ++k) {
      for (double p : ps) {
        const double want = direct_tail(n, k, p);
        const double got = binomial_upper_tail(n, k, p);
        ASSERT_TRUE(std::isfinite(got));
        if (want < 1e-290) continue;  // below double's normal range the reference is inexact
        ASSERT_LE(std::fabs(got - want), 1e-12 * want)
            << "n=" << n << " k=" << k << " p=" << p << " got " << got << " want " << want;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 18000);
}

TEST(BinomialTail, MatchesHighPrecisionReferenceForLargeN) {
  // Reference values from exact summation at 50 digits (mpmath), p taken as the same double.
  struct Case {
    int n, k;
    double p, tail;
  };
  const std::vector<Case> cases = {
      {1000000, 950000, 0.95, 0.50118980422804723274},
      {1000000, 950500, 0.95, 0.010872176589639551947},
      {1000000, 951000, 0.95, 2.1131824147882881982e-6},
      {1000000, 952000, 0.95, 1.321056560961296417e-20},
      {1000000, 949000, 0.95, 0.99999764054989185994},
      {1000000, 500, 0.0004, 8.0678436394523613657e-7},
      {100000, 20, 0.0001, 0.0034526626983106603959},
      {1000000, 999990, 0.99999, 0.58303975019972192036},
      {2000, 1900, 0.95, 0.52657093854108476752},
      {500000, 250600, 0.5, 0.044976793338032922636},
  };
  for (const auto& c : cases) {
    expect_rel_near(binomial_upper_tail(c.n, c.k, c.p), c.tail, 1e-10, "large-n tail");
  }
}

TEST(BinomialTail, ClosedFormsAndTinyTails) {
  // P(X >= n) = p^n, P(X >= 1) = 1 - (1-p)^n.
  for (int n : {1, 7, 100, 1000, 100000}) {
    for (double p : {1e-300, 1e-9, 0.2, 0.5, 0.95, 0.999}) {
      const double all = std::pow(p, n);
      if (all > 1e-290) expect_rel_near(binomial_upper_tail(n, n, p), all, 1e-12, "p^n");
      expect_rel_near(binomial_upper_tail(n, 1, p), -std::expm1(n * std::log1p(-p)), 1e-12,
                      "1-(1-p)^n");
    }
  }
  expect_rel_near(binomial_upper_tail(1000, 1000, 0.5), std::ldexp(1.0, -1000), 1e-12, "2^-1000");
  // Underflow clamps to zero, never NaN or negative.
  for (int n : {2000, 100000, 1000000}) {
    const double t = binomial_upper_tail(n, n, 0.5);
    EXPECT_EQ(t, 0);
    EXPECT_FALSE(std::isnan(binomial_upper_tail(n, n - 1, 1e-10)));
    EXPECT_GE(binomial_upper_tail(n, n - 1, 1e-10), 0);
  }
  expect_rel_near(binomial_upper_tail(1000000, 1, 1e-300), 1e-294, 1e-12, "tiny p");
}

TEST(BinomialTail, EdgeCases) {
  EXPECT_EQ(binomial_upper_tail(10, 0, 0.3), 1);
  EXPECT_EQ(binomial_upper_tail(10, -5, 0.3), 1);
  EXPECT_EQ(binomial_upper_tail(10, 11, 0.3), 0);
  EXPECT_EQ(binomial_upper_tail(0, 0, 0.3), 1);
  EXPECT_EQ(binomial_upper_tail(0, 1, 0.3), 0);
  EXPECT_EQ(binomial_upper_tail(10, 1, 0.0), 0);
  EXPECT_EQ(binomial_upper_tail(10, 10, 1.0), 1);
  EXPECT_EQ(binomial_upper_tail(10, 0, 0.0), 1);
  EXPECT_THROW(binomial_upper_tail(-1, 0, 0.5), InputError);
  EXPECT_THROW(binomial_upper_tail(10, 3, -0.1), InputError);
  EXPECT_THROW(binomial_upper_tail(10, 3, 1.5), InputError);
  EXPECT_THROW(binomial_upper_tail(10, 3, std::nan("")), InputError);
}

TEST(BinomialTail, ComplementAndMonotonicity) {
  // P(X >= k) + P(X <= k-1) = 1, and P(X <= k-1 | p) = P(n-X >= n-k+1 | 1-p). Dyadic p keeps
  // 1 - p exact.
  for (int n : {1, 5, 59, 300, 5000, 200000}) {
    for (double p : {0.125, 0.25, 0.5, 0.75, 0.9375}) {
      double prev = 1;
      const int step = std::max(1, n / 97);
      for (int k = 0; k <= n + 1; k += (k < n - 3 ? step : 1)) {
        const double up = binomial_upper_tail(n, k, p);
        const double down = binomial_upper_tail(n, n - k + 1, 1 - p);
        ASSERT_NEAR(up + down, 1.0, 1e-13) << "n=" << n << " k=" << k << " p=" << p;
        ASSERT_LE(up, prev + 1e-15) << "tail must not rise with k";
        prev = up;
      }
    }
    double prev = 0;
    for (int i = 0; i <= 200; ++i) {
      const double t = binomial_upper_tail(n, (n + 1) / 2, i / 200.0);
      ASSERT_GE(t, prev - 1e-15) << "tail must not fall with p";
      prev = t;
    }
  }
}

TEST(BinomialTail, FastForMillionsOfTrials) {
  // The continued fraction is slowest near the mean; a bisection calls it ~60 times.
  const auto t0 = std::chrono::steady_clock::now();
  double acc = 0;
  for (int i = 0; i < 60; ++i) acc += binomial_upper_tail(1000000, 950000 + i, 0.95);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(acc, 0);
  EXPECT_LT(secs, 2.0);
}

TEST(ClopperPearson, KnownValues) {
  // 22 of 22 at one-sided 90%: 0.1^(1/22).
  EXPECT_NEAR(clopper_pearson_lower(22, 22, 0.9), 0.9006, 5e-5);
  EXPECT_NEAR(clopper_pearson_lower(22, 22, 0.9), std::pow(0.1, 1.0 / 22), 1e-14);
  struct Case {
    int n, k;
    double conf, lower;
  };
  // Reference: the root of I_p(k, n-k+1) = 1 - conf at 50 digits (mpmath).
  const std::vector<Case> cases = {
      {100, 95, 0.95, 0.89774662235672550521},  {2000, 1900, 0.95, 0.94122968576932756523},
      {50, 3, 0.9, 0.022243984694506102495},    {10, 1, 0.99, 0.001004528708249949811},
      {300, 299, 0.95, 0.98428544510841604933},
  };
  for (const auto& c : cases) {
    expect_rel_near(clopper_pearson_lower(c.n, c.k, c.conf), c.lower, 1e-11, "cp lower");
    expect_rel_near(clopper_pearson_upper(c.n, c.n - c.k, c.conf), 1 - c.lower, 1e-11, "cp upper");
  }
}

TEST(ClopperPearson, ClosedFormsAtTheEnds) {
  for (int n : {1, 2, 10, 59, 1000, 1000000}) {
    for (double conf : {0.5, 0.8, 0.9, 0.95, 0.99, 0.999}) {
      const double all = std::pow(1 - conf, 1.0 / n);
      EXPECT_NEAR(clopper_pearson_lower(n, n, conf), all, 1e-12 * all);
      EXPECT_NEAR(clopper_pearson_upper(n, 0, conf), 1 - all, 1e-12 * (1 - all) + 1e-16);
      EXPECT_EQ(clopper_pearson_lower(n, 0, conf), 0);
      EXPECT_EQ(clopper_pearson_upper(n, n, conf), 1);
    }
  }
  EXPECT_EQ(clopper_pearson_lower(0, 0, 0.95), 0);
  EXPECT_EQ(clopper_pearson_upper(0, 0, 0.95), 1);
}

TEST(ClopperPearson, InvertsTheTailAndBracketsTheEstimate) {
  for (int n : {1, 3, 20, 59, 137, 1000, 20000, 1000000}) {
    for (int k : {1, n / 3, n / 2, (9 * n) / 10, n - 1}) {
      if (k < 1 || k >= n) continue;
      for (double conf : {0.8, 0.95, 0.995}) {
        const double lo = clopper_pearson_lower(n, k, conf);
        const double hi = clopper_pearson_upper(n, k, conf);
        const double phat = static_cast<double>(k) / n;
        ASSERT_LT(lo, phat);
        ASSERT_GT(hi, phat);
        // Definition: P(Bin(n, lo) >= k) = 1 - conf; conservative rounding keeps it below.
        const double at = binomial_upper_tail(n, k, lo);
        ASSERT_NEAR(at, 1 - conf, 1e-9 * (1 - conf)) << "n=" << n << " k=" << k;
        ASSERT_LE(at, 1 - conf);
        // Just above the bound the tail already exceeds 1 - conf: the bound is tight.
        ASSERT_GT(binomial_upper_tail(n, k, lo * (1 + 1e-9) + 1e-300), 1 - conf);
        // Symmetry: the upper bound is the lower bound of the complement.
        ASSERT_DOUBLE_EQ(hi, 1 - clopper_pearson_lower(n, n - k, conf));
      }
    }
  }
}

TEST(ClopperPearson, NestedInConfidenceAndRejectsBadInput) {
  double prev = 1;
  for (double conf : {0.5, 0.8, 0.9, 0.95, 0.99, 0.999}) {
    const double lo = clopper_pearson_lower(200, 180, conf);
    EXPECT_LT(lo, prev);
    prev = lo;
  }
  EXPECT_THROW(clopper_pearson_lower(10, 11, 0.95), InputError);
  EXPECT_THROW(clopper_pearson_lower(10, -1, 0.95), InputError);
  EXPECT_THROW(clopper_pearson_lower(10, 5, 1.0), InputError);
  EXPECT_THROW(clopper_pearson_upper(10, 5, 0.0), InputError);
  EXPECT_THROW(clopper_pearson_upper(10, 5, std::nan("")), InputError);
}

TEST(MinRowsToCertify, KnownValuesAndDefinition) {
  EXPECT_EQ(min_rows_to_certify(0.95, 0.05), 59);
  EXPECT_EQ(min_rows_to_certify(0.99, 0.05), 299);
  EXPECT_EQ(min_rows_to_certify(0.9, 0.1), 22);
  EXPECT_EQ(min_rows_to_certify(0.5, 0.25), 2);  // exact power: no off-by-one from rounding
  EXPECT_EQ(min_rows_to_certify(0.5, 0.125), 3);
  EXPECT_EQ(min_rows_to_certify(0.5, 0.9), 1);
  for (double alpha : {0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 0.999}) {
    for (double delta : {0.01, 0.05, 0.1, 0.2}) {
      const int n = min_rows_to_certify(alpha, delta);
      // n of n agreeing certifies; n-1 of n-1 cannot.
      EXPECT_LE(binomial_upper_tail(n, n, alpha), delta * (1 + 1e-12));
      if (n > 1) {
        EXPECT_GT(binomial_upper_tail(n - 1, n - 1, alpha), delta);
      }
    }
  }
  EXPECT_THROW(min_rows_to_certify(1.0, 0.05), InputError);
  EXPECT_THROW(min_rows_to_certify(0.0, 0.05), InputError);
  EXPECT_THROW(min_rows_to_certify(0.9, 0.0), InputError);
  EXPECT_THROW(min_rows_to_certify(0.9, 1.0), InputError);
}

TEST(BinomialTest, PValueIsSuperUniformAtTheBoundary) {
  // The certification test rejects H0: agreement < alpha when P(Bin(n, alpha) >= k) <= delta.
  // Exactly, by enumeration over k: when the true agreement is alpha (or below) it rejects with
  // probability <= delta, and not far below it for large n (the test is not vacuous).
  for (int n : {10, 59, 100, 299, 500, 2000}) {
    for (double alpha : {0.9, 0.95, 0.99}) {
      for (double delta : {0.05, 0.2}) {
        for (double truth : {alpha, alpha - 0.01}) {
          long double reject = 0;
          for (int k = 0; k <= n; ++k) {
            if (binomial_upper_tail(n, k, alpha) > delta) continue;
            const long double lp = std::lgamma(n + 1.0L) - std::lgamma(k + 1.0L) -
                                   std::lgamma(n - k + 1.0L) + k * std::log(truth * 1.0L) +
                                   (n - k) * std::log1p(-truth * 1.0L);
            reject += std::exp(lp);
          }
          ASSERT_LE(static_cast<double>(reject), delta * (1 + 1e-9))
              << "n=" << n << " alpha=" << alpha << " delta=" << delta << " truth=" << truth;
          if (n == 2000 && truth == alpha) {
            EXPECT_GT(static_cast<double>(reject), delta / 2);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tracer
