#pragma once
// Label-free drift check: is live traffic scored lower by the stage-1 acceptor than the
// calibrate split was? The certificate assumes traffic like the traces; when the acceptor's
// scores fall (more inputs it is unsure about), agreement on handled traffic usually falls too,
// before any label says so. This is a warning, not a guarantee: it cannot see a change in how
// often the surrogate is right at a given score (only labels can: see the shadow audit).
//
// Test: one-sided two-sample Kolmogorov–Smirnov, D = max_x (F_live(x) - F_ref(x)), i.e. how
// much more live mass sits at low scores, with the asymptotic p-value exp(-2 D^2 nm/(n+m)).
#include <atomic>
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
};

struct DriftReport {
  bool available = false;  // a reference exists and the window has at least min_rows rows
  int64_t rows = 0;        // live rows compared
  double ks = 0;           // one-sided D (live scores lower)
  double p_value = 1;
  bool drift = false;  // p_value < the level
  double level = 0;
  double live_handled_share = 0, live_ood_share = 0;
  double reference_handled_share = 0, reference_ood_share = 0;
  double live_median = 0, reference_median = 0;
  std::string message;  // one sentence for people
  nlohmann::json to_json() const;
};

struct DriftOptions {
  size_t window = 2000;  // most recent routed inputs compared (serve); 0: unbounded (CLI)
  size_t min_rows = 200;
  double level = 1e-4;  // p-value below which drift is reported; small because it is re-checked
};

// Compares live stage-1 scores (and handled / OOD flags) with the reference.
DriftReport compare_drift(const DriftReference& ref, std::span<const float> scores, size_t handled,
                          size_t ood, const DriftOptions& options);

// What the check reads from routed inputs, collected one decision at a time.
struct DriftSample {
  std::vector<float> scores;  // stage-1 acceptor scores
  size_t handled = 0, ood = 0;
  void add(const RouteResult& r) {
    scores.push_back(r.stage1_score);
    handled += r.handled;
    ood += r.reason == DeferReason::kOutOfDistribution;
  }
};
inline DriftReport compare_drift(const DriftReference& ref, const DriftSample& sample,
                                 const DriftOptions& options) {
  return compare_drift(ref, sample.scores, sample.handled, sample.ood, options);
}

// Thread-safe sliding window of the latest routed inputs, for the server. Recording is a few
// relaxed atomic stores into a ring (no lock: every request thread records); a report reads
// the ring as it is, so a row being written during a report may be missed, which a warning can
// afford.
class DriftMonitor {
 public:
  // Throws InputError unless options.window >= 1 and 0 < options.level < 1.
  DriftMonitor(DriftReference ref, DriftOptions options);
  void record(float stage1_score, bool handled, bool ood);
  void record(const RouteResult& r) {
    record(r.stage1_score, r.handled, r.reason == DeferReason::kOutOfDistribution);
  }
  DriftReport report() const;  // O(window log window); call it from status endpoints only

 private:
  static constexpr uint8_t kWritten = 1, kHandled = 2, kOod = 4;
  DriftReference ref_;
  DriftOptions opt_;
  std::vector<std::atomic<float>> scores_;
  std::vector<std::atomic<uint8_t>> flags_;  // kWritten set once the slot holds a row
  std::atomic<uint64_t> next_{0};
};

}  // namespace tracer
