// Gradient-boosted trees (libxgboost 1.7 C API): multi:softprob, hist trees of depth 6, up to
// kMaxRounds rounds, early-stopped on a stratified 10% of the training rows (the model is cut
// back to its best round rather than refit, which would double the cost).
//
// xgboost 1.7 grows one tree per class per round and scans every histogram bin of every
// feature at every node, so on wide TF-IDF input (tens of thousands of columns, 77 classes) a
// single round took seconds (an estimated half hour for a Banking77 fit). Two measures bring
// that fit to 15-25 s on one core at 0.867 test agreement (keeping all columns: 0.858 in 62 s):
// - the trees see only the kMaxTreeFeatures columns with the highest chi-squared association
//   with the label (as scikit-learn's chi2 on non-negative features); the kept column list is
//   part of the model;
// - on sparse input (TF-IDF) a split is essentially "n-gram present or not", so histograms get
//   kSparseMaxBin bins; dense input (embeddings) keeps xgboost's default 256.
//
// Trees are opt-in (off in the default zoo): fitting is slower than the linear models, and the
// one-row predict_proba goes through XGBoosterPredictFromCSR, which allocates inside xgboost
// (a proxy DMatrix and thread-local output buffers), so this model does not meet the
// no-allocation promise of Surrogate::predict_proba; it is acceptable for an opt-in candidate.
// Concurrent predict_proba calls are safe without a lock: xgboost documents every prediction
// function as thread-safe for tree boosters since 1.4 ("Thread Safety" in doc/prediction.rst),
// and its inplace predict writes its output to a per-thread, per-booster buffer. The one
// mutable step, the booster's lazy configuration, is done once by a warm-up prediction before
// the model is handed out (see XGBoost::install).
#include <xgboost/c_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "models/factories.hpp"
#include "models/linear_math.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

constexpr uint32_t kMagic = 0x42475854;  // "TXGB"
constexpr uint32_t kVersion = 1;
constexpr int kMaxRounds = 100;
constexpr int kPatience = 10;  // rounds without a better validation log-loss
constexpr size_t kMinRowsForEarlyStop = 50;
constexpr int kValidationShare = 10;  // 1 in kValidationShare rows (per class) validates
constexpr size_t kMaxTreeFeatures = 4000;
constexpr double kSparseDensity = 0.05;  // below this share of non-zeros the input is "sparse"
constexpr const char* kSparseMaxBin = "2";
constexpr const char* kDenseMaxBin = "256";
constexpr uint32_t kDropped = std::numeric_limits<uint32_t>::max();

static_assert(std::is_same_v<uint64_t, size_t>, "SparseMatrix::indptr must be size_t for xgboost");

template <typename Error>
void check(int rc, std::string_view what) {
  if (rc != 0) throw Error("xgboost: " + std::string(what) + " failed: " + XGBGetLastError());
}

struct DMatrixFree {
  void operator()(DMatrixHandle h) const { XGDMatrixFree(h); }
};
struct BoosterFree {
  void operator()(BoosterHandle h) const { XGBoosterFree(h); }
};
using DMatrixPtr = std::unique_ptr<void, DMatrixFree>;
using BoosterPtr = std::unique_ptr<void, BoosterFree>;

DMatrixPtr make_dmatrix(const SparseMatrix& X, std::span<const int> y) {
  DMatrixHandle h = nullptr;
  check<InputError>(
      XGDMatrixCreateFromCSREx(X.indptr().data(), X.indices().data(), X.values().data(),
                               X.indptr().size(), X.nnz(), X.cols(), &h),
      "building the training matrix");
  DMatrixPtr m(h);
  std::vector<float> labels(y.begin(), y.end());
  check<InputError>(XGDMatrixSetFloatInfo(h, "label", labels.data(), labels.size()),
                    "setting labels");
  return m;
}

BoosterPtr make_booster(std::span<const DMatrixHandle> cache) {
  BoosterHandle h = nullptr;
  check<InputError>(XGBoosterCreate(cache.data(), cache.size(), &h), "creating a booster");
  return BoosterPtr(h);
}

