#include "gate/bounds.hpp"

#include <cmath>
#include <string>

#include "util/error.hpp"

namespace tracer {
namespace {

constexpr double kLn2Pi = 1.837877066409345483560659472811;      // log(2 pi)
constexpr double kLnSqrt2Pi = 0.918938533204672741780329736406;  // log(sqrt(2 pi))

// log(x!) - log(sqrt(2 pi x) (x/e)^x): the Stirling remainder (Loader 2000). The series is used
// for large x, where subtracting two huge logs would lose the digits that matter.
double stirlerr(double x) {
  constexpr double S0 = 1.0 / 12, S1 = 1.0 / 360, S2 = 1.0 / 1260, S3 = 1.0 / 1680, S4 = 1.0 / 1188;
  if (x <= 15.0) {
    if (x <= 0) return 0;
    return std::lgamma(x + 1.0) - (x + 0.5) * std::log(x) + x - kLnSqrt2Pi;
  }
  const double xx = x * x;
  if (x > 500) return (S0 - S1 / xx) / x;
  if (x > 80) return (S0 - (S1 - S2 / xx) / xx) / x;
  if (x > 35) return (S0 - (S1 - (S2 - S3 / xx) / xx) / xx) / x;
  return (S0 - (S1 - (S2 - (S3 - S4 / xx) / xx) / xx) / xx) / x;
}

// x log(x / np) + np - x, computed without cancellation when x is close to np (Loader 2000).
double bd0(double x, double np) {
  if (std::fabs(x - np) < 0.1 * (x + np)) {
    double v = (x - np) / (x + np);
    double s = (x - np) * v;
    double ej = 2 * x * v;
    v = v * v;
    for (int j = 1; j < 1000; ++j) {
      ej *= v;
      const double s1 = s + ej / (2 * j + 1);
      if (s1 == s) return s1;
      s = s1;
    }
    return s;
  }
  return x * std::log(x / np) + np - x;
}

// log P(X = x) for X ~ Binomial(n, p), q = 1 - p, with 0 < p < 1 and 0 <= x <= n.
double log_dbinom(double x, double n, double p, double q) {
  if (x == 0) {
    if (n == 0) return 0;
    return p < 0.1 ? -bd0(n, n * q) - n * p : n * std::log(q);
  }
  if (x == n) return q < 0.1 ? -bd0(n, n * p) - n * q : n * std::log(p);
  const double lc = stirlerr(n) - stirlerr(x) - stirlerr(n - x) - bd0(x, n * p) - bd0(n - x, n * q);
  const double lf = kLn2Pi + std::log(x) + std::log1p(-x / n);
  return lc - 0.5 * lf;
}

// Continued fraction of the incomplete beta function (Numerical Recipes' betacf, modified Lentz).
// Converges fast for x < (a + 1) / (a + b + 2); needs O(sqrt(max(a, b))) terms near there.
double beta_cf(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  constexpr double kEps = 1e-15;
  constexpr int kMaxIter = 1000000;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1;
  double d = 1 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= kMaxIter; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < kEps) break;
  }
  return h;
}

void check_confidence(double confidence) {
  if (!(confidence > 0 && confidence < 1))
    throw InputError("confidence must be strictly between 0 and 1, got " +
                     std::to_string(confidence));
}

void check_counts(int n, int k) {
  if (n < 0 || k < 0 || k > n)
    throw InputError("binomial bound needs 0 <= k <= n, got k=" + std::to_string(k) +
                     " n=" + std::to_string(n));
}

}  // namespace

double binomial_upper_tail(int n, int k, double p) {
  if (n < 0) throw InputError("binomial tail: n must be >= 0, got " + std::to_string(n));
  if (!(p >= 0 && p <= 1))
    throw InputError("binomial tail: p must be in [0, 1], got " + std::to_string(p));
  if (k <= 0) return 1;
  if (k > n) return 0;
  if (p == 0) return 0;
  if (p == 1) return 1;
  const double q = 1 - p;
  const double dn = n, dk = k;
  // P(X >= k) = I_p(k, n-k+1). With a = k, b = n-k+1 the beta prefactor
  // p^a q^b / (a B(a,b)) equals q * P(X = k), and p^a q^b / (b B(a,b)) equals p * P(X = k-1).
  if (p < (dk + 1) / (dn + 3)) {
    const double log_tail =
        log_dbinom(dk, dn, p, q) + std::log(q) + std::log(beta_cf(dk, dn - dk + 1, p));
    const double tail = std::exp(log_tail);
    return tail < 1 ? tail : 1;
  }
  const double log_head =
      log_dbinom(dk - 1, dn, p, q) + std::log(p) + std::log(beta_cf(dn - dk + 1, dk, q));
  const double tail = 1 - std::exp(log_head);
  return tail > 0 ? tail : 0;
}

double clopper_pearson_lower(int n, int k, double confidence) {
  check_confidence(confidence);
  check_counts(n, k);
  if (k == 0) return 0;
  const double target = 1 - confidence;
  if (k == n) return std::exp(std::log(target) / n);
  // The tail rises with p; bisect to the last representable double below the root. The result
  // is the bracket's low end, where the tail is still below target: never above the true bound.
  double lo = 0, hi = 1;
  for (int it = 0; it < 2200; ++it) {
    const double mid = lo + 0.5 * (hi - lo);
    if (mid <= lo || mid >= hi) break;
    if (binomial_upper_tail(n, k, mid) < target) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

double clopper_pearson_upper(int n, int k, double confidence) {
  check_confidence(confidence);
  check_counts(n, k);
  if (k == n) return 1;
  if (k == 0) return -std::expm1(std::log1p(-confidence) / n);
  // X <= k under p  <=>  n - X >= n - k under 1 - p.
  return 1 - clopper_pearson_lower(n, n - k, confidence);
}

int min_rows_to_certify(double alpha, double delta) {
  if (!(alpha > 0 && alpha < 1))
    throw InputError("target agreement alpha must be strictly between 0 and 1, got " +
                     std::to_string(alpha));
  if (!(delta > 0 && delta < 1))
    throw InputError("risk delta must be strictly between 0 and 1, got " + std::to_string(delta));
  const double ratio = std::log(delta) / std::log(alpha);
  if (ratio > 1e9) throw InputError("alpha too close to 1: certification would need >1e9 rows");
  // Correct the rounding of the log ratio against the defining inequality alpha^n <= delta.
  int n = static_cast<int>(std::ceil(ratio));
  if (n < 1) n = 1;
  while (n > 1 && std::pow(alpha, n - 1) <= delta) --n;
  while (std::pow(alpha, n) > delta) ++n;
  return n;
}

double test_power(int n, double agreement, double alpha, double delta) {
  if (n <= 0) return 0;
  // Smallest k whose p-value passes; the tail is decreasing in k.
  int lo = 0, hi = n + 1;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (binomial_upper_tail(n, mid, alpha) <= delta)
      hi = mid;
    else
      lo = mid + 1;
  }
  if (lo > n) return 0;
  return binomial_upper_tail(n, lo, agreement);
}

}  // namespace tracer
