#include "gate/acceptor.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <string>

#include "util/error.hpp"

namespace tracer {
namespace {

constexpr uint32_t kMagic = 0x54504341;  // "ACPT", catches a misaligned read early
constexpr uint32_t kFormatVersion = 1;
constexpr double kL2 = 1.0;  // on standardised weights; keeps separable data finite
constexpr int kMaxNewtonIter = 100;
constexpr int kF = Acceptor::kFeatures;

float clamp01(float x) { return x > 0 ? (x < 1 ? x : 1) : 0; }  // NaN → 0

// The fixed feature expansion: the signals plus the squares and products that let a linear
// model bend (confidence saturates; a confident label with a bad prior is still risky).
void expand(const Signals& s, std::array<double, kF>& x) {
  const auto& v = s.v;
  for (int i = 0; i < Signals::kCount; ++i) x[i] = v[i];
  x[7] = double(v[0]) * v[0];
  x[8] = double(v[2]) * v[2];
  x[9] = double(v[3]) * v[3];
  x[10] = double(v[0]) * v[4];
  x[11] = double(v[2]) * v[5];
  x[12] = double(v[0]) * v[6];
}

// log(1 + e^z) without overflow.
double softplus(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }

double sigmoid(double z) {
  if (z >= 0) return 1 / (1 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1 + e);
}

}  // namespace

Signals compute_signals(std::span<const float> probs, std::span<const float> label_prior,
                        float known_fraction, float ngrams, int* predicted) {
  if (probs.empty()) throw InputError("compute_signals: empty probability vector");
  const int K = static_cast<int>(probs.size());
  double sum = 0;
  for (float p : probs)
    if (p > 0 && std::isfinite(p)) sum += p;
  const bool degenerate = !(sum > 0);  // all zero / NaN: treat as uniform
  const double inv = degenerate ? 0 : 1 / sum;
  auto clean = [&](float p) -> double {
    if (degenerate) return 1.0 / K;
    return (p > 0 && std::isfinite(p)) ? p * inv : 0.0;
  };

  int best = 0;
  double top1 = -1, top2 = 0, entropy = 0;
  for (int i = 0; i < K; ++i) {
    const double q = clean(probs[i]);
    if (q > top1) {
      top2 = std::max(top1, 0.0);
      top1 = q;
      best = i;
    } else if (q > top2) {
      top2 = q;
    }
    if (q > 0) entropy -= q * std::log(q);
  }
  const double norm_entropy = K > 1 ? entropy / std::log(static_cast<double>(K)) : 0.0;

  Signals s;
  s.v[0] = clamp01(static_cast<float>(top1));
  s.v[1] = clamp01(static_cast<float>(top2));
  s.v[2] = clamp01(static_cast<float>(top1 - top2));
  s.v[3] = clamp01(static_cast<float>(1 - norm_entropy));
  float prior = 0.5f;
  if (best < static_cast<int>(label_prior.size()) && std::isfinite(label_prior[best]))
    prior = clamp01(label_prior[best]);
  s.v[4] = prior;
  s.v[5] = clamp01(known_fraction);
  s.v[6] = (ngrams > 0 && std::isfinite(ngrams)) ? std::log1p(ngrams) / 5.0f : 0.0f;
  if (predicted) *predicted = best;
  return s;
}

void Acceptor::fit(std::span<const Signals> rows, std::span<const uint8_t> agree, uint64_t seed) {
  (void)seed;
  if (rows.size() != agree.size())
    throw InputError("acceptor: " + std::to_string(rows.size()) + " signal rows but " +
                     std::to_string(agree.size()) + " agreement flags");
  fallback_ = true;
  mean_.fill(0);
  scale_.fill(1);
  weights_.fill(0);

  size_t pos = 0;
  for (uint8_t a : agree) pos += a ? 1 : 0;
  const size_t n = rows.size();
  const size_t neg = n - pos;
  if (pos < static_cast<size_t>(kMinRowsPerClass) || neg < static_cast<size_t>(kMinRowsPerClass))
    return;

  // Design matrix: standardised expansion plus a bias column.
  Eigen::MatrixXd X(n, kF + 1);
  Eigen::VectorXd y(n);
  std::array<double, kF> x{};
  for (size_t i = 0; i < n; ++i) {
    for (float v : rows[i].v)
      if (!std::isfinite(v))
        throw InputError("acceptor: non-finite confidence signal in training row " +
                         std::to_string(i));
    expand(rows[i], x);
    for (int j = 0; j < kF; ++j) X(i, j) = x[j];
    X(i, kF) = 1;
    y(i) = agree[i] ? 1 : 0;
  }
  std::array<double, kF> mean{}, scale{};
  for (int j = 0; j < kF; ++j) {
    const double m = X.col(j).mean();
    const double var = (X.col(j).array() - m).square().mean();
    const double sd = std::sqrt(var);
    mean[j] = m;
    scale[j] = sd > 1e-9 ? 1 / sd : 1;
    X.col(j) = (X.col(j).array() - m) * scale[j];
  }

  Eigen::VectorXd reg = Eigen::VectorXd::Constant(kF + 1, kL2);
  reg(kF) = 1e-9;  // the bias is not shrunk
  Eigen::VectorXd w = Eigen::VectorXd::Zero(kF + 1);
  const double rate = static_cast<double>(pos) / n;
  w(kF) = std::log(rate / (1 - rate));

  auto objective = [&](const Eigen::VectorXd& ww) {
    const Eigen::VectorXd z = X * ww;
    double f = 0;
    for (size_t i = 0; i < n; ++i) f += softplus(z(i)) - y(i) * z(i);
    return f + 0.5 * (reg.array() * ww.array().square()).sum();
  };

  double f = objective(w);
  for (int it = 0; it < kMaxNewtonIter; ++it) {
    const Eigen::VectorXd z = X * w;
    Eigen::VectorXd mu(n), h(n);
    for (size_t i = 0; i < n; ++i) {
      mu(i) = sigmoid(z(i));
      h(i) = std::max(mu(i) * (1 - mu(i)), 1e-12);
    }
    const Eigen::VectorXd grad = X.transpose() * (mu - y) + reg.cwiseProduct(w);
    Eigen::MatrixXd H = X.transpose() * h.asDiagonal() * X;
    H.diagonal() += reg;
    const Eigen::VectorXd dir = H.ldlt().solve(grad);
    if (!dir.allFinite()) break;
    // Backtracking keeps every step a descent step, so the loop cannot oscillate.
    double t = 1;
    const double slope = grad.dot(dir);
    Eigen::VectorXd next = w - dir;
    double f_next = objective(next);
    while (f_next > f - 1e-4 * t * slope && t > 1e-10) {
      t *= 0.5;
      next = w - t * dir;
      f_next = objective(next);
    }
    if (!(f_next <= f)) break;
    const double moved = (t * dir).cwiseAbs().maxCoeff();
    w = next;
    f = f_next;
    if (moved < 1e-10 || grad.cwiseAbs().maxCoeff() < 1e-10) break;
  }
  if (!w.allFinite()) return;

  mean_ = mean;
  scale_ = scale;
  for (int j = 0; j <= kF; ++j) weights_[j] = w(j);
  fallback_ = false;
}

float Acceptor::score(const Signals& s) const {
  if (fallback_) return clamp01(s.v[0]);
  std::array<double, kF> x;
  expand(s, x);
  double z = weights_[kF];
  for (int j = 0; j < kF; ++j) z += weights_[j] * (x[j] - mean_[j]) * scale_[j];
  if (std::isnan(z)) return 0;  // garbage signals: defer
  return clamp01(static_cast<float>(sigmoid(z)));
}

void Acceptor::save(BinaryWriter& w) const {
  w.put<uint32_t>(kMagic);
  w.put<uint32_t>(kFormatVersion);
  w.put<uint8_t>(fallback_ ? 1 : 0);
  w.put<uint32_t>(kF);
  w.put_vector(std::span<const double>(mean_));
  w.put_vector(std::span<const double>(scale_));
  w.put_vector(std::span<const double>(weights_));
}

void Acceptor::load(BinaryReader& r) {
  if (r.get<uint32_t>() != kMagic)
    throw FormatError("model file: acceptor section not found (file corrupted?)");
  const auto version = r.get<uint32_t>();
  if (version != kFormatVersion)
    throw FormatError("model file: acceptor format version " + std::to_string(version) +
                      " is not supported by this tracer (expected " +
                      std::to_string(kFormatVersion) + "); refit the policy");
  const auto flag = r.get<uint8_t>();
  if (flag > 1) throw FormatError("model file: acceptor flag corrupted");
  if (r.get<uint32_t>() != static_cast<uint32_t>(kF))
    throw FormatError("model file: acceptor feature count mismatch (file corrupted?)");
  auto read_exact = [&](size_t len, auto& out) {
    const auto v = r.get_vector<double>(len);
    if (v.size() != len) throw FormatError("model file: acceptor array size mismatch");
    for (size_t i = 0; i < len; ++i) {
      if (!std::isfinite(v[i])) throw FormatError("model file: acceptor has non-finite values");
      out[i] = v[i];
    }
  };
  std::array<double, kF> mean{}, scale{};
  std::array<double, kF + 1> weights{};
  read_exact(kF, mean);
  read_exact(kF, scale);
  read_exact(kF + 1, weights);
  fallback_ = flag == 1;
  mean_ = mean;
  scale_ = scale;
  weights_ = weights;
}

}  // namespace tracer
