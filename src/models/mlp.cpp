// One-hidden-layer perceptron on sparse input: softmax(W2 relu(W1 x + b1) + b2).
//
// Trained with minibatch Adam for a fixed number of passes (more for tiny trace sets), inverted
// dropout on the hidden layer, and lazy Adam updates on W1 so a minibatch only touches the input
// rows it saw. Deterministic for a given FitContext::seed; single threaded.
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
constexpr size_t kMaxHidden = 512;  // predict_proba keeps the hidden layer on the stack
constexpr size_t kHidden = 128;
constexpr size_t kMinHidden = 32;
// W1 is dim x hidden floats and dominates the model file (budget: 20 MB for everything), so
// wide vocabularies get a narrower hidden layer. On Banking77, 64 units score as well as 128.
constexpr size_t kMaxFirstLayerWeights = 2'000'000;
constexpr size_t kBatch = 32;
constexpr float kLearningRate = 3e-3f;
constexpr float kDropout = 0.3f;          // on the hidden layer, training only
constexpr double kInitScale = 0.1;        // std of W1 entries
constexpr int kMinEpochs = 8;
constexpr size_t kMinExamples = 80'000;  // small trace sets get more passes
constexpr int kMaxEpochs = 300;
static_assert(kHidden <= kMaxHidden);

size_t hidden_units(size_t dim) {
  const size_t fit = kMaxFirstLayerWeights / std::max<size_t>(dim, 1) / 8 * 8;
  return std::clamp(fit, kMinHidden, kHidden);
}

class Mlp final : public Surrogate {
 public:
  explicit Mlp(std::string name) : name_(std::move(name)) {}

  std::string name() const override { return name_; }
  int num_classes() const override { return static_cast<int>(l2_.out); }

  void fit(const SparseMatrix& X, std::span<const int> y, int num_classes,
           const FitContext& ctx) override {
    models::check_fit_inputs(X, y, num_classes);
    const size_t n = X.rows(), D = X.cols(), C = static_cast<size_t>(num_classes);
    const size_t H = hidden_units(D);
    models::Rng rng(ctx.seed);
    Affine l1, l2;
    l1.resize(D, H);
    l2.resize(H, C);
    // Rows of X are roughly unit norm, so N(0, s^2) W1 gives pre-activations of scale s.
    for (float& w : l1.w) w = static_cast<float>(kInitScale * rng.normal());
    const double s2 = std::sqrt(2.0 / static_cast<double>(H + C));  // Glorot
    for (float& w : l2.w) w = static_cast<float>(s2 * rng.normal());

    // Parameter layout in the Adam moments: W1 | b1 | W2 | b2.
    const size_t off_b1 = D * H, off_w2 = off_b1 + H, off_b2 = off_w2 + H * C;
    models::Adam adam(off_b2 + C, {.lr = kLearningRate});
    std::vector<float> g1(D * H, 0.f), gb1(H), gw2(H * C), gb2(C);
    std::vector<uint8_t> touched(D, 0);
    std::vector<uint32_t> touched_rows;
    std::vector<float> a(H), da(H), p(C);
    const float keep = 1.f - kDropout, inv_keep = 1.f / keep;

    std::vector<uint32_t> order = models::shuffled_range(n, rng);
    const int epochs = models::epochs_for(n, kMinEpochs, kMinExamples, kMaxEpochs);
    for (int e = 0; e < epochs; ++e) {
      models::shuffle(order, rng);
      for (size_t start = 0; start < n; start += kBatch) {
        const size_t end = std::min(n, start + kBatch);
        const float inv_b = 1.f / static_cast<float>(end - start);
        std::fill(gb1.begin(), gb1.end(), 0.f);
        std::fill(gw2.begin(), gw2.end(), 0.f);
        std::fill(gb2.begin(), gb2.end(), 0.f);
        for (size_t b = start; b < end; ++b) {
          const uint32_t i = order[b];
          SparseRow x = X.row(i);
          l1.forward_sparse(x, a.data());
          for (size_t h = 0; h < H; ++h) {
            float v = std::max(a[h], 0.f);
            if (kDropout > 0.f) v = rng.uniform() < keep ? v * inv_keep : 0.f;  // inverted dropout
            a[h] = v;
          }
          l2.forward_dense(a.data(), p.data());
          models::softmax_inplace(p);
          p[static_cast<size_t>(y[i])] -= 1.f;
          for (float& g : p) g *= inv_b;
          models::axpy(1.f, p.data(), gb2.data(), C);
          for (size_t h = 0; h < H; ++h) {
            // a[h] == 0 means relu-inactive or dropped: no gradient flows either way.
            if (a[h] == 0.f) {
              da[h] = 0.f;
              continue;
            }
            models::axpy(a[h], p.data(), gw2.data() + h * C, C);
            da[h] = models::dot(l2.row(h), p.data(), C) * (kDropout > 0.f ? inv_keep : 1.f);
          }
          models::axpy(1.f, da.data(), gb1.data(), H);
          for (size_t k = 0; k < x.nnz(); ++k) {
            const uint32_t j = x.idx[k];
            if (!touched[j]) {
              touched[j] = 1;
              touched_rows.push_back(j);
            }
            models::axpy(x.val[k], da.data(), g1.data() + j * H, H);
          }
        }
        adam.next_step();
        adam.update(off_b1, l1.b.data(), gb1.data(), H);
        adam.update(off_w2, l2.w.data(), gw2.data(), H * C);
        adam.update(off_b2, l2.b.data(), gb2.data(), C);
        // Rows update independently, so their (seeded, data-driven) order is irrelevant.
        for (uint32_t j : touched_rows) {
          float* g = g1.data() + j * H;
          adam.update(j * H, l1.row(j), g, H);
          std::fill(g, g + H, 0.f);
          touched[j] = 0;
        }
        touched_rows.clear();
      }
    }
    l1_ = std::move(l1);
    l2_ = std::move(l2);
  }

  void predict_proba(SparseRow x, std::span<float> out) const override {
    if (out.size() != l2_.out) throw InputError("predict_proba: output size != num_classes");
    float hidden[kMaxHidden];
    l1_.forward_sparse(x, hidden);
    for (size_t h = 0; h < l1_.out; ++h) {
      // NaN from inf - inf on absurd inputs: treat as inactive rather than spread it.
      hidden[h] = hidden[h] > 0.f ? hidden[h] : 0.f;
    }
    l2_.forward_dense(hidden, out.data());
    models::softmax_inplace(out);
  }

  void save(BinaryWriter& w) const override {
    w.put<uint32_t>(kFormatVersion);
    l1_.save(w);
    l2_.save(w);
  }

  void load(BinaryReader& r) override {
    models::check_version(r.get<uint32_t>(), kFormatVersion, "MLP");
    Affine l1, l2;
    l1.load(r, "MLP hidden layer", 0, 0);
    if (l1.out > kMaxHidden) throw FormatError("model file: MLP hidden layer too wide");
    l2.load(r, "MLP output layer", l1.out, 0);
    if (l2.out < 2) throw FormatError("model file: MLP with < 2 classes");
    l1_ = std::move(l1);
    l2_ = std::move(l2);
  }

 private:
  std::string name_;
  Affine l1_, l2_;
};

}  // namespace

std::unique_ptr<Surrogate> make_mlp(const std::string& name) {
  return std::make_unique<Mlp>(name);
}

}  // namespace tracer
