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

// probs: the surrogate's class probabilities. label_prior: per-label agreement rate on select
// (empty → 0.5 for all). known_fraction / ngrams from FeatureStats.
Signals compute_signals(std::span<const float> probs, std::span<const float> label_prior,
                        float known_fraction, float ngrams, int* predicted = nullptr);

class Acceptor {
 public:
  // Trains on select-split rows. When `agree` has one outcome only (all agree or none),
  // falls back to the top-1 probability as the score.
  void fit(std::span<const Signals> rows, std::span<const uint8_t> agree, uint64_t seed = 42);
  // Score in [0,1], higher = more likely to agree. Thread-safe, no allocation.
  float score(const Signals& s) const;
  bool is_fallback() const { return fallback_; }
  void save(BinaryWriter& w) const;
  void load(BinaryReader& r);

 private:
  bool fallback_ = true;
  std::vector<float> weights_;  // over the expanded feature vector, last entry = bias
};

}  // namespace tracer
