#pragma once
// A seeded synthetic sparse classification problem for the linear SVM and xgboost tests.
// Class k owns a block of "signature" features; every row carries a few features of its class's
// block plus a few shared noise features, L2-normalised like TF-IDF rows. Without label noise
// the classes are linearly separable; with it, a share of labels is replaced by another class,
// so the best achievable accuracy is about 1 - label_noise.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "features/sparse.hpp"

namespace tracer::testing {

struct SvmSyntheticSpec {
  int classes = 4;
  size_t rows = 400;
  size_t signature = 10;   // features owned by each class
  size_t noise_dims = 60;  // shared features after the class blocks
  int per_row = 4;         // signature features drawn per row
  int noise_per_row = 3;   // noise features drawn per row
  double label_noise = 0.0;
  uint64_t seed = 1;
};

struct SvmSynthetic {
  SparseMatrix X;
  std::vector<int> y;
};

class SvmSyntheticRng {
 public:
  explicit SvmSyntheticRng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }

 private:
  uint64_t state_;
};

inline SvmSynthetic make_svm_synthetic(const SvmSyntheticSpec& spec) {
  const size_t classes = static_cast<size_t>(spec.classes);
  const size_t dim = classes * spec.signature + spec.noise_dims;
  SvmSynthetic out{SparseMatrix(dim), {}};
  SvmSyntheticRng rng(spec.seed);
  std::vector<std::pair<uint32_t, float>> entries;
  std::vector<uint32_t> idx;
  std::vector<float> val;
  for (size_t r = 0; r < spec.rows; ++r) {
    const size_t cls = rng.below(classes);
    entries.clear();
    for (int j = 0; j < spec.per_row; ++j)
      entries.emplace_back(static_cast<uint32_t>(cls * spec.signature + rng.below(spec.signature)),
                           static_cast<float>(0.5 + rng.uniform()));
    for (int j = 0; j < spec.noise_per_row && spec.noise_dims > 0; ++j)
      entries.emplace_back(
          static_cast<uint32_t>(classes * spec.signature + rng.below(spec.noise_dims)),
          static_cast<float>(rng.uniform()));
    std::sort(entries.begin(), entries.end());
    idx.clear();
    val.clear();
    for (const auto& [i, v] : entries) {  // merge repeated draws of one feature
      if (!idx.empty() && idx.back() == i) {
        val.back() += v;
      } else {
        idx.push_back(i);
        val.push_back(v);
      }
    }
    double norm = 0.0;
    for (float v : val) norm += static_cast<double>(v) * v;
    norm = std::sqrt(norm);
    for (float& v : val) v = static_cast<float>(v / norm);
    out.X.add_row({idx, val});
    int label = static_cast<int>(cls);
    if (classes > 1 && spec.label_noise > 0.0 && rng.uniform() < spec.label_noise)
      label = static_cast<int>((cls + 1 + rng.below(classes - 1)) % classes);
    out.y.push_back(label);
  }
  return out;
}

}  // namespace tracer::testing
