#pragma once
// Numerical pieces shared by the linear-ish surrogates (logistic, complement NB, MLP): a seeded
// RNG, a robust softmax, a dense layer on sparse or dense input, lazy Adam, input validation.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "features/sparse.hpp"
#include "util/binio.hpp"

namespace tracer::models {

// Largest class count and input width a model file may claim; guards load() against corrupt
// sizes before anything is allocated.
inline constexpr uint64_t kMaxClasses = 1u << 20;
inline constexpr uint64_t kMaxDim = 1u << 31;

// splitmix64: tiny, and unlike std:: distributions its output is the same on every platform,
// so a seed gives the same model everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n); n > 0. The modulo bias (< n / 2^64) is irrelevant here.
  uint64_t below(uint64_t n) { return next() % n; }
  double normal();  // standard normal (Box-Muller)

 private:
  uint64_t state_;
};

// Fisher-Yates shuffle.
void shuffle(std::span<uint32_t> v, Rng& rng);
// 0..n-1 in a seeded random order.
std::vector<uint32_t> shuffled_range(size_t n, Rng& rng);

// In-place softmax that never yields NaN/Inf: NaN scores count as -inf, infinite ones are
// clamped, and if nothing is finite the result is uniform. Sums to 1 up to rounding.
void softmax_inplace(std::span<float> z);

// y[0..n) += a * x[0..n). Inline so the compiler vectorises it in each caller's hot loop.
inline void axpy(float a, const float* __restrict x, float* __restrict y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}
// Eight fixed partial sums: vectorisable without -ffast-math, and the summation order (hence
// the result) does not depend on the compiler or the target's vector width.
inline float dot(const float* __restrict x, const float* __restrict y, size_t n) {
  float acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t k = 0; k < 8; ++k) acc[k] += x[i + k] * y[i + k];
  }
  for (; i < n; ++i) acc[i % 8] += x[i] * y[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// A fully connected layer: out = b + x W, with W stored input-major (row j holds the `out`
// weights of input j). On sparse input a row then costs nnz contiguous runs, which is what
// makes prediction a few microseconds.
struct Affine {
  size_t in = 0;
  size_t out = 0;
  std::vector<float> w;  // in * out
  std::vector<float> b;  // out

  void resize(size_t in_dim, size_t out_dim);  // zero-filled
  float* row(size_t j) { return w.data() + j * out; }
  const float* row(size_t j) const { return w.data() + j * out; }
  // o[0..out) = b + x W; features with index >= in (unknown to the model) are ignored.
  void forward_sparse(SparseRow x, float* o) const;
  void forward_dense(const float* x, float* o) const;
  double weight_norm2() const;  // squared Frobenius norm of w (bias excluded)
  void save(BinaryWriter& wr) const;
  // Validates sizes against the expected shape (0 = any, within kMaxDim) before allocating.
  void load(BinaryReader& r, std::string_view what, uint64_t expect_in, uint64_t expect_out);
};

// Adam with lazy updates: a parameter block's moments only move when update() touches it, so
// a minibatch updates only the input rows it saw (as in TensorFlow's LazyAdam).
class Adam {
 public:
  struct Config {
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
  };
  Adam(size_t num_params, Config cfg);
  void next_step();  // call once per minibatch before its update() calls
  // Updates param[0..n) with grad[0..n); `offset` locates the block in the moment arrays.
  void update(size_t offset, float* param, const float* grad, size_t n);
  void set_lr(float lr) { cfg_.lr = lr; }

 private:
  Config cfg_;
  std::vector<float> m_, v_;
  int64_t t_ = 0;
  float step_ = 0.f;  // lr with bias correction for the current step
  float c2_ = 1.f;    // 1 - beta2^t
};

// Checks what fit() receives and throws InputError naming the problem: one label per row,
// labels in [0, num_classes), num_classes >= min_classes, at least one row, indices < X.cols()
// and finite values. (The SVM and trees accept a single class: a constant predictor.)
void check_fit_inputs(const SparseMatrix& X, std::span<const int> y, int num_classes,
                      int min_classes = 2);

// Model files start with a format version; a mismatch means the file needs a refit.
void check_version(uint32_t got, uint32_t expected, std::string_view model);

// Epoch count so that tiny training sets still get enough optimiser steps: at least
// `min_epochs`, at least `min_updates` updates in total, at most `max_epochs`.
int epochs_for(size_t updates_per_epoch, int min_epochs, size_t min_updates, int max_epochs);

}  // namespace tracer::models