void set_params(BoosterHandle h, int num_classes, const char* max_bin, const FitContext& ctx) {
  const std::string seed = std::to_string(ctx.seed % (uint64_t{1} << 31));
  const std::string classes = std::to_string(num_classes);
  const std::string threads = std::to_string(std::max(1, ctx.threads));
  const std::array<std::pair<const char*, const char*>, 9> params = {{
      {"objective", "multi:softprob"},
      {"num_class", classes.c_str()},
      {"tree_method", "hist"},
      {"max_depth", "6"},
      {"max_bin", max_bin},
      {"eta", "0.3"},
      {"eval_metric", "mlogloss"},
      {"seed", seed.c_str()},
      {"nthread", threads.c_str()},
  }};
  for (const auto& [key, value] : params)
    check<InputError>(XGBoosterSetParam(h, key, value), std::string("setting ") + key);
}

// Validation log-loss from XGBoosterEvalOneIter's "[7]\tval-mlogloss:0.4321".
double parse_eval(const char* text) {
  const char* colon = std::strrchr(text, ':');
  if (colon == nullptr) throw InputError(std::string("xgboost: unexpected eval output ") + text);
  return std::strtod(colon + 1, nullptr);
}

// 64-bit FNV-1a of the serialised booster: a corrupted model is rejected before xgboost parses it.
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Stratified hold-out: every kValidationShare-th row of each class, after a seeded shuffle.
void split_rows(std::span<const int> y, int num_classes, uint64_t seed, std::vector<size_t>& fit,
                std::vector<size_t>& val) {
  std::vector<std::vector<size_t>> by_class(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < y.size(); ++i) by_class[static_cast<size_t>(y[i])].push_back(i);
  uint64_t state = seed ^ 0x5851f42d4c957f2dULL;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  if (state == 0) state = 1;
  size_t dealt = 0;
  for (auto& members : by_class) {
    for (size_t s = 0; s + 1 < members.size(); ++s)
      std::swap(members[s], members[s + next() % (members.size() - s)]);
    for (size_t i : members)
      (dealt++ % kValidationShare == kValidationShare - 1 ? val : fit).push_back(i);
  }
  std::sort(fit.begin(), fit.end());
  std::sort(val.begin(), val.end());
}

// Boosts `rounds` rounds; with a validation matrix, stops after kPatience rounds without
// improvement and returns the best round count.
int boost(BoosterHandle h, DMatrixHandle train, DMatrixHandle val, int rounds) {
  double best_loss = std::numeric_limits<double>::infinity();
  int best_rounds = rounds;
  for (int iter = 0; iter < rounds; ++iter) {
    check<InputError>(XGBoosterUpdateOneIter(h, iter, train), "boosting");
    if (val == nullptr) continue;
    std::array<DMatrixHandle, 1> mats = {val};
    std::array<const char*, 1> names = {"val"};
    const char* out = nullptr;
    check<InputError>(XGBoosterEvalOneIter(h, iter, mats.data(), names.data(), 1, &out),
                      "evaluating");
    const double loss = parse_eval(out);
    if (loss < best_loss) {
      best_loss = loss;
      best_rounds = iter + 1;
    } else if (iter + 1 - best_rounds >= kPatience) {
      break;
    }
  }
  return best_rounds;
}

std::string serialize(BoosterHandle h) {
  bst_ulong len = 0;
  const char* data = nullptr;
  check<InputError>(XGBoosterSaveModelToBuffer(h, R"({"format": "ubj"})", &len, &data),
                    "serialising the model");
  return std::string(data, len);
}

