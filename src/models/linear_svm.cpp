// One-vs-rest linear SVM (L2-regularised squared-hinge loss, C = 1, bias term), calibrated to
// probabilities by a softmax over the K decision values with one fitted temperature.
//
// Why not liblinear itself: liblinear 2.3's dual coordinate descent draws its permutations with
// the C library's rand(), whose state is process-global. Seeding it with srand() would be global
// mutable state, and two fits running in different threads (the zoo fits candidates in parallel)
// interleave their draws, so neither determinism nor thread safety would hold. So this file runs
// the same solver liblinear uses for L2R_L2LOSS_SVC_DUAL (Hsieh et al. 2008, "A Dual Coordinate
// Descent Method for Large-scale Linear SVM", with liblinear's shrinking and stopping rule) with
// a private RNG seeded from FitContext::seed. It also works on our CSR rows directly, with no
// copy into liblinear's feature_node format.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <thread>
#include <vector>

#include "models/factories.hpp"
#include "models/linear_math.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

constexpr uint32_t kMagic = 0x4d565354;  // "TSVM"
constexpr uint32_t kVersion = 1;
constexpr double kC = 1.0;
constexpr double kBias = 1.0;       // value of the constant feature appended to every row
constexpr double kTolerance = 0.1;  // liblinear's default eps for this solver
constexpr int kMaxIter = 1000;
// One row in kHoldOutShare (stratified) is held out to fit the temperature on decision values
// of a model that did not see it. The final fit on all rows then starts from that model's dual
// solution, so calibration costs well under one extra fit.
constexpr size_t kHoldOutShare = 5;
constexpr size_t kMinRowsToCalibrate = 20;
// Bounds of the fitted inverse temperature; the upper one caps it on separable data.
constexpr double kMinScale = 1e-2;
constexpr double kMaxScale = 1e3;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A seed for one (purpose, index) stream, independent of which thread consumes it.
uint64_t derive_seed(uint64_t seed, uint64_t purpose, uint64_t index) {
  uint64_t s = seed ^ (purpose * 0xd1b54a32d192ed03ULL);
  splitmix64(s);
  s ^= index * 0x8cb92ba72f3d8dd7ULL;
  return splitmix64(s);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // Uniform in [0, n) up to a modulo bias of n / 2^64, irrelevant for shuffling.
  size_t below(size_t n) { return static_cast<size_t>(splitmix64(state_) % n); }

 private:
  uint64_t state_;
};

// Scratch space of one worker thread, reused across the binary problems it solves.
struct Workspace {
  std::vector<double> w;      // D + 1 (last entry: bias weight)
  std::vector<double> alpha;  // one dual variable per training row
  std::vector<size_t> index;  // permutation of the active rows
};

