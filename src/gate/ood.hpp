#pragma once
// Out-of-distribution gate: inputs unlike the traces are deferred whatever the acceptor says.
// Three cheap signals, each turned into an empirical CDF over in-distribution (select) rows:
//   - the share of the input's n-grams the vocabulary knows,
//   - the cosine similarity to the nearest label centroid (sparse top-m centroids behind an
//     inverted index, so the cost is O(nnz · postings), a few µs),
//   - the stage-1 surrogate's top-1 probability.
// The OOD score is the sum of the three log CDF values (a Fisher-style combination: low when
// the input is unusual on any signal, lower when on several); inputs scoring below the
// `quantile` lower quantile of select rows are flagged.
#include <cstdint>
#include <span>
#include <vector>

#include "features/featurizer.hpp"
#include "util/binio.hpp"

namespace tracer {

class OodGate {
 public:
  static constexpr size_t kSignals = 3;
  static constexpr size_t kTablePoints = 512;  // quantile points kept per signal

  // Builds centroids from training rows (labels y in [0, num_classes)).
  void fit_centroids(const SparseMatrix& X, std::span<const int> y, int num_classes,
                     size_t terms_per_centroid = 400);
  // Reference distributions and threshold from in-distribution rows (the select split).
  void set_reference(std::span<const float> known_fraction, std::span<const float> similarity,
                     std::span<const float> top1, double quantile);
  void disable() { enabled_ = false; }
  bool enabled() const { return enabled_; }

  // Max cosine similarity to a centroid; `scratch` must have num_classes() entries.
  float similarity(SparseRow x, std::span<float> scratch) const;
  static float known_fraction(const FeatureStats& s) {
    return s.ngrams == 0 ? 0.f : static_cast<float>(s.known_ngrams) / s.ngrams;
  }
  // Sum of log empirical CDFs (<= 0); lower means more unusual.
  float score(float known_fraction, float similarity, float top1) const;
  bool is_ood(float known_fraction, float similarity, float top1) const {
    return enabled_ && score(known_fraction, similarity, top1) < threshold_;
  }
  int num_classes() const { return num_classes_; }
  float threshold() const { return threshold_; }
  double quantile() const { return quantile_; }

  void save(BinaryWriter& w) const;
  void load(BinaryReader& r);

 private:
  bool enabled_ = false;
  int num_classes_ = 0;
  double quantile_ = 0;
  float threshold_ = -1e30f;
  std::vector<float> tables_[kSignals];  // sorted reference values
  // Inverted index: postings of feature f are entries [offsets_[f], offsets_[f+1]).
  std::vector<uint32_t> offsets_;
  std::vector<uint32_t> post_class_;
  std::vector<float> post_weight_;
};

}  // namespace tracer