// The (at most kMaxTreeFeatures) columns most associated with the label, in increasing order.
// Score: chi-squared of the per-class sums of |x_j| against their share under independence.
std::vector<uint32_t> select_columns(const SparseMatrix& X, std::span<const int> y,
                                     int num_classes) {
  const size_t dim = X.cols();
  if (dim <= kMaxTreeFeatures) {
    std::vector<uint32_t> all(dim);
    for (size_t d = 0; d < dim; ++d) all[d] = static_cast<uint32_t>(d);
    return all;
  }
  const size_t k_count = static_cast<size_t>(num_classes);
  std::vector<double> observed(dim * k_count, 0.0), total(dim, 0.0), class_share(k_count, 0.0);
  for (size_t i = 0; i < X.rows(); ++i) {
    const size_t k = static_cast<size_t>(y[i]);
    class_share[k] += 1.0 / static_cast<double>(X.rows());
    const SparseRow row = X.row(i);
    for (size_t j = 0; j < row.nnz(); ++j) {
      const double v = std::fabs(row.val[j]);
      observed[row.idx[j] * k_count + k] += v;
      total[row.idx[j]] += v;
    }
  }
  std::vector<double> score(dim, 0.0);
  for (size_t d = 0; d < dim; ++d) {
    if (total[d] <= 0.0) continue;
    for (size_t k = 0; k < k_count; ++k) {
      const double expected = total[d] * class_share[k];
      if (expected > 0.0) {
        const double diff = observed[d * k_count + k] - expected;
        score[d] += diff * diff / expected;
      }
    }
  }
  std::vector<uint32_t> order(dim);
  for (size_t d = 0; d < dim; ++d) order[d] = static_cast<uint32_t>(d);
  // Ties broken by column so the choice is deterministic.
  std::partial_sort(
      order.begin(), order.begin() + kMaxTreeFeatures, order.end(),
      [&](uint32_t a, uint32_t b) { return score[a] != score[b] ? score[a] > score[b] : a < b; });
  order.resize(kMaxTreeFeatures);
  std::sort(order.begin(), order.end());
  return order;
}

// `rows` of X restricted to the kept columns, renumbered through `remap`.
SparseMatrix project(const SparseMatrix& X, std::span<const size_t> rows,
                     std::span<const uint32_t> remap, size_t width) {
  SparseMatrix out(width);
  std::vector<uint32_t> idx;
  std::vector<float> val;
  for (size_t i : rows) {
    idx.clear();
    val.clear();
    const SparseRow row = X.row(i);
    for (size_t j = 0; j < row.nnz(); ++j) {
      if (remap[row.idx[j]] == kDropped) continue;
      idx.push_back(remap[row.idx[j]]);
      val.push_back(row.val[j]);
    }
    out.add_row({idx, val});
  }
  return out;
}

std::vector<uint32_t> make_remap(std::span<const uint32_t> columns, size_t dim) {
  std::vector<uint32_t> remap(dim, kDropped);
  for (size_t c = 0; c < columns.size(); ++c) remap[columns[c]] = static_cast<uint32_t>(c);
  return remap;
}

// Array-interface JSON for one host array, written into a caller-owned stack buffer.
template <size_t N>
const char* array_interface(std::array<char, N>& buf, const void* data, size_t n,
                            const char* typestr) {
  std::snprintf(buf.data(), N, R"({"data":[%zu,true],"shape":[%zu],"typestr":"%s","version":3})",
                reinterpret_cast<size_t>(data), n, typestr);
  return buf.data();
}

class XGBoost final : public Surrogate {
 public:
  explicit XGBoost(std::string name) : name_(std::move(name)) {}

  std::string name() const override { return name_; }
  int num_classes() const override { return static_cast<int>(k_count_); }

