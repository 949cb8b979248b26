#pragma once
// Seeded synthetic sparse multi-class data for surrogate tests.
//
// Class c owns the feature block [c * kBlock, (c + 1) * kBlock); the remaining `shared`
// features are noise common to every class. A row draws `signal` features from its class block
// and `noise` from the shared range, positive values, L2-normalised like TF-IDF rows. With
// signal > 0 the classes are separable; draws with different seeds share the class blocks,
// so one seed trains and another tests.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "features/sparse.hpp"
#include "models/linear_math.hpp"

namespace tracer::testing {

struct SyntheticData {
  SparseMatrix X;
  std::vector<int> y;
  int num_classes = 0;
};

struct SyntheticSpec {
  size_t rows = 600;
  int classes = 5;
  size_t block = 40;    // features owned by each class
  size_t shared = 200;  // noise features common to all classes
  int signal = 4;       // class features per row
  int noise = 6;        // shared features per row
  // Probability that a row's class features come from a random other class instead (label
  // noise that makes the problem non-separable, for calibration tests).
  double flip = 0.0;
  size_t dim() const { return static_cast<size_t>(classes) * block + shared; }
};

inline SyntheticData make_synthetic(const SyntheticSpec& spec, uint64_t seed) {
  models::Rng rng(seed);
  SyntheticData d{SparseMatrix(spec.dim()), {}, spec.classes};
  std::vector<uint32_t> idx;
  std::vector<float> val;
  for (size_t i = 0; i < spec.rows; ++i) {
    const int c = static_cast<int>(rng.below(static_cast<uint64_t>(spec.classes)));
    int source = c;
    if (spec.flip > 0 && rng.uniform() < spec.flip) {
      source = static_cast<int>(rng.below(static_cast<uint64_t>(spec.classes)));
    }
    idx.clear();
    for (int k = 0; k < spec.signal; ++k) {
      idx.push_back(static_cast<uint32_t>(static_cast<size_t>(source) * spec.block +
                                          rng.below(spec.block)));
    }
    for (int k = 0; k < spec.noise; ++k) {
      idx.push_back(static_cast<uint32_t>(static_cast<size_t>(spec.classes) * spec.block +
                                          rng.below(spec.shared)));
    }
    std::sort(idx.begin(), idx.end());
    idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
    val.clear();
    double norm = 0;
    for (size_t k = 0; k < idx.size(); ++k) {
      val.push_back(static_cast<float>(0.5 + rng.uniform()));
      norm += static_cast<double>(val.back()) * val.back();
    }
    for (float& v : val) v = static_cast<float>(v / std::sqrt(norm));
    d.X.add_row({idx, val});
    d.y.push_back(c);
  }
  return d;
}

}  // namespace tracer::testing
