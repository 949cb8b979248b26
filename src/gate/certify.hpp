#pragma once
// Fixed-sequence testing (Learn-then-Test) of acceptor thresholds on the calibration split.
#include <cstdint>
#include <span>
#include <vector>

namespace tracer {

struct CertifyStep {
  double threshold = 0;  // accept when score >= threshold
  int n = 0;             // accepted calibration rows
  int k = 0;             // of which agree with the teacher
  double p_value = 1;    // P(Bin(n, alpha) >= k)
  bool passed = false;
};

struct CertifyResult {
  bool certified = false;
  double threshold = 0;     // loosest certified threshold (valid only when certified)
  int n = 0, k = 0;         // accepted / agreeing calibration rows at that threshold
  double coverage = 0;      // n / calibration rows
  double agreement = 0;     // k / n
  double lower_bound = 0;   // one-sided Clopper–Pearson lower bound at 1 - delta
  std::vector<CertifyStep> steps;  // every step walked, strict → loose, incl. the failure
};

// Candidate thresholds, strictest first, fixed from the *select* split's scores: the score
// quantiles giving coverage start, start+step, ..., 1.0 on select, where `start` is chosen so the
// first step accepts at least `min_first_rows` of a calibration split of `calib_size` rows.
std::vector<double> threshold_sequence(std::span<const float> select_scores, size_t calib_size,
                                       int min_first_rows, double step = 0.01);

// Walks `thresholds` (strict → loose) on calibration (scores, agree) and certifies while the
// binomial p-value of H0: agreement < alpha is ≤ delta; stops at the first failure. A step with
// fewer than `min_rows` accepted rows is skipped (not a failure). The result is the loosest step
// that passed.
CertifyResult certify_fixed_sequence(std::span<const double> thresholds,
                                     std::span<const float> calib_scores,
                                     std::span<const uint8_t> calib_agree, double alpha,
                                     double delta, int min_rows);

}  // namespace tracer
