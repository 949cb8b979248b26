#include "models/linear_math.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include "util/error.hpp"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace tracer::models {

double Rng::normal() {
  // 1 - uniform() is in (0, 1], so the log is finite.
  double u1 = 1.0 - uniform(), u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

void shuffle(std::span<uint32_t> v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

std::vector<uint32_t> shuffled_range(size_t n, Rng& rng) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint32_t>(i);
  shuffle(v, rng);
  return v;
}

void softmax_inplace(std::span<float> z) {
  if (z.empty()) return;
  // Clamp so that differences of scores stay finite in float.
  constexpr float kBig = 1e30f;
  float mx = -kBig;
  for (float& s : z) {
    s = std::isnan(s) ? -kBig : std::clamp(s, -kBig, kBig);
    mx = std::max(mx, s);
  }
  float sum = 0.f;
  for (float& s : z) {
    s = std::exp(s - mx);  // in [0, 1], and 1 for the max
    sum += s;
  }
  const float inv = 1.f / sum;  // sum >= 1
  for (float& s : z) s *= inv;
}

void Affine::resize(size_t in_dim, size_t out_dim) {
  in = in_dim;
  out = out_dim;
  w.assign(in * out, 0.f);
  b.assign(out, 0.f);
}

void Affine::forward_sparse(SparseRow x, float* o) const {
  std::copy(b.begin(), b.end(), o);
  for (size_t k = 0; k < x.nnz(); ++k) {
    if (x.idx[k] >= in) continue;
    axpy(x.val[k], row(x.idx[k]), o, out);
  }
}

void Affine::forward_dense(const float* x, float* o) const {
  std::copy(b.begin(), b.end(), o);
  for (size_t j = 0; j < in; ++j) {
    if (x[j] != 0.f) axpy(x[j], row(j), o, out);
  }
}

double Affine::weight_norm2() const {
  double s = 0;
  for (float v : w) s += static_cast<double>(v) * v;
  return s;
}

void Affine::save(BinaryWriter& wr) const {
  wr.put<uint64_t>(in);
  wr.put<uint64_t>(out);
  wr.put_vector(w);
  wr.put_vector(b);
}

void Affine::load(BinaryReader& r, std::string_view what, uint64_t expect_in,
                  uint64_t expect_out) {
  const std::string name(what);
  auto in_dim = r.get<uint64_t>();
  auto out_dim = r.get<uint64_t>();
  if (in_dim > kMaxDim || out_dim == 0 || out_dim > kMaxClasses ||
      (expect_in && in_dim != expect_in) || (expect_out && out_dim != expect_out)) {
    throw FormatError("model file: " + name + " has an invalid shape " + std::to_string(in_dim) +
                      "x" + std::to_string(out_dim) + " (file corrupted?)");
  }
  // Bounded by the bytes actually present, so a corrupt size cannot trigger a huge allocation.
  auto weights = r.get_vector<float>(in_dim * out_dim);
  auto bias = r.get_vector<float>(out_dim);
  if (weights.size() != in_dim * out_dim || bias.size() != out_dim) {
    throw FormatError("model file: " + name + " weights do not match its shape (file corrupted?)");
  }
  auto finite = [](float v) { return std::isfinite(v); };
  if (!std::all_of(weights.begin(), weights.end(), finite) ||
      !std::all_of(bias.begin(), bias.end(), finite)) {
    throw FormatError("model file: " + name + " holds non-finite weights (file corrupted?)");
  }
  in = in_dim;
  out = out_dim;
  w = std::move(weights);
  b = std::move(bias);
}

Adam::Adam(size_t num_params, Config cfg) : cfg_(cfg), m_(num_params, 0.f), v_(num_params, 0.f) {}

void Adam::next_step() {
  ++t_;
  const double t = static_cast<double>(t_);
  const double c1 = 1.0 - std::pow(static_cast<double>(cfg_.beta1), t);
  c2_ = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg_.beta2), t));
  step_ = static_cast<float>(cfg_.lr / c1);
}

