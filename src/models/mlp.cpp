// One-hidden-layer perceptron on sparse input: softmax(W2 relu(W1 x + b1) + b2).
//
// Trained with minibatch Adam for a fixed number of passes (more for tiny trace sets), inverted
// dropout on the hidden layer, and lazy Adam updates on W1 so a minibatch only touches the input
// rows it saw. Deterministic for a given FitContext::seed; single threaded. The hidden width is
// 128, narrowed for wide inputs so W1 stays <= 8 MB (96 units on Banking77 TF-IDF, 20.5k
// features).
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
constexpr float kDropout = 0.3f;    // on the hidden layer, training only (< 1)
constexpr double kInitScale = 0.1;  // std of W1 entries
constexpr int kMinEpochs = 8;
constexpr size_t kMinSteps = 1000;  // minibatches; small trace sets get more passes
constexpr int kMaxEpochs = 300;
static_assert(kHidden <= kMaxHidden);

size_t hidden_units(size_t dim) {
  const size_t fit = kMaxFirstLayerWeights / std::max<size_t>(dim, 1) / 8 * 8;
  return std::clamp(fit, kMinHidden, kHidden);
}

// Minibatch training state: gradient buffers and Adam moments for W1 | b1 | W2 | b2.
class Trainer {
 public:
  Trainer(Affine& l1, Affine& l2)
      : l1_(l1),
        l2_(l2),
        H_(l1.out),
        C_(l2.out),
        off_b1_(l1.in * H_),
        off_w2_(off_b1_ + H_),
        off_b2_(off_w2_ + H_ * C_),
        adam_(off_b2_ + C_, {.lr = kLearningRate}),
        g1_(l1.in * H_, 0.f),
        gb1_(H_, 0.f),
        gw2_(H_ * C_, 0.f),
        gb2_(C_, 0.f),
        touched_(l1.in, 0),
        a_(H_),
        da_(H_),
        p_(C_) {}

  // Adds weight * the gradient of one example's cross-entropy to the batch gradient.
  void add_example(SparseRow x, size_t label, float weight, models::Rng& rng) {
    l1_.forward_sparse(x, a_.data());
    for (size_t h = 0; h < H_; ++h) {
      const float v = std::max(a_[h], 0.f);
      a_[h] = rng.uniform() < kKeep ? v / kKeep : 0.f;  // inverted dropout
    }
    l2_.forward_dense(a_.data(), p_.data());
    models::softmax_inplace(p_);
    p_[label] -= 1.f;  // gradient wrt the output scores
    for (float& g : p_) g *= weight;
    models::axpy(1.f, p_.data(), gb2_.data(), C_);
    for (size_t h = 0; h < H_; ++h) {
      if (a_[h] == 0.f) {  // relu-inactive or dropped: no gradient flows
        da_[h] = 0.f;
        continue;
      }
      models::axpy(a_[h], p_.data(), gw2_.data() + h * C_, C_);
      da_[h] = models::dot(l2_.row(h), p_.data(), C_) / kKeep;
    }
    models::axpy(1.f, da_.data(), gb1_.data(), H_);
    for (size_t k = 0; k < x.nnz(); ++k) {
      const uint32_t j = x.idx[k];
      if (!touched_[j]) {
        touched_[j] = 1;
        touched_rows_.push_back(j);
      }
      models::axpy(x.val[k], da_.data(), g1_.data() + j * H_, H_);
    }
  }

  // Applies the batch gradient (W1 only on the rows the batch touched) and clears it.
  void step() {
    adam_.next_step();
    adam_.update(off_b1_, l1_.b.data(), gb1_.data(), H_);
    adam_.update(off_w2_, l2_.w.data(), gw2_.data(), H_ * C_);
    adam_.update(off_b2_, l2_.b.data(), gb2_.data(), C_);
    // Rows update independently, so their (seeded, data-driven) order is irrelevant.
    for (uint32_t j : touched_rows_) {
      float* g = g1_.data() + j * H_;
      adam_.update(j * H_, l1_.row(j), g, H_);
      std::fill(g, g + H_, 0.f);
      touched_[j] = 0;
    }
    touched_rows_.clear();
    std::fill(gb1_.begin(), gb1_.end(), 0.f);
    std::fill(gw2_.begin(), gw2_.end(), 0.f);
    std::fill(gb2_.begin(), gb2_.end(), 0.f);
  }

 private:
  static constexpr float kKeep = 1.f - kDropout;
  Affine& l1_;
  Affine& l2_;
  const size_t H_, C_, off_b1_, off_w2_, off_b2_;
  models::Adam adam_;
  std::vector<float> g1_, gb1_, gw2_, gb2_;
  std::vector<uint8_t> touched_;
  std::vector<uint32_t> touched_rows_;
  std::vector<float> a_, da_, p_;  // hidden activations, their gradient, output gradient
};

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

    Trainer trainer(l1, l2);
    std::vector<uint32_t> order = models::shuffled_range(n, rng);
    const size_t batches = (n + kBatch - 1) / kBatch;
    const int epochs = models::epochs_for(batches, kMinEpochs, kMinSteps, kMaxEpochs);
    for (int e = 0; e < epochs; ++e) {
      models::shuffle(order, rng);
      for (size_t start = 0; start < n; start += kBatch) {
        const size_t end = std::min(n, start + kBatch);
        const float weight = 1.f / static_cast<float>(end - start);
        for (size_t b = start; b < end; ++b) {
          trainer.add_example(X.row(order[b]), static_cast<size_t>(y[order[b]]), weight, rng);
        }
        trainer.step();
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