// Solves min_w 0.5 |w|^2 + C sum_i max(0, 1 - y_i w.x_i)^2 over `rows` by dual coordinate
// descent, where y_i = +1 iff y[row] == positive. qd[i] is the diagonal of the dual Hessian.
// Starts from the dual point `warm` (one alpha per row; empty = zero) and leaves the solution
// in ws.w and ws.alpha.
void solve_binary(const SparseMatrix& X, std::span<const size_t> rows, std::span<const int> y,
                  int positive, std::span<const double> qd, std::span<const double> warm,
                  uint64_t seed, Workspace& ws) {
  const size_t n = rows.size();
  const size_t dim = X.cols();
  const double diag = 0.5 / kC;
  ws.w.assign(dim + 1, 0.0);
  double* w = ws.w.data();
  if (warm.empty()) {
    ws.alpha.assign(n, 0.0);
  } else {
    ws.alpha.assign(warm.begin(), warm.end());
    for (size_t i = 0; i < n; ++i) {  // w = sum_i alpha_i y_i x_i
      if (ws.alpha[i] == 0.0) continue;
      const double d = ws.alpha[i] * (y[rows[i]] == positive ? 1.0 : -1.0);
      const SparseRow x = X.row(rows[i]);
      for (size_t j = 0; j < x.nnz(); ++j) w[x.idx[j]] += d * x.val[j];
      w[dim] += d * kBias;
    }
  }
  ws.index.resize(n);
  for (size_t i = 0; i < n; ++i) ws.index[i] = i;
  Rng rng(seed);

  size_t active = n;
  double pg_max_old = std::numeric_limits<double>::infinity();
  for (int iter = 0; iter < kMaxIter; ++iter) {
    double pg_max_new = -std::numeric_limits<double>::infinity();
    double pg_min_new = std::numeric_limits<double>::infinity();
    for (size_t s = 0; s < active; ++s) std::swap(ws.index[s], ws.index[s + rng.below(active - s)]);
    for (size_t s = 0; s < active; ++s) {
      const size_t i = ws.index[s];
      const SparseRow x = X.row(rows[i]);
      const double yi = y[rows[i]] == positive ? 1.0 : -1.0;
      double wx = w[dim] * kBias;
      for (size_t j = 0; j < x.nnz(); ++j) wx += w[x.idx[j]] * x.val[j];
      double& a = ws.alpha[i];
      const double g = yi * wx - 1.0 + a * diag;
      double pg = 0.0;
      if (a == 0.0) {
        if (g > pg_max_old) {  // shrink: likely to stay at the bound
          --active;
          std::swap(ws.index[s], ws.index[active]);
          --s;
          continue;
        }
        if (g < 0.0) pg = g;
      } else {
        pg = g;
      }
      pg_max_new = std::max(pg_max_new, pg);
      pg_min_new = std::min(pg_min_new, pg);
      if (std::fabs(pg) > 1e-12) {
        const double a_old = a;
        a = std::max(a - g / qd[i], 0.0);
        const double d = (a - a_old) * yi;
        for (size_t j = 0; j < x.nnz(); ++j) w[x.idx[j]] += d * x.val[j];
        w[dim] += d * kBias;
      }
    }
    if (pg_max_new - pg_min_new <= kTolerance) {
      if (active == n) break;
      active = n;  // converged on the active set: verify on all rows before stopping
      pg_max_old = std::numeric_limits<double>::infinity();
      continue;
    }
    pg_max_old = pg_max_new > 0.0 ? pg_max_new : std::numeric_limits<double>::infinity();
  }
}

struct OvrModel {
  // Feature-major, W[d * K + k] (row D holds the biases), so scoring a sparse row reads K
  // contiguous floats per non-zero.
  std::vector<float> weights;
  std::vector<std::vector<double>> alphas;  // [class][position in rows]: the dual solution
};

