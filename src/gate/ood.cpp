#include "gate/ood.hpp"

#include <algorithm>
#include <cmath>

#include "util/error.hpp"

namespace tracer {
namespace {

constexpr uint32_t kFormatVersion = 2;

// Sorted values, thinned to at most `points` evenly spaced order statistics.
std::vector<float> quantile_table(std::span<const float> v, size_t points) {
  std::vector<float> s(v.begin(), v.end());
  std::sort(s.begin(), s.end());
  if (s.size() <= points) return s;
  std::vector<float> t(points);
  for (size_t i = 0; i < points; ++i) t[i] = s[i * (s.size() - 1) / (points - 1)];
  return t;
}

// Smoothed empirical CDF: (#values <= x + 1) / (n + 1), so it is never 0.
float log_cdf(const std::vector<float>& table, float x) {
  size_t rank = std::upper_bound(table.begin(), table.end(), x) - table.begin();
  return std::log((static_cast<float>(rank) + 1.f) / (static_cast<float>(table.size()) + 1.f));
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

void OodGate::set_reference(std::span<const float> known_fraction,
                            std::span<const float> similarity, std::span<const float> top1,
                            double quantile) {
  tables_[0] = quantile_table(known_fraction, kTablePoints);
  tables_[1] = quantile_table(similarity, kTablePoints);
  tables_[2] = quantile_table(top1, kTablePoints);
  quantile_ = quantile;
  std::vector<float> scores(known_fraction.size());
  for (size_t i = 0; i < scores.size(); ++i)
    scores[i] = score(known_fraction[i], similarity[i], top1[i]);
  if (scores.empty() || quantile <= 0) {
    threshold_ = -1e30f;
    return;
  }
  std::sort(scores.begin(), scores.end());
  // Flag strictly below the quantile value, so at most that share of select rows is flagged.
  threshold_ = scores[static_cast<size_t>(std::floor(quantile * (scores.size() - 1)))];
}

float OodGate::score(float known_fraction, float similarity, float top1) const {
  if (tables_[0].empty()) return 0.f;
  return log_cdf(tables_[0], known_fraction) + log_cdf(tables_[1], similarity) +
         log_cdf(tables_[2], top1);
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
  w.put<double>(quantile_);
  w.put<float>(threshold_);
  for (const auto& t : tables_) w.put_vector(t);
  w.put_vector(offsets_);
  w.put_vector(post_class_);
  w.put_vector(post_weight_);
}

void OodGate::load(BinaryReader& r) {
  if (r.get<uint32_t>() != kFormatVersion)
    throw FormatError("OOD gate section has an unknown format version; refit the policy");
  enabled_ = r.get<uint8_t>() != 0;
  num_classes_ = r.get<int32_t>();
  quantile_ = r.get<double>();
  threshold_ = r.get<float>();
  for (auto& t : tables_) t = r.get_vector<float>(kTablePoints);
  offsets_ = r.get_vector<uint32_t>();
  post_class_ = r.get_vector<uint32_t>();
  post_weight_ = r.get_vector<float>();
  bool ok = num_classes_ >= 0 && post_class_.size() == post_weight_.size() &&
            (offsets_.empty() || offsets_.back() == post_class_.size());
  for (size_t i = 1; ok && i < offsets_.size(); ++i) ok = offsets_[i - 1] <= offsets_[i];
  for (const auto& t : tables_) ok = ok && std::is_sorted(t.begin(), t.end());
  for (size_t i = 0; ok && i < post_class_.size(); ++i)
    ok = post_class_[i] < static_cast<uint32_t>(num_classes_);
  if (!ok) throw FormatError("OOD gate section is inconsistent (model file corrupted?)");
}

}  // namespace tracer