  void fit(const SparseMatrix& X, std::span<const int> y, int num_classes,
           const FitContext& ctx) override {
    models::check_fit_inputs(X, y, num_classes, /*min_classes=*/1);
    if (X.cols() == 0) throw InputError(name_ + ": the feature matrix has no columns");

    std::string model;
    std::vector<uint32_t> columns;
    if (num_classes > 1) {
      columns = select_columns(X, y, num_classes);
      const std::vector<uint32_t> remap = make_remap(columns, X.cols());
      std::vector<size_t> fit_rows, val_rows;
      if (X.rows() >= kMinRowsForEarlyStop) {
        split_rows(y, num_classes, ctx.seed, fit_rows, val_rows);
      } else {
        for (size_t i = 0; i < X.rows(); ++i) fit_rows.push_back(i);
      }
      std::vector<int> y_fit, y_val;
      for (size_t i : fit_rows) y_fit.push_back(y[i]);
      for (size_t i : val_rows) y_val.push_back(y[i]);
      DMatrixPtr train = make_dmatrix(project(X, fit_rows, remap, columns.size()), y_fit);
      DMatrixPtr val;
      std::vector<DMatrixHandle> cache = {train.get()};
      if (!val_rows.empty()) {
        val = make_dmatrix(project(X, val_rows, remap, columns.size()), y_val);
        cache.push_back(val.get());
      }
      BoosterPtr booster = make_booster(cache);
      const double density = static_cast<double>(X.nnz()) /
                             (static_cast<double>(X.rows()) * static_cast<double>(X.cols()));
      set_params(booster.get(), num_classes,
                 density < kSparseDensity ? kSparseMaxBin : kDenseMaxBin, ctx);
      const int rounds = boost(booster.get(), train.get(), val.get(), kMaxRounds);
      BoosterHandle best = nullptr;
      check<InputError>(XGBoosterSlice(booster.get(), 0, rounds, 1, &best),
                        "cutting the model back to its best round");
      booster.reset(best);
      model = serialize(booster.get());
    }
    // Predict from a booster reloaded from the saved bytes, so that a fitted and a loaded model
    // answer identically and the training caches are released.
    install(static_cast<size_t>(num_classes), X.cols(), std::move(columns), std::move(model),
            &check<InputError>);
  }

  void predict_proba(SparseRow x, std::span<float> out) const override {
    if (k_count_ == 0) throw InputError(name_ + ": predict_proba called before fit or load");
    if (out.size() < k_count_)
      throw InputError(name_ + ": output buffer holds " + std::to_string(out.size()) +
                       " probabilities, need " + std::to_string(k_count_));
    if (!booster_) {  // a single class
      out[0] = 1.0f;
      return;
    }
    // Kept columns only, renumbered; unknown features (beyond the fitted width) are ignored,
    // as the linear models do. The remap is monotone, so indices stay sorted.
    std::vector<uint32_t> idx;
    std::vector<float> val;
    idx.reserve(x.nnz());
    val.reserve(x.nnz());
    for (size_t j = 0; j < x.nnz(); ++j) {
      if (x.idx[j] >= remap_.size() || remap_[x.idx[j]] == kDropped) continue;
      idx.push_back(remap_[x.idx[j]]);
      val.push_back(x.val[j]);
    }
    predict_row(idx, val, out);
  }

  void save(BinaryWriter& w) const override {
    w.put<uint32_t>(kMagic);
    w.put<uint32_t>(kVersion);
    w.put<uint64_t>(k_count_);
    w.put<uint64_t>(remap_.size());
    w.put_vector(columns_);
    w.put<uint64_t>(fnv1a(model_));
    w.put_string(model_);
  }

  void load(BinaryReader& r) override {
    if (r.get<uint32_t>() != kMagic)
      throw FormatError(name_ + ": model data is not an xgboost surrogate (file corrupted?)");
    if (const auto version = r.get<uint32_t>(); version != kVersion)
      throw FormatError(name_ + ": unsupported xgboost surrogate format version " +
                        std::to_string(version) + "; refit the policy with this tracer");
    const auto k_count = r.get<uint64_t>();
    const auto dim = r.get<uint64_t>();
    std::vector<uint32_t> columns = r.get_vector<uint32_t>();
    const auto hash = r.get<uint64_t>();
    std::string model = r.get_string();
    bool ok = k_count >= 1 && k_count <= (1u << 24) && dim >= 1 && dim < (uint64_t{1} << 32) &&
              (k_count == 1) == model.empty() && (k_count == 1) == columns.empty();
    for (size_t c = 0; ok && c < columns.size(); ++c)
      ok = columns[c] < dim && (c == 0 || columns[c - 1] < columns[c]);
    if (!ok) throw FormatError(name_ + ": xgboost surrogate header is inconsistent (corrupted?)");
    if (fnv1a(model) != hash)
      throw FormatError(name_ + ": xgboost model bytes fail their checksum (file corrupted?)");
    install(k_count, dim, std::move(columns), std::move(model), &check<FormatError>);
  }