// Trains K one-vs-rest problems on `rows`, optionally from the dual points `warm` (indexed like
// OvrModel::alphas). Each class has its own RNG stream and output slot, so the result does not
// depend on the number of threads or their scheduling.
OvrModel train_ovr(const SparseMatrix& X, std::span<const size_t> rows, std::span<const int> y,
                   int num_classes, uint64_t seed, int threads,
                   const std::vector<std::vector<double>>& warm) {
  const size_t dim = X.cols();
  const size_t k_count = static_cast<size_t>(num_classes);
  std::vector<double> qd(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    double sq = kBias * kBias + 0.5 / kC;
    for (float v : X.row(rows[i]).val) sq += static_cast<double>(v) * v;
    qd[i] = sq;
  }
  OvrModel model;
  model.weights.assign((dim + 1) * k_count, 0.0f);
  model.alphas.resize(k_count);
  const int workers = std::clamp(threads, 1, num_classes);
  std::vector<Workspace> spaces(static_cast<size_t>(workers));
  std::atomic<int> next{0};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  auto work = [&](int worker) {
    try {
      Workspace& ws = spaces[static_cast<size_t>(worker)];
      for (int k = next++; k < num_classes; k = next++) {
        const size_t kk = static_cast<size_t>(k);
        solve_binary(X, rows, y, k, qd, warm.empty() ? std::span<const double>() : warm[kk],
                     derive_seed(seed, 1, kk), ws);
        for (size_t d = 0; d <= dim; ++d)
          model.weights[d * k_count + kk] = static_cast<float>(ws.w[d]);
        model.alphas[kk] = ws.alpha;
      }
    } catch (...) {
      errors[static_cast<size_t>(worker)] = std::current_exception();
      next = num_classes;
    }
  };
  {
    std::vector<std::jthread> pool;
    for (int t = 1; t < workers; ++t) pool.emplace_back(work, t);
    work(0);
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return model;
}

// Decision values W^T [x; bias] into out[0..K); indices beyond the weight matrix are ignored.
void decision_values(std::span<const float> weights, size_t dim, size_t k_count, SparseRow x,
                     float* out) {
  const float* bias = weights.data() + dim * k_count;
  for (size_t k = 0; k < k_count; ++k) out[k] = bias[k] * static_cast<float>(kBias);
  for (size_t j = 0; j < x.nnz(); ++j) {
    const size_t d = x.idx[j];
    if (d >= dim) continue;
    const float v = x.val[j];
    const float* wd = weights.data() + d * k_count;
    for (size_t k = 0; k < k_count; ++k) out[k] += v * wd[k];
  }
}

// Softmax of scale * scores, in place.
void softmax(float scale, float* p, size_t k_count) {
  float top = p[0];
  for (size_t k = 1; k < k_count; ++k) top = std::max(top, p[k]);
  float sum = 0.0f;
  for (size_t k = 0; k < k_count; ++k) {
    p[k] = std::exp(scale * (p[k] - top));
    sum += p[k];
  }
  for (size_t k = 0; k < k_count; ++k) p[k] /= sum;
}

// The inverse temperature a minimising the mean log-loss of softmax(a * s) on held-out decision
// values. The loss is convex in a, so bisection on the sign of its derivative (on a log scale)
// finds the minimum; it is deterministic and needs no step size.
double fit_inverse_temperature(std::span<const float> scores, std::span<const int> labels,
                               size_t k_count) {
  const size_t n = labels.size();
  auto slope = [&](double a) {
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const float* s = scores.data() + i * k_count;
      const double top = *std::max_element(s, s + k_count);
      double z = 0.0, expect = 0.0;
      for (size_t k = 0; k < k_count; ++k) {
        const double e = std::exp(a * (s[k] - top));
        z += e;
        expect += e * s[k];
      }
      total += expect / z - s[labels[i]];
    }
    return total;
  };
  double lo = std::log(kMinScale), hi = std::log(kMaxScale);
  if (slope(kMinScale) >= 0.0) return kMinScale;
  if (slope(kMaxScale) <= 0.0) return kMaxScale;
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    (slope(std::exp(mid)) < 0.0 ? lo : hi) = mid;
  }
  return std::exp(0.5 * (lo + hi));
}

// Stratified hold-out: each class's rows are shuffled and every kHoldOutShare-th one is held
// out, the count continuing across classes so that small classes do not all lose their first
// row. Both outputs are in increasing row order.
void split_hold_out(std::span<const int> y, int num_classes, uint64_t seed,
                    std::vector<size_t>& train, std::vector<size_t>& held) {
  std::vector<std::vector<size_t>> by_class(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < y.size(); ++i) by_class[static_cast<size_t>(y[i])].push_back(i);
  std::vector<bool> is_held(y.size(), false);
  Rng rng(derive_seed(seed, 2, 0));
  size_t dealt = 0;
  for (auto& members : by_class) {
    for (size_t s = 0; s + 1 < members.size(); ++s)
      std::swap(members[s], members[s + rng.below(members.size() - s)]);
    for (size_t i : members) is_held[i] = dealt++ % kHoldOutShare == kHoldOutShare - 1;
  }
  for (size_t i = 0; i < y.size(); ++i) (is_held[i] ? held : train).push_back(i);
}

class LinearSvm final : public Surrogate {
 public:
  explicit LinearSvm(std::string name) : name_(std::move(name)) {}

  std::string name() const override { return name_; }
  int num_classes() const override { return static_cast<int>(k_count_); }

