#pragma once
// Fixed-sequence testing (Learn-then-Test) of acceptor thresholds on the calibration split.
//
// Guarantee: if the thresholds were fixed without looking at the calibration rows and rows are
// exchangeable, then P(true agreement on {score >= deployed threshold} < alpha) <= delta.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tracer {

struct CertifyStep {
  double threshold = 0;  // accept when score >= threshold
  int n = 0;             // accepted calibration rows
  int k = 0;             // of which agree with the teacher
  double p_value = 1;    // P(Bin(n, alpha) >= k)
  double level = 0;      // the level this step was tested at (fallback procedure), 0: untested
  bool passed = false;
  bool skipped = false;  // n < min_rows: not tested (neither pass nor failure), walk went on
};

struct CertifyResult {
  bool certified = false;
  // Loosest certified threshold. When nothing is certified it is +infinity (accept nothing), so
  // a caller that forgets to check `certified` still fails safe.
  double threshold = 0;
  int n = 0, k = 0;                // accepted / agreeing calibration rows at that threshold
  double coverage = 0;             // n / calibration rows
  double agreement = 0;            // k / n
  double lower_bound = 0;          // one-sided Clopper–Pearson lower bound at 1 - delta
  std::vector<CertifyStep> steps;  // every step walked, strict → loose, incl. the failure
};

// Candidate thresholds, strictest first, fixed from the *select* split's scores: the score
// quantiles giving coverage start, start+step, ..., on select, where start = min_first_rows /
// calib_size so the first step is expected to accept min_first_rows calibration rows (at least
// `step`). Ties collapse, so the result is strictly decreasing; the last entry is always
// -infinity (accept every row: coverage 100%). Every finite entry is a select score, so it
// converts to float exactly. NaN scores are ignored. Throws InputError unless 0 < step <= 1.
std::vector<double> threshold_sequence(std::span<const float> select_scores, size_t calib_size,
                                       int min_first_rows, double step = 0.01);

// Smallest number of accepted calibration rows at which a region whose true agreement is
// `agreement` passes the test at (alpha, delta) with probability >= `power`; -1 when it never
// does (agreement <= alpha, or more than max_rows needed). A caller can feed it an agreement
// estimated on the select split (independent of calibrate) to size the first step: a first step
// too small to pass ends the walk before it starts. Throws InputError on levels outside (0, 1).
int rows_for_power(double alpha, double delta, double agreement, double power = 0.8,
                   int max_rows = 10000000);

// The walk itself, on steps whose accepted (n) and agreeing (k) calibration counts are already
// known (strict → loose; `threshold` is only recorded). Steps with n < min_rows are skipped
// (dropped from the sequence: n does not depend on labels). Without `weights` this is
// fixed-sequence testing: certify while the p-value is ≤ delta, stop at the first failure.
//
// `weights` (one per step, each >= 0, summing to at most 1, fixed before calibrate labels are
// seen) turns it into the fallback procedure (Wiens 2003; Wiens & Dmitrienko 2005): step j is
// tested at level delta × w_j plus, when step j-1 passed, step j-1's level; the first tested step
// also gets the weight not given to any step (1 - sum), and a skipped step's weight passes to the
// next tested one. The family-wise error rate stays <= delta under any dependence between the
// steps, so a walk stopped by one noisy step can still certify a later step that holds weight of
// its own. The result is the loosest passed step. Coverage is n / total_rows. Throws InputError
// on weights that are negative, not finite, of the wrong length or summing above 1.
CertifyResult walk_steps(std::vector<CertifyStep> steps, size_t total_rows, double alpha,
                         double delta, int min_rows, std::span<const double> weights = {});

// Walks `thresholds` (strict → loose) on calibration (scores, agree) and certifies while the
// binomial p-value of H0: agreement < alpha is ≤ delta; stops at the first failure. A step with
// fewer than `min_rows` accepted rows is skipped (not a failure; with min_rows =
// min_rows_to_certify it could not have passed). The result is the loosest step
// that passed. A NaN score is never accepted (as at run time). Throws InputError on mismatched
// sizes, thresholds that are not strictly decreasing, or alpha / delta outside (0, 1).
CertifyResult certify_fixed_sequence(std::span<const double> thresholds,
                                     std::span<const float> calib_scores,
                                     std::span<const uint8_t> calib_agree, double alpha,
                                     double delta, int min_rows);

}  // namespace tracer