void Adam::update(size_t offset, float* __restrict param, const float* __restrict grad,
                  size_t n) {
  float* __restrict m = m_.data() + offset;
  float* __restrict v = v_.data() + offset;
  const float b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps, step = step_;
  const float a1 = 1.f - b1, a2 = 1.f - b2, inv_c2 = 1.f / c2_;
  size_t i = 0;
#if defined(__SSE2__)
  // std::sqrt keeps errno semantics, which stops GCC from vectorising this loop (the hottest
  // one in MLP training). sqrtps is the same correctly rounded IEEE sqrt and the operations
  // below mirror the scalar tail, so results do not depend on which path ran.
  const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), va1 = _mm_set1_ps(a1),
               va2 = _mm_set1_ps(a2), vic2 = _mm_set1_ps(inv_c2), veps = _mm_set1_ps(eps),
               vstep = _mm_set1_ps(step);
  for (; i + 4 <= n; i += 4) {
    const __m128 g = _mm_loadu_ps(grad + i);
    const __m128 mi = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(va1, g));
    const __m128 vi =
        _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)), _mm_mul_ps(_mm_mul_ps(va2, g), g));
    const __m128 den = _mm_add_ps(_mm_sqrt_ps(_mm_mul_ps(vi, vic2)), veps);
    const __m128 upd = _mm_div_ps(_mm_mul_ps(vstep, mi), den);
    _mm_storeu_ps(m + i, mi);
    _mm_storeu_ps(v + i, vi);
    _mm_storeu_ps(param + i, _mm_sub_ps(_mm_loadu_ps(param + i), upd));
  }
#endif
  for (; i < n; ++i) {
    m[i] = b1 * m[i] + a1 * grad[i];
    v[i] = b2 * v[i] + a2 * grad[i] * grad[i];
    param[i] = param[i] - step * m[i] / (std::sqrt(v[i] * inv_c2) + eps);
  }
}

void check_fit_inputs(const SparseMatrix& X, std::span<const int> y, int num_classes,
                      int min_classes) {
  if (num_classes < min_classes || static_cast<uint64_t>(num_classes) > kMaxClasses) {
    throw InputError("a surrogate needs at least " + std::to_string(min_classes) +
                     " label(s) (got " + std::to_string(num_classes) +
                     "); add traces with other teacher labels");
  }
  if (X.rows() == 0) throw InputError("no training rows: give the surrogate some traces");
  if (y.size() != X.rows()) {
    throw InputError("training data has " + std::to_string(X.rows()) + " rows but " +
                     std::to_string(y.size()) + " labels");
  }
  if (X.cols() > kMaxDim) {
    throw InputError("feature dimension " + std::to_string(X.cols()) + " is too large");
  }
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i] < 0 || y[i] >= num_classes) {
      throw InputError("training row " + std::to_string(i) + " has label index " +
                       std::to_string(y[i]) + ", outside [0, " + std::to_string(num_classes) +
                       ")");
    }
  }
  for (uint32_t j : X.indices()) {
    if (j >= X.cols()) {
      throw InputError("feature index " + std::to_string(j) + " is outside the dimension " +
                       std::to_string(X.cols()) + " (featurizer and data disagree)");
    }
  }
  for (float v : X.values()) {
    if (!std::isfinite(v)) {
      throw InputError("training features contain NaN or infinity; check the embeddings");
    }
  }
}

void check_version(uint32_t got, uint32_t expected, std::string_view model) {
  if (got != expected) {
    throw FormatError("model file: " + std::string(model) + " format version " +
                      std::to_string(got) + " is not supported (expected " +
                      std::to_string(expected) + "); refit the policy with this tracer");
  }
}

int epochs_for(size_t updates_per_epoch, int min_epochs, size_t min_updates, int max_epochs) {
  size_t per = std::max<size_t>(updates_per_epoch, 1);
  size_t need = (min_updates + per - 1) / per;
  return static_cast<int>(std::clamp<size_t>(std::max<size_t>(need, min_epochs), 1,
                                             static_cast<size_t>(max_epochs)));
}

}  // namespace tracer::models
