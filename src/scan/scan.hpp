#pragma once
// `tracer scan` as a library call: from a first batch of traces, estimate what a policy could
// certify now at each target, how that would grow with 2x, 5x, 10x the traces, and which labels
// need more traces. Nothing is written; the policy itself comes from `tracer fit`.
//
// How (docs/usage.md, "tracer scan", has the long form):
//  1. Refit with `fit_policy` (a fast zoo, global and l2d) on nested-size random shares of the
//     distinct inputs (default 25%, 50%, 100%; a few seeds each). Each refit's surrogate and
//     acceptor score every input it never saw: its calibrate rows and, for a share, every
//     distinct input outside the share.
//  2. For every coverage level c (1%, 2%, ..., 100%) the agreement with the LLM among the c
//     most confident held-out inputs is a learning curve in the number of traces; a saturating
//     curve (curve.hpp) is fitted to it and extrapolated to each size, with an interval.
//  3. At each size, the calibration walk of `tracer fit` (first step sized for power, then 1%
//     steps, stop at the first failed binomial test) is simulated on those curves: draws of the
//     curve within its interval times draws of the calibrate sample at that size. The median of
//     the simulated certified coverage is the estimate; the 10th and 90th percentiles (for
//     level 0.8) the interval.
//  4. Per label: the label's held-out agreement, scaled along the overall curve, gives its
//     agreement now and the traces it would need to reach the target.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/traces.hpp"
#include "util/progress.hpp"

namespace tracer {

struct ScanOptions {
  std::vector<double> targets = {0.80, 0.85, 0.90, 0.95, 0.97, 0.99};
  std::vector<double> multiples = {2, 5, 10};     // sizes to extrapolate to, in current traces
  std::vector<double> shares = {0.25, 0.5, 1.0};  // shares of distinct inputs refit on
  int seeds = 2;                                  // refits per share
  double target = 0.95;  // the headline target: verdict, per-label status, the refits' target
  double delta = 0.05;
  int min_rows = 30;
  double ood_quantile = 0.03;
  std::vector<std::string> zoo = {"linear_svm"};
  size_t min_per_label = 3;  // as `tracer fit --min-per-label`: rarer labels are deferred
  uint64_t seed = 42;
  int threads = 2;     // refits run in parallel, one thread each
  int draws = 400;     // simulated walks per size and target
  double level = 0.8;  // two-sided coverage of every interval
};

struct ScanEstimate {
  double value = 0, low = 0, high = 0;  // a share in [0, 1]; low <= value <= high
};

// One refit.
struct ScanFit {
  double share = 1;
  int seed = 0;
  size_t traces = 0;          // traces in the share
  size_t calibrate_rows = 0;  // of the refit's own split
  size_t held_out = 0;        // inputs scored that the refit never saw (calibrate + outside)
  double held_out_agreement = 0;
  std::vector<double> certified;  // per target: certified coverage of the refit's frontier
  double seconds = 0;
  std::string error;  // set when the refit failed (e.g. a share too small); ignored then
};

// Estimates at one size (multiple 1 = now).
struct ScanHorizon {
  double multiple = 1;
  size_t traces = 0;                   // multiple x the traces read
  size_t calibrate = 0;                // calibrate rows a fit of that size would certify on
  std::vector<ScanEstimate> coverage;  // per target
  ScanEstimate agreement;              // the surrogate's agreement on all held-out inputs
};

struct ScanLabel {
  std::string label;
  size_t traces = 0;
  ScanEstimate agreement;  // surrogate vs LLM on held-out inputs of this label, now
  // "ok" (agreement >= target), "needs_traces", "unlikely" (not within 100x by the trend),
  // "too_few_traces" (fewer than min_per_label distinct training inputs: `tracer fit` defers it).
  std::string status;
  double traces_needed = 0;   // this label's traces for agreement >= target (0: met; inf: never)
  std::string confused_with;  // the most common wrong answer on its held-out inputs
  double confused_share = 0;
};

struct ScanResult {
  ScanOptions options;
  size_t traces = 0, distinct_inputs = 0;
  size_t labels = 0;
  double calibrate_share = 0;  // calibrate rows / traces in the full-size refits
  std::vector<ScanFit> fits;
  std::vector<ScanHorizon> horizons;  // now first, then options.multiples
  // Per target, over the full-size refits (what `tracer fit` with this zoo certifies now, one
  // value per seed): median, min, max.
  std::vector<ScanEstimate> observed_now;
  std::vector<ScanLabel> label_rows;  // labels below the target first (most traces needed)
  bool certifiable_now = false;       // some target certifies >= 5% now
  bool certifiable_later = false;     // ... at the largest multiple
  bool more_traces_help = false;      // the largest multiple adds >= 10 points at some target
  std::vector<std::string> verdict;   // plain sentences
  double seconds = 0;

  nlohmann::json to_json() const;
  // The text table `tracer scan` prints; at most `max_labels` labels are listed.
  std::string to_text(size_t max_labels = 12) const;
};

// Throws InputError for invalid options or traces that cannot be fit at all (fewer than two
// labels with min_per_label traces, too few traces for a calibrate split).
ScanResult scan_traces(const TraceSet& traces, const ScanOptions& options, Progress& progress);

}  // namespace tracer
