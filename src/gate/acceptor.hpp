#pragma once
// Acceptor: predicts P(surrogate agrees with teacher) from the surrogate's confidence signals.
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "util/binio.hpp"

namespace tracer {

// Confidence signals of one prediction, computed without allocation.
struct Signals {
  static constexpr int kCount = 7;
  // top1, top2, margin (top1-top2), 1 - normalised entropy, predicted label's agreement rate
  // on select (prior), known n-gram fraction (OOD), log(1 + ngrams)/5 (length)
  std::array<float, kCount> v{};
};

// probs: the surrogate's class probabilities (renormalised if they do not sum to 1; NaN and
// negative entries count as 0). label_prior: per-label agreement rate on select (empty → 0.5 for
// all; a label beyond its size → 0.5). known_fraction / ngrams from FeatureStats. `predicted`
// receives the argmax (lowest index on ties). Throws InputError when probs is empty.
Signals compute_signals(std::span<const float> probs, std::span<const float> label_prior,
                        float known_fraction, float ngrams, int* predicted = nullptr);

class Acceptor {
 public:
  // Signals plus a few squares and products, each standardised with the training means/stds.
  static constexpr int kFeatures = 13;
  // Below this many rows of either outcome the logistic fit is not trusted: top-1 fallback.
  static constexpr int kMinRowsPerClass = 20;

  // Trains an L2-regularised logistic regression (Newton, deterministic) on select-split rows.
  // When `agree` has one outcome only (all agree or none), or fewer than kMinRowsPerClass rows
  // of either outcome, falls back to the top-1 probability as the score. `seed` is unused (the
  // fit is deterministic) and kept for interface stability. Throws InputError on size mismatch.
  void fit(std::span<const Signals> rows, std::span<const uint8_t> agree, uint64_t seed = 42);
  // Score in [0,1], higher = more likely to agree; 0 for non-finite signals (defer).
  // Thread-safe, no allocation.
  float score(const Signals& s) const;
  bool is_fallback() const { return fallback_; }
  void save(BinaryWriter& w) const;
  // Throws FormatError on an unknown version or corrupted data; *this is unchanged then.
  void load(BinaryReader& r);

 private:
  bool fallback_ = true;
  std::array<double, kFeatures> mean_{};
  std::array<double, kFeatures> scale_{};        // 1 / std (1 for a constant feature)
  std::array<double, kFeatures + 1> weights_{};  // on standardised features; last = bias
};

}  // namespace tracer