  void fit(const SparseMatrix& X, std::span<const int> y, int num_classes,
           const FitContext& ctx) override {
    models::check_fit_inputs(X, y, num_classes, /*min_classes=*/1);

    const size_t k_count = static_cast<size_t>(num_classes);
    const size_t dim = X.cols();
    const size_t n = X.rows();
    double scale = 1.0;
    std::vector<std::vector<double>> warm;
    if (num_classes > 1 && n >= kMinRowsToCalibrate) {
      std::vector<size_t> train_rows, held_rows;
      split_hold_out(y, num_classes, ctx.seed, train_rows, held_rows);
      OvrModel part =
          train_ovr(X, train_rows, y, num_classes, derive_seed(ctx.seed, 3, 0), ctx.threads, {});
      std::vector<float> scores(held_rows.size() * k_count);
      std::vector<int> held_labels;
      for (size_t j = 0; j < held_rows.size(); ++j) {
        decision_values(part.weights, dim, k_count, X.row(held_rows[j]), &scores[j * k_count]);
        held_labels.push_back(y[held_rows[j]]);
      }
      scale = fit_inverse_temperature(scores, held_labels, k_count);
      // Held-out rows start at alpha = 0; the rest keep their dual values.
      warm.assign(k_count, std::vector<double>(n, 0.0));
      for (size_t k = 0; k < k_count; ++k)
        for (size_t j = 0; j < train_rows.size(); ++j) warm[k][train_rows[j]] = part.alphas[k][j];
    }
    std::vector<size_t> all(n);
    for (size_t i = 0; i < n; ++i) all[i] = i;
    weights_ =
        train_ovr(X, all, y, num_classes, derive_seed(ctx.seed, 4, 0), ctx.threads, warm).weights;
    dim_ = dim;
    k_count_ = k_count;
    scale_ = static_cast<float>(scale);
  }

  void predict_proba(SparseRow x, std::span<float> out) const override {
    if (k_count_ == 0) throw InputError(name_ + ": predict_proba called before fit or load");
    if (out.size() < k_count_)
      throw InputError(name_ + ": output buffer holds " + std::to_string(out.size()) +
                       " probabilities, need " + std::to_string(k_count_));
    decision_values(weights_, dim_, k_count_, x, out.data());
    softmax(scale_, out.data(), k_count_);
  }

  void save(BinaryWriter& w) const override {
    w.put<uint32_t>(kMagic);
    w.put<uint32_t>(kVersion);
    w.put<uint64_t>(k_count_);
    w.put<uint64_t>(dim_);
    w.put<float>(scale_);
    w.put_vector(weights_);
  }

  void load(BinaryReader& r) override {
    if (r.get<uint32_t>() != kMagic)
      throw FormatError(name_ + ": model data is not a linear SVM (file corrupted?)");
    if (const auto version = r.get<uint32_t>(); version != kVersion)
      throw FormatError(name_ + ": unsupported linear SVM format version " +
                        std::to_string(version) + "; refit the policy with this tracer");
    const auto k_count = r.get<uint64_t>();
    const auto dim = r.get<uint64_t>();
    const auto scale = r.get<float>();
    std::vector<float> weights = r.get_vector<float>();
    const bool sizes_ok = k_count >= 1 && k_count <= (1u << 24) && dim < (uint64_t{1} << 32) &&
                          weights.size() / k_count == dim + 1 && weights.size() % k_count == 0;
    if (!sizes_ok) throw FormatError(name_ + ": linear SVM weight matrix has the wrong shape");
    if (!std::isfinite(scale) || scale <= 0.0f)
      throw FormatError(name_ + ": linear SVM temperature is not a positive number");
    for (float v : weights)
      if (!std::isfinite(v)) throw FormatError(name_ + ": linear SVM weights are not finite");
    weights_ = std::move(weights);
    k_count_ = k_count;
    dim_ = dim;
    scale_ = scale;
  }

 private:
  std::string name_;
  size_t k_count_ = 0;
  size_t dim_ = 0;
  float scale_ = 1.0f;          // inverse softmax temperature
  std::vector<float> weights_;  // (dim_ + 1) x k_count_, feature-major; row dim_ = biases
};

}  // namespace

std::unique_ptr<Surrogate> make_linear_svm(const std::string& name) {
  return std::make_unique<LinearSvm>(name);
}

}  // namespace tracer
