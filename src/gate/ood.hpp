#pragma once
// Out-of-distribution gate: inputs unlike the traces are deferred whatever the acceptor says.
// Two cheap signals: the share of the input's n-grams the vocabulary knows, and the cosine
// similarity to the nearest label centroid (sparse top-m centroids, looked up through an
// inverted index so the cost is O(nnz · postings), a few µs).
#include <cstdint>
#include <span>
#include <vector>

#include "features/featurizer.hpp"
#include "util/binio.hpp"

namespace tracer {

class OodGate {
 public:
  // Builds centroids from training rows (labels y in [0, num_classes)).
  void fit_centroids(const SparseMatrix& X, std::span<const int> y, int num_classes,
                     size_t terms_per_centroid = 400);
  // Thresholds: the `quantile` lower quantiles of the two signals on in-distribution rows
  // (the select split), so that about that share of normal traffic is flagged.
  void set_thresholds(std::span<const float> known_fraction, std::span<const float> similarity,
                      double quantile);
  void disable() { enabled_ = false; }
  bool enabled() const { return enabled_; }

  // Max cosine similarity to a centroid; `scratch` must have num_classes() entries.
  float similarity(SparseRow x, std::span<float> scratch) const;
  static float known_fraction(const FeatureStats& s) {
    return s.ngrams == 0 ? 0.f : static_cast<float>(s.known_ngrams) / s.ngrams;
  }
  bool is_ood(float known_fraction, float similarity) const {
    return enabled_ && (known_fraction < min_known_ || similarity < min_similarity_);
  }
  int num_classes() const { return num_classes_; }
  float min_known() const { return min_known_; }
  float min_similarity() const { return min_similarity_; }

  void save(BinaryWriter& w) const;
  void load(BinaryReader& r);

 private:
  bool enabled_ = false;
  int num_classes_ = 0;
  float min_known_ = 0, min_similarity_ = 0;
  // Inverted index: postings of feature f are entries [offsets_[f], offsets_[f+1]).
  std::vector<uint32_t> offsets_;
  std::vector<uint32_t> post_class_;
  std::vector<float> post_weight_;
};

}  // namespace tracer