 private:
  using Checker = void (*)(int, std::string_view);

  // Builds the prediction booster from serialised bytes, then configures it once with a warm-up
  // prediction (xgboost configures lazily, the only step that mutates the booster when
  // predicting) so that later concurrent predictions only read it.
  void install(size_t k_count, size_t dim, std::vector<uint32_t> columns, std::string model,
               Checker checker) {
    BoosterPtr booster;
    if (!model.empty()) {
      BoosterHandle h = nullptr;
      checker(XGBoosterCreate(nullptr, 0, &h), "creating a booster");
      booster.reset(h);
      checker(XGBoosterLoadModelFromBuffer(h, model.data(), model.size()), "loading the model");
      // One row at a time: threads would only add start-up cost.
      checker(XGBoosterSetParam(h, "nthread", "1"), "setting nthread");
      bst_ulong features = 0;
      checker(XGBoosterGetNumFeature(h, &features), "reading the feature count");
      if (features != columns.size())
        throw FormatError(name_ + ": xgboost model feature count does not match its columns");
    }
    booster_ = std::move(booster);
    k_count_ = k_count;
    remap_ = make_remap(columns, dim);
    columns_ = std::move(columns);
    model_ = std::move(model);
    if (booster_) {
      std::vector<float> probe(k_count_);
      try {
        predict_row({}, {}, probe);
      } catch (const InputError& e) {
        k_count_ = 0;
        booster_.reset();
        throw FormatError(name_ +
                          ": the stored xgboost model does not match its header: " + e.what());
      }
    }
  }

  void predict_row(std::span<const uint32_t> idx, std::span<const float> val,
                   std::span<float> out) const {
    // xgboost rejects null array pointers; an empty row points at these instead.
    const uint32_t no_idx = 0;
    const float no_val = 0.0f;
    const std::array<uint64_t, 2> indptr = {0, idx.size()};
    std::array<char, 128> indptr_json, idx_json, val_json;
    array_interface(indptr_json, indptr.data(), 2, "<u8");
    array_interface(idx_json, idx.empty() ? &no_idx : idx.data(), idx.size(), "<u4");
    array_interface(val_json, val.empty() ? &no_val : val.data(), val.size(), "<f4");
    const bst_ulong* shape = nullptr;
    bst_ulong dims = 0;
    const float* result = nullptr;
    check<InputError>(
        XGBoosterPredictFromCSR(booster_.get(), indptr_json.data(), idx_json.data(),
                                val_json.data(), columns_.size(),
                                R"({"type": 0, "training": false, "iteration_begin": 0, )"
                                R"("cache_id": 0, "iteration_end": 0, "strict_shape": true, )"
                                R"("missing": NaN})",
                                nullptr, &shape, &dims, &result),
        "predicting");
    bst_ulong total = 1;
    for (bst_ulong i = 0; i < dims; ++i) total *= shape[i];
    if (total != k_count_)
      throw InputError(name_ + ": xgboost returned " + std::to_string(total) +
                       " probabilities, expected " + std::to_string(k_count_));
    std::copy(result, result + k_count_, out.begin());
  }

  std::string name_;
  size_t k_count_ = 0;
  std::vector<uint32_t> columns_;  // input columns the trees use, increasing
  std::vector<uint32_t> remap_;    // input column -> tree feature, or kDropped; size = input width
  std::string model_;              // UBJSON from XGBoosterSaveModelToBuffer; empty for one class
  BoosterPtr booster_;             // loaded from model_; null for one class
};

}  // namespace

std::unique_ptr<Surrogate> make_xgboost(const std::string& name) {
  return std::make_unique<XGBoost>(name);
}

}  // namespace tracer
