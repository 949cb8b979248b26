#include "gate/ood.hpp"

#include <algorithm>
#include <cmath>

#include "util/error.hpp"

namespace tracer {
namespace {

constexpr uint32_t kFormatVersion = 1;

float lower_quantile(std::span<const float> v, double q) {
  if (v.empty()) return 0.f;
  std::vector<float> s(v.begin(), v.end());
  size_t k = static_cast<size_t>(std::floor(q * (s.size() - 1)));
  std::nth_element(s.begin(), s.begin() + k, s.end());
  return s[k];
}

}  // namespace

void OodGate::fit_centroids(const SparseMatrix& X, std::span<const int> y, int num_classes,
                            size_t terms_per_centroid) {
  const size_t dim = X.cols();
  num_classes_ = num_classes;
  std::vector<std::vector<std::pair<uint32_t, float>>> kept(num_classes);
  std::vector<float> dense(dim);
  for (int c = 0; c < num_classes; ++c) {
    std::fill(dense.begin(), dense.end(), 0.f);
    for (size_t i = 0; i < X.rows(); ++i) {
      if (y[i] != c) continue;
      auto r = X.row(i);
      for (size_t j = 0; j < r.nnz(); ++j) dense[r.idx[j]] += r.val[j];
    }
    std::vector<std::pair<uint32_t, float>> terms;
    for (uint32_t f = 0; f < dim; ++f)
      if (dense[f] > 0) terms.emplace_back(f, dense[f]);
    size_t m = std::min(terms_per_centroid, terms.size());
    std::partial_sort(terms.begin(), terms.begin() + m, terms.end(), [](auto& a, auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    terms.resize(m);
    double norm = 0;
    for (auto& t : terms) norm += double(t.second) * t.second;
    norm = std::sqrt(norm);
    for (auto& t : terms) t.second = norm > 0 ? float(t.second / norm) : 0.f;
    kept[c] = std::move(terms);
  }
  std::vector<uint32_t> counts(dim + 1, 0);
  for (auto& terms : kept)
    for (auto& t : terms) ++counts[t.first + 1];
  offsets_.assign(dim + 1, 0);
  for (size_t f = 0; f < dim; ++f) offsets_[f + 1] = offsets_[f] + counts[f + 1];
  post_class_.assign(offsets_.back(), 0);
  post_weight_.assign(offsets_.back(), 0.f);
  std::vector<uint32_t> fill(offsets_.begin(), offsets_.end() - 1);
  for (int c = 0; c < num_classes; ++c)
    for (auto& t : kept[c]) {
      uint32_t at = fill[t.first]++;
      post_class_[at] = static_cast<uint32_t>(c);
      post_weight_[at] = t.second;
    }
  enabled_ = true;
}

void OodGate::set_thresholds(std::span<const float> known_fraction,
                             std::span<const float> similarity, double quantile) {
  min_known_ = lower_quantile(known_fraction, quantile);
  min_similarity_ = lower_quantile(similarity, quantile);
}

float OodGate::similarity(SparseRow x, std::span<float> scratch) const {
  if (num_classes_ == 0) return 1.f;
  std::fill(scratch.begin(), scratch.begin() + num_classes_, 0.f);
  const size_t dim = offsets_.empty() ? 0 : offsets_.size() - 1;
  for (size_t j = 0; j < x.nnz(); ++j) {
    uint32_t f = x.idx[j];
    if (f >= dim) continue;
    for (uint32_t p = offsets_[f]; p < offsets_[f + 1]; ++p)
      scratch[post_class_[p]] += x.val[j] * post_weight_[p];
  }
  float best = 0.f;
  for (int c = 0; c < num_classes_; ++c) best = std::max(best, scratch[c]);
  return best;
}

void OodGate::save(BinaryWriter& w) const {
  w.put<uint32_t>(kFormatVersion);
  w.put<uint8_t>(enabled_ ? 1 : 0);
  w.put<int32_t>(num_classes_);
  w.put<float>(min_known_);
  w.put<float>(min_similarity_);
  w.put_vector(offsets_);
  w.put_vector(post_class_);
  w.put_vector(post_weight_);
}

void OodGate::load(BinaryReader& r) {
  if (r.get<uint32_t>() != kFormatVersion)
    throw FormatError("OOD gate section has an unknown format version; refit the policy");
  enabled_ = r.get<uint8_t>() != 0;
  num_classes_ = r.get<int32_t>();
  min_known_ = r.get<float>();
  min_similarity_ = r.get<float>();
  offsets_ = r.get_vector<uint32_t>();
  post_class_ = r.get_vector<uint32_t>();
  post_weight_ = r.get_vector<float>();
  bool ok = num_classes_ >= 0 && post_class_.size() == post_weight_.size() &&
            (offsets_.empty() || offsets_.back() == post_class_.size());
  for (size_t i = 1; ok && i < offsets_.size(); ++i) ok = offsets_[i - 1] <= offsets_[i];
  for (size_t i = 0; ok && i < post_class_.size(); ++i)
    ok = post_class_[i] < static_cast<uint32_t>(num_classes_);
  if (!ok) throw FormatError("OOD gate section is inconsistent (model file corrupted?)");
}

}  // namespace tracer
