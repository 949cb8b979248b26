// Multinomial (softmax) logistic regression with an L2 penalty, trained by plain SGD.
//
// Objective: mean cross-entropy + l2/2 * ||W||^2 (bias unpenalised); `l2` is therefore the
// per-example penalty, 1/(n*C) in liblinear/scikit-learn terms. SGD uses the weight-scale trick
// (W = s * V; the decay multiplies s), so each step costs O(nnz * classes) however many features
// there are, and the learning rate decays linearly to zero over a fixed number of passes. Single
// threaded: the per-example softmax couples all classes, and this is already fast
// (about 0.03 s per pass over Banking77).
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
constexpr float kLearningRate = 1.0f;   // rows are L2-normalised TF-IDF: a step of ~1 is stable
constexpr int kMinEpochs = 12;
constexpr size_t kMinUpdates = 200'000;  // small trace sets get more passes
constexpr int kMaxEpochs = 500;

class Logistic final : public Surrogate {
 public:
  Logistic(std::string name, double l2) : name_(std::move(name)), l2_(l2) {
    if (!(l2 >= 0.0) || !std::isfinite(l2)) {
      throw InputError("logistic regression: L2 penalty must be finite and >= 0");
    }
  }

  std::string name() const override { return name_; }
  int num_classes() const override { return static_cast<int>(model_.out); }

  void fit(const SparseMatrix& X, std::span<const int> y, int num_classes,
           const FitContext& ctx) override {
    models::check_fit_inputs(X, y, num_classes);
    const size_t n = X.rows(), C = static_cast<size_t>(num_classes);
    Affine v;  // W = scale * v.w; bias is kept unscaled in v.b
    v.resize(X.cols(), C);
    double scale = 1.0;
    std::vector<float> p(C);

    models::Rng rng(ctx.seed);
    std::vector<uint32_t> order = models::shuffled_range(n, rng);
    const int epochs = models::epochs_for(n, kMinEpochs, kMinUpdates, kMaxEpochs);
    const double total = static_cast<double>(epochs) * static_cast<double>(n);
    // Keeps the per-step decay factor 1 - eta * l2 >= 1/2 however large l2 is.
    const double eta0 = std::min<double>(kLearningRate, 0.5 / std::max(l2_, 1e-300));
    double t = 0;
    for (int e = 0; e < epochs; ++e) {
      models::shuffle(order, rng);
      for (uint32_t i : order) {
        const double eta = eta0 * (1.0 - t / total);
        t += 1;
        SparseRow x = X.row(i);
        // Scores = b + scale * x V.
        std::fill(p.begin(), p.end(), 0.f);
        for (size_t k = 0; k < x.nnz(); ++k) models::axpy(x.val[k], v.row(x.idx[k]), p.data(), C);
        for (size_t c = 0; c < C; ++c) p[c] = static_cast<float>(scale * p[c]) + v.b[c];
        models::softmax_inplace(p);
        p[static_cast<size_t>(y[i])] -= 1.f;  // p is now the gradient wrt the scores

        scale *= 1.0 - eta * l2_;
        if (scale < 1e-4) {  // fold the scale back in before V grows too large
          for (float& w : v.w) w = static_cast<float>(w * scale);
          scale = 1.0;
        }
        const double step = eta / scale;
        for (size_t k = 0; k < x.nnz(); ++k) {
          models::axpy(static_cast<float>(-step * x.val[k]), p.data(), v.row(x.idx[k]), C);
        }
        models::axpy(static_cast<float>(-eta), p.data(), v.b.data(), C);
      }
    }
    for (float& w : v.w) w = static_cast<float>(w * scale);
    model_ = std::move(v);
  }

  void predict_proba(SparseRow x, std::span<float> out) const override {
    if (out.size() != model_.out) throw InputError("predict_proba: output size != num_classes");
    model_.forward_sparse(x, out.data());
    models::softmax_inplace(out);
  }

  void save(BinaryWriter& w) const override {
    w.put<uint32_t>(kFormatVersion);
    w.put<double>(l2_);
    model_.save(w);
  }

  void load(BinaryReader& r) override {
    models::check_version(r.get<uint32_t>(), kFormatVersion, "logistic regression");
    double l2 = r.get<double>();
    Affine m;
    m.load(r, "logistic regression", 0, 0);
    if (m.out < 2) throw FormatError("model file: logistic regression with < 2 classes");
    l2_ = l2;
    model_ = std::move(m);
  }

 private:
  std::string name_;
  double l2_;
  Affine model_;
};

}  // namespace

std::unique_ptr<Surrogate> make_logistic(const std::string& name, double l2) {
  return std::make_unique<Logistic>(name, l2);
}

}  // namespace tracer
