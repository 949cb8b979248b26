#include "gate/certify.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "gate/bounds.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_level(const char* name, double v) {
  if (!(v > 0 && v < 1))
    throw InputError(std::string(name) + " must be strictly between 0 and 1, got " +
                     std::to_string(v));
}

}  // namespace

std::vector<double> threshold_sequence(std::span<const float> select_scores, size_t calib_size,
                                       int min_first_rows, double step) {
  if (!(step > 0 && step <= 1))
    throw InputError("threshold step must be in (0, 1], got " + std::to_string(step));
  std::vector<float> sorted;
  sorted.reserve(select_scores.size());
  for (float s : select_scores)
    if (!std::isnan(s)) sorted.push_back(s);
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());

  std::vector<double> out;
  const size_t m = sorted.size();
  double start = 1;
  if (calib_size > 0) start = std::max(step, static_cast<double>(min_first_rows) / calib_size);
  if (m > 0) {
    for (int i = 0;; ++i) {
      const double c = start + i * step;  // multiply, not accumulate: no drift over 100 steps
      if (c >= 1 - 1e-9) break;
      // The j-th highest select score accepts at least j select rows (more with ties).
      size_t j = static_cast<size_t>(std::ceil(c * static_cast<double>(m) - 1e-9));
      j = std::clamp<size_t>(j, 1, m);
      const double tau = sorted[j - 1];
      if (out.empty() || tau < out.back()) out.push_back(tau);
    }
  }
  // The loosest step accepts everything, whatever the calibration scores are.
  if (out.empty() || out.back() > -kInf) out.push_back(-kInf);
  return out;
}

int rows_for_power(double alpha, double delta, double agreement, double power, int max_rows) {
  check_level("target agreement alpha", alpha);
  check_level("risk delta", delta);
  check_level("power", power);
  if (!(agreement > alpha) || agreement > 1) return -1;
  // Power is a sawtooth in n (the critical count is an integer), so scan rather than bisect;
  // steps of ~1.5% of n keep this to a few hundred tail evaluations.
  for (int n = min_rows_to_certify(alpha, delta); n <= max_rows; n += std::max(1, n / 64)) {
    // Smallest k whose p-value passes: the tail falls with k.
    int lo = 0, hi = n + 1;
    while (lo < hi) {
      const int mid = lo + (hi - lo) / 2;
      if (binomial_upper_tail(n, mid, alpha) <= delta) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    if (lo <= n && binomial_upper_tail(n, lo, agreement) >= power) return n;
  }
  return -1;
}

CertifyResult walk_steps(std::vector<CertifyStep> steps, size_t total_rows, double alpha,
                         double delta, int min_rows, std::span<const double> weights) {
  check_level("target agreement alpha", alpha);
  check_level("risk delta", delta);
  double weight_sum = 0;
  if (!weights.empty()) {
    if (weights.size() != steps.size())
      throw InputError("certify: " + std::to_string(weights.size()) + " weights for " +
                       std::to_string(steps.size()) + " steps");
    for (double w : weights) {
      if (!std::isfinite(w) || w < 0) throw InputError("certify: weights must be >= 0");
      weight_sum += w;
    }
    if (weight_sum > 1 + 1e-9) throw InputError("certify: weights must sum to at most 1");
  }
  CertifyResult result;
  result.threshold = kInf;
  bool first = true, prev_passed = false;
  double prev_level = 0, carry = 0;
  for (size_t j = 0; j < steps.size(); ++j) {
    CertifyStep st = steps[j];
    st.p_value = binomial_upper_tail(st.n, st.k, alpha);
    const double own = weights.empty() ? 0 : weights[j];
    if (st.n < min_rows) {
      // Too few rows to pass at all (with min_rows = min_rows_to_certify); testing it would end
      // the walk before it starts. n does not depend on labels, so skipping keeps the sequence
      // fixed.
      st.skipped = true;
      carry += own;
      result.steps.push_back(st);
      continue;
    }
    double share = own + carry;
    carry = 0;
    if (first) share += 1 - std::min(1.0, weight_sum);
    first = false;
    st.level = std::min(1.0, share) * delta + (prev_passed ? prev_level : 0);
    if (st.level <= 0) {
      // Nothing left to test this step with: the walk has stopped. Keep going only while a
      // later step holds weight of its own.
      bool later = false;
      for (size_t r = j + 1; r < weights.size() && !later; ++r) later = weights[r] > 0;
      if (!later) break;
      result.steps.push_back(st);  // untested (level 0), kept so indices match the steps
      prev_passed = false;
      prev_level = 0;
      continue;
    }
    st.passed = st.p_value <= st.level;
    result.steps.push_back(st);
    prev_passed = st.passed;
    prev_level = st.level;
    if (!st.passed) continue;
    result.certified = true;
    result.threshold = st.threshold;
    result.n = st.n;
    result.k = st.k;
  }
  if (result.certified) {
    result.coverage = total_rows == 0 ? 0 : static_cast<double>(result.n) / total_rows;
    result.agreement = result.n > 0 ? static_cast<double>(result.k) / result.n : 0;
    result.lower_bound = clopper_pearson_lower(result.n, result.k, 1 - delta);
  }
  return result;
}

CertifyResult certify_fixed_sequence(std::span<const double> thresholds,
                                     std::span<const float> calib_scores,
                                     std::span<const uint8_t> calib_agree, double alpha,
                                     double delta, int min_rows) {
  check_level("target agreement alpha", alpha);
  check_level("risk delta", delta);
  if (calib_scores.size() != calib_agree.size())
    throw InputError("certify: " + std::to_string(calib_scores.size()) + " scores but " +
                     std::to_string(calib_agree.size()) + " agreement flags");
  for (size_t i = 0; i < thresholds.size(); ++i) {
    if (std::isnan(thresholds[i]) || (i > 0 && !(thresholds[i] < thresholds[i - 1])))
      throw InputError("certify: thresholds must be strictly decreasing (strict to loose)");
  }

  // Rows by score, highest first; each threshold then accepts a prefix.
  struct Row {
    float score;
    uint8_t agree;
  };
  std::vector<Row> rows;
  rows.reserve(calib_scores.size());
  for (size_t i = 0; i < calib_scores.size(); ++i)
    if (!std::isnan(calib_scores[i])) rows.push_back({calib_scores[i], calib_agree[i]});
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.score > b.score; });

  // Counts per step: each threshold accepts a prefix of the sorted rows.
  std::vector<CertifyStep> steps;
  steps.reserve(thresholds.size());
  size_t pos = 0;
  int k = 0;
  for (double tau : thresholds) {
    while (pos < rows.size() && static_cast<double>(rows[pos].score) >= tau) {
      k += rows[pos].agree ? 1 : 0;
      ++pos;
    }
    CertifyStep st;
    st.threshold = tau;
    st.n = static_cast<int>(pos);
    st.k = k;
    steps.push_back(st);
  }
  CertifyResult result = walk_steps(std::move(steps), calib_scores.size(), alpha, delta, min_rows);
  return result;
}

}  // namespace tracer
