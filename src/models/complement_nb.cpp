// Complement naive Bayes (Rennie et al. 2003), as scikit-learn's ComplementNB(alpha=1,
// norm=False): class c's weight for feature j is -log of the smoothed share of j among the
// features of every *other* class, and the score is x . w_c (no class prior).
//
// Calibration: those scores are on an arbitrary scale, so probabilities are softmax(beta * score)
// with one temperature beta fitted by maximum likelihood on a seeded 10% of the training rows
// (weights from the other 90%); the weights are then refitted on every row and beta folded in.
// With fewer than kMinHoldout held-out rows, beta is fitted in-sample on all rows instead.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/factories.hpp"
#include "models/linear_math.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using models::Affine;

constexpr uint32_t kFormatVersion = 1;
constexpr double kAlpha = 1.0;      // additive (Laplace) smoothing
constexpr size_t kMinHoldout = 20;  // below this the temperature is fitted in-sample
constexpr double kMaxBeta = 1e6;

// CNB weights from the given rows (input-major, zero bias).
Affine cnb_weights(const SparseMatrix& X, std::span<const int> y, std::span<const uint32_t> rows,
                   size_t C) {
  const size_t D = X.cols();
  std::vector<double> count(D * C, 0.0);  // per-feature, per-class feature mass
  for (uint32_t i : rows) {
    SparseRow x = X.row(i);
    const size_t c = static_cast<size_t>(y[i]);
    for (size_t k = 0; k < x.nnz(); ++k) count[x.idx[k] * C + c] += x.val[k];
  }
  // comp[j][c] = alpha + mass of j in the classes other than c.
  std::vector<double> denom(C, 0.0);
  for (size_t j = 0; j < D; ++j) {
    double* row = count.data() + j * C;
    double all = 0.0;
    for (size_t c = 0; c < C; ++c) all += row[c];
    for (size_t c = 0; c < C; ++c) {
      row[c] = std::max(all - row[c], 0.0) + kAlpha;  // max() absorbs rounding below zero
      denom[c] += row[c];
    }
  }
  for (double& d : denom) d = std::log(d);
  Affine m;
  m.resize(D, C);
  for (size_t j = 0; j < D; ++j) {
    for (size_t c = 0; c < C; ++c) {
      m.w[j * C + c] = static_cast<float>(denom[c] - std::log(count[j * C + c]));
    }
  }
  return m;
}

// Derivative in beta of the mean held-out NLL of softmax(beta * s): E_p[s] - s_y, averaged.
// The NLL is convex in beta, so the root of this is the maximum-likelihood temperature.
double nll_slope(const std::vector<float>& scores, std::span<const int> labels, size_t C,
                 double beta) {
  double slope = 0.0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const float* s = scores.data() + i * C;
    const double mx = *std::max_element(s, s + C);
    double z = 0.0, ez = 0.0;
    for (size_t c = 0; c < C; ++c) {
      const double e = std::exp(beta * (s[c] - mx));
      z += e;
      ez += e * s[c];
    }
    slope += ez / z - s[static_cast<size_t>(labels[i])];
  }
  return slope / static_cast<double>(labels.size());
}

double fit_temperature(const std::vector<float>& scores, std::span<const int> labels, size_t C) {
  // At beta = 0 the slope is mean(s) - s_y; if that is >= 0 the scores carry no signal on
  // held-out rows and uniform probabilities are the honest answer.
  if (nll_slope(scores, labels, C, 0.0) >= 0.0) return 0.0;
  double lo = 0.0, hi = 1.0;
  while (hi < kMaxBeta && nll_slope(scores, labels, C, hi) < 0.0) {
    lo = hi;
    hi *= 2.0;
  }
  if (hi >= kMaxBeta) return kMaxBeta;  // separable held-out set: as sharp as allowed
  for (int it = 0; it < 50 && hi - lo > 1e-6 * hi; ++it) {
    const double mid = 0.5 * (lo + hi);
    (nll_slope(scores, labels, C, mid) < 0.0 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

class ComplementNB final : public Surrogate {
 public:
  explicit ComplementNB(std::string name) : name_(std::move(name)) {}

  std::string name() const override { return name_; }
  int num_classes() const override { return static_cast<int>(model_.out); }

  void fit(const SparseMatrix& X, std::span<const int> y, int num_classes,
           const FitContext& ctx) override {
    models::check_fit_inputs(X, y, num_classes);
    for (float v : X.values()) {
      if (v < 0.f) {
        throw InputError("complement naive Bayes needs non-negative features (counts or "
                         "TF-IDF); this featurizer produces negative values");
      }
    }
    const size_t n = X.rows(), C = static_cast<size_t>(num_classes);
    models::Rng rng(ctx.seed);
    std::vector<uint32_t> order = models::shuffled_range(n, rng);
    const size_t n_hold = n / 10;
    std::span<const uint32_t> fit_rows(order), hold_rows(order);
    if (n_hold >= kMinHoldout) {
      hold_rows = fit_rows.first(n_hold);
      fit_rows = fit_rows.subspan(n_hold);
    }

    Affine probe = cnb_weights(X, y, fit_rows, C);
    std::vector<float> scores(hold_rows.size() * C);
    std::vector<int> labels(hold_rows.size());
    for (size_t k = 0; k < hold_rows.size(); ++k) {
      probe.forward_sparse(X.row(hold_rows[k]), scores.data() + k * C);
      labels[k] = y[hold_rows[k]];
    }
    beta_ = fit_temperature(scores, labels, C);

    model_ = hold_rows.size() == n ? std::move(probe) : cnb_weights(X, y, order, C);
    for (float& w : model_.w) w = static_cast<float>(w * beta_);
  }

  void predict_proba(SparseRow x, std::span<float> out) const override {
    if (out.size() != model_.out) throw InputError("predict_proba: output size != num_classes");
    model_.forward_sparse(x, out.data());
    models::softmax_inplace(out);
  }

  void save(BinaryWriter& w) const override {
    w.put<uint32_t>(kFormatVersion);
    w.put<double>(beta_);
    model_.save(w);
  }

  void load(BinaryReader& r) override {
    models::check_version(r.get<uint32_t>(), kFormatVersion, "complement naive Bayes");
    double beta = r.get<double>();
    if (!(beta >= 0.0 && beta <= kMaxBeta)) {
      throw FormatError("model file: complement naive Bayes temperature out of range");
    }
    Affine m;
    m.load(r, "complement naive Bayes", 0, 0);
    if (m.out < 2) throw FormatError("model file: complement naive Bayes with < 2 classes");
    beta_ = beta;
    model_ = std::move(m);
  }

 private:
  std::string name_;
  double beta_ = 1.0;  // fitted temperature, already folded into model_.w
  Affine model_;
};

}  // namespace

std::unique_ptr<Surrogate> make_complement_nb(const std::string& name) {
  return std::make_unique<ComplementNB>(name);
}

}  // namespace tracer
