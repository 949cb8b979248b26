#pragma once
// Label-free drift check: is live traffic scored lower by the stage-1 acceptor than the
// calibrate split was? The certificate assumes traffic like the traces; when the acceptor's
// scores fall (more inputs it is unsure about), agreement on handled traffic usually falls too,
// before any label says so. This is a warning, not a guarantee: it cannot see a change in how
// often the surrogate is right at a given score (only labels can: see the shadow audit).
//
// Test: one-sided two-sample Kolmogorov–Smirnov, D = max_x (F_live(x) - F_ref(x)), i.e. how
// much more live mass sits at low scores, with the asymptotic p-value exp(-2 D^2 nm/(n+m))
// (Smirnov 1939; one-sided, so no factor 2). F_ref is read from a thinned quantile table; the
// test uses the table's upper envelope of the calibrate CDF, so thinning can only lower D.
// One test at a time here; the server's repeated looks are in runtime/drift_monitor.hpp.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "runtime/router.hpp"

namespace tracer {

// The calibrate split's stage-1 acceptor scores (thinned to a quantile table) and shares.
struct DriftReference {
  static constexpr size_t kTablePoints = 257;
  std::vector<float> score_quantiles;  // ascending; empty: no reference (old manifest)
  int64_t rows = 0;                    // calibrate rows the table summarises
  double handled_share = 0;            // certified coverage on calibrate
  double ood_share = 0;                // calibrate rows the OOD gate flagged

  // Throws InputError when rows/flags disagree in size. NaN scores count as 0 (as routed).
  static DriftReference from_calibrate(std::span<const float> scores,
                                       std::span<const uint8_t> handled,
                                       std::span<const uint8_t> ood);
  nlohmann::json to_json() const;
  // Missing or malformed "drift" sections give an empty reference (the check is then off).
  static DriftReference from_json(const nlohmann::json& manifest_drift);
  // The "drift" section of a whole manifest.json.
  static DriftReference from_manifest(const nlohmann::json& manifest);
  bool empty() const { return score_quantiles.empty() || rows <= 0; }
  // F_ref(x): share of calibrate scores <= x, interpolated between table points.
  double cdf(double x) const;
  // An upper bound on F_ref(x) from the table alone: the share up to the first table point
  // above x (at most 1/(kTablePoints - 1) above the exact share).
  double cdf_upper(double x) const;
};

struct DriftReport {
  bool available = false;  // a reference exists and at least one test was taken
  int64_t rows = 0;        // live rows compared (the last look's, for a monitor)
  double ks = 0;           // one-sided D (live scores lower)
  double p_value = 1;
  bool drift = false;  // p_value < the level (a monitor: any look so far, sticky)
  double level = 0;    // a single test's level; a monitor's level over its whole life
  // Monitor only (runtime/drift_monitor.hpp): repeated looks.
  int64_t looks = 0;             // tests taken so far
  double look_level = 0;         // the level the last look was tested at
  int64_t rows_seen = 0;         // routed inputs recorded since the monitor started
  int64_t next_look_rows = 0;    // rows_seen at which the next block is complete
  int64_t detected_at_look = 0;  // 1-based look that found drift (0: none)
  int64_t detected_at_rows = 0;  // rows_seen when that block ended
  double live_handled_share = 0, live_ood_share = 0;
  double reference_handled_share = 0, reference_ood_share = 0;
  double live_median = 0, reference_median = 0;
  std::string message;  // one sentence for people
  nlohmann::json to_json() const;
};

struct DriftOptions {
  // serve: routed inputs per look after the first (DriftMonitor); CLI: 0, one test of all rows.
  size_t window = 2000;
  size_t min_rows = 200;  // rows of the first look (serve); fewest rows to test at all (CLI)
  // serve: probability that a policy version ever reports drift when traffic has not moved,
  // spread over its looks; CLI: the single test's level.
  double level = 0.01;
};

// `tracer drift` and the demo: one test of a whole file, at a strict level because people run
// it again and again on new files.
inline constexpr DriftOptions kFileDriftOptions{0, 200, 1e-4};

// Compares live stage-1 scores (and handled / OOD flags) with the reference.
DriftReport compare_drift(const DriftReference& ref, std::span<const float> scores, size_t handled,
                          size_t ood, const DriftOptions& options);

// What the check reads from routed inputs, collected one decision at a time.
struct DriftSample {
  std::vector<float> scores;  // stage-1 acceptor scores
  size_t handled = 0, ood = 0;
  // Answers from the memory tier are left out: no surrogate scored them, and the reference
  // describes the surrogate's scores on distinct inputs.
  void add(const RouteResult& r) {
    if (r.stage == 0) return;
    scores.push_back(r.stage1_score);
    handled += r.handled;
    ood += r.reason == DeferReason::kOutOfDistribution;
  }
};
inline DriftReport compare_drift(const DriftReference& ref, const DriftSample& sample,
                                 const DriftOptions& options) {
  return compare_drift(ref, sample.scores, sample.handled, sample.ood, options);
}

}  // namespace tracer
