#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "models/factories.hpp"
#include "models/svm_synthetic.hpp"
#include "test_util.hpp"

// Kept small: a few hundred rows and a handful of classes, so each fit takes milliseconds.
namespace tracer {
namespace {

using testing::make_svm_synthetic;
using testing::SvmSynthetic;
using testing::SvmSyntheticSpec;

std::string fit_bytes(const SvmSynthetic& d, int classes, uint64_t seed, int threads) {
  auto m = make_xgboost("xgboost");
  m->fit(d.X, d.y, classes, FitContext{seed, threads});
  BinaryWriter w;
  m->save(w);
  return w.take();
}

int argmax(const std::vector<float>& p) {
  return static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
}

std::unique_ptr<Surrogate> fitted(const SvmSynthetic& d, int classes) {
  auto m = make_xgboost("xgboost");
  m->fit(d.X, d.y, classes, FitContext{});
  return m;
}

TEST(XGBoost, LearnsSeparableProblem) {
  const auto train = make_svm_synthetic({.classes = 4, .rows = 400, .seed = 11});
  const auto test = make_svm_synthetic({.classes = 4, .rows = 200, .seed = 12});
  auto m = make_xgboost("xgboost");
  m->fit(train.X, train.y, 4, FitContext{7, 1});
  EXPECT_EQ(m->num_classes(), 4);
  EXPECT_EQ(m->name(), "xgboost");
  std::vector<float> p(4);
  int correct = 0;
  for (size_t i = 0; i < test.X.rows(); ++i) {
    m->predict_proba(test.X.row(i), p);
    correct += argmax(p) == test.y[i];
  }
  EXPECT_GE(correct / static_cast<double>(test.X.rows()), 0.95);
}

TEST(XGBoost, WideSparseInputKeepsTheInformativeColumns) {
  // 5030 columns, ~7 non-zeros a row: more columns than the trees are given, and sparse enough
  // for the two-bin histograms. The class blocks must survive the column selection.
  const SvmSyntheticSpec spec{.classes = 3, .rows = 300, .noise_dims = 5000, .seed = 13};
  SvmSyntheticSpec test_spec = spec;
  test_spec.seed = 14;
  test_spec.rows = 150;
  const auto train = make_svm_synthetic(spec);
  const auto test = make_svm_synthetic(test_spec);
  auto m = make_xgboost("xgboost");
  m->fit(train.X, train.y, 3, FitContext{});
  BinaryWriter w;
  m->save(w);
  auto loaded = make_xgboost("xgboost");
  BinaryReader r(w.bytes());
  loaded->load(r);
  std::vector<float> p(3), q(3);
  int correct = 0;
  for (size_t i = 0; i < test.X.rows(); ++i) {
    m->predict_proba(test.X.row(i), p);
    loaded->predict_proba(test.X.row(i), q);
    ASSERT_EQ(p, q);
    correct += argmax(p) == test.y[i];
  }
  EXPECT_GE(correct / static_cast<double>(test.X.rows()), 0.95);
}

TEST(XGBoost, ProbabilitiesAreFiniteAndSumToOne) {
  const auto d = make_svm_synthetic({.classes = 3, .rows = 200, .label_noise = 0.1, .seed = 3});
  auto m = fitted(d, 3);
  std::vector<float> p(3);
  auto expect_distribution = [&](SparseRow row) {
    m->predict_proba(row, p);
    float sum = 0.0f;
    for (float v : p) {
      EXPECT_TRUE(std::isfinite(v));
      EXPECT_GE(v, 0.0f);
      sum += v;
    }
    EXPECT_NEAR(sum, 1.0f, 1e-5f);
  };
  for (size_t i = 0; i < d.X.rows(); i += 11) expect_distribution(d.X.row(i));
  expect_distribution(SparseRow{});
  // Features beyond the fitted width are ignored rather than passed to xgboost.
  const std::vector<uint32_t> idx = {2, 100000};
  const std::vector<float> val = {1.0f, 5.0f};
  expect_distribution(SparseRow{idx, val});
  std::vector<float> p_known(3);
  const std::vector<uint32_t> idx_known = {2};
  const std::vector<float> val_known = {1.0f};
  m->predict_proba(SparseRow{idx_known, val_known}, p_known);
  m->predict_proba(SparseRow{idx, val}, p);
  EXPECT_EQ(p, p_known);
}

TEST(XGBoost, SameSeedSameBytes) {
  const auto d = make_svm_synthetic({.classes = 3, .rows = 200, .label_noise = 0.1, .seed = 21});
  const std::string a = fit_bytes(d, 3, 99, 1);
  EXPECT_EQ(a, fit_bytes(d, 3, 99, 1));
  // xgboost's OpenMP histogram sums do not depend on the thread count either.
  EXPECT_EQ(a, fit_bytes(d, 3, 99, 2));
}

TEST(XGBoost, ConcurrentFitsMatchSequential) {
  const auto d1 = make_svm_synthetic({.classes = 3, .rows = 200, .label_noise = 0.1, .seed = 31});
  const auto d2 = make_svm_synthetic({.classes = 4, .rows = 200, .label_noise = 0.1, .seed = 32});
  const std::string seq1 = fit_bytes(d1, 3, 5, 1);
  const std::string seq2 = fit_bytes(d2, 4, 6, 1);
  std::string par1, par2;
  {
    std::jthread t1([&] { par1 = fit_bytes(d1, 3, 5, 1); });
    std::jthread t2([&] { par2 = fit_bytes(d2, 4, 6, 1); });
  }
  EXPECT_EQ(par1, seq1);
  EXPECT_EQ(par2, seq2);
}

TEST(XGBoost, ConcurrentPredictionsMatchSequential) {
  const auto d = make_svm_synthetic({.classes = 3, .rows = 200, .label_noise = 0.1, .seed = 35});
  auto m = fitted(d, 3);
  std::vector<float> expected(d.X.rows() * 3);
  for (size_t i = 0; i < d.X.rows(); ++i)
    m->predict_proba(d.X.row(i), std::span<float>(expected).subspan(i * 3, 3));
  constexpr int kThreads = 4;
  std::vector<std::vector<float>> got(kThreads, std::vector<float>(expected.size()));
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < kThreads; ++t)
      pool.emplace_back([&, t] {
        for (int rep = 0; rep < 3; ++rep)
          for (size_t i = 0; i < d.X.rows(); ++i)
            m->predict_proba(d.X.row(i), std::span<float>(got[t]).subspan(i * 3, 3));
      });
  }
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

TEST(XGBoost, SaveLoadRoundTripGivesIdenticalProbabilities) {
  const auto d = make_svm_synthetic({.classes = 3, .rows = 200, .label_noise = 0.1, .seed = 41});
  auto m = fitted(d, 3);
  BinaryWriter w;
  m->save(w);
  auto loaded = make_xgboost("xgboost");
  BinaryReader r(w.bytes());
  loaded->load(r);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(loaded->num_classes(), 3);
  std::vector<float> a(3), b(3);
  for (size_t i = 0; i < d.X.rows(); ++i) {
    m->predict_proba(d.X.row(i), a);
    loaded->predict_proba(d.X.row(i), b);
    ASSERT_EQ(a, b) << "row " << i;
  }
  BinaryWriter again;
  loaded->save(again);
  EXPECT_EQ(again.bytes(), w.bytes());
}

TEST(XGBoost, TruncatedOrGarbageBytesThrowFormatError) {
  const auto d = make_svm_synthetic({.classes = 3, .rows = 100, .seed = 51});
  auto m = fitted(d, 3);
  BinaryWriter w;
  m->save(w);
  const std::string bytes = w.bytes();
  for (size_t cut : {size_t{0}, size_t{5}, size_t{16}, size_t{30}, size_t{40}, bytes.size() / 2,
                     bytes.size() - 1}) {
    auto fresh = make_xgboost("xgboost");
    BinaryReader r(std::string_view(bytes).substr(0, cut));
    EXPECT_THROW(fresh->load(r), FormatError) << "cut at " << cut;
  }
  std::string garbage(bytes.size(), '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 131 + 7);
  auto fresh = make_xgboost("xgboost");
  BinaryReader rg(garbage);
  EXPECT_THROW(fresh->load(rg), FormatError);
  // Flipped bytes inside the serialised booster are caught before xgboost parses them.
  for (size_t pos : {size_t{48}, bytes.size() / 2, bytes.size() - 2}) {
    std::string flipped = bytes;
    flipped[pos] = static_cast<char>(flipped[pos] ^ 0x5a);
    BinaryReader rf(flipped);
    EXPECT_THROW(fresh->load(rf), FormatError) << "flip at " << pos;
  }
  // A header claiming another class count than the stored booster has.
  std::string wrong_classes = bytes;
  wrong_classes[8] = 5;
  BinaryReader rc(wrong_classes);
  EXPECT_THROW(fresh->load(rc), FormatError);
}

TEST(XGBoost, CalibratedOnNoisyHeldOutRows) {
  SvmSyntheticSpec train_spec{.classes = 3, .rows = 600, .label_noise = 0.2, .seed = 61};
  SvmSyntheticSpec test_spec = train_spec;
  test_spec.seed = 62;
  test_spec.rows = 500;
  const auto train = make_svm_synthetic(train_spec);
  const auto test = make_svm_synthetic(test_spec);
  auto m = fitted(train, 3);
  std::vector<float> p(3);
  double top1 = 0.0;
  int correct = 0;
  for (size_t i = 0; i < test.X.rows(); ++i) {
    m->predict_proba(test.X.row(i), p);
    top1 += *std::max_element(p.begin(), p.end());
    correct += argmax(p) == test.y[i];
  }
  const double n = static_cast<double>(test.X.rows());
  const double accuracy = correct / n;
  EXPECT_GT(accuracy, 0.65);
  EXPECT_NEAR(top1 / n, accuracy, 0.1);
}

TEST(XGBoost, RejectsBadInput) {
  const auto d = make_svm_synthetic({.classes = 3, .rows = 60, .seed = 71});
  auto m = make_xgboost("xgboost");
  std::vector<int> bad = d.y;
  bad[4] = -1;
  EXPECT_THROW(m->fit(d.X, bad, 3, FitContext{}), InputError);
  EXPECT_THROW(m->fit(d.X, std::span<const int>(d.y).first(10), 3, FitContext{}), InputError);
  std::vector<float> p(3);
  EXPECT_THROW(m->predict_proba(d.X.row(0), p), InputError);  // not fitted
  m->fit(d.X, d.y, 3, FitContext{});
  std::vector<float> small(2);
  EXPECT_THROW(m->predict_proba(d.X.row(0), small), InputError);
}

TEST(XGBoost, SingleClassAndSmallDataWithoutEarlyStopping) {
  auto one = make_svm_synthetic({.classes = 1, .rows = 20, .seed = 81});
  auto m = make_xgboost("xgboost");
  m->fit(one.X, one.y, 1, FitContext{});
  std::vector<float> p(1);
  m->predict_proba(one.X.row(0), p);
  EXPECT_EQ(p[0], 1.0f);
  BinaryWriter w;
  m->save(w);
  auto loaded = make_xgboost("xgboost");
  BinaryReader r(w.bytes());
  loaded->load(r);
  EXPECT_EQ(loaded->num_classes(), 1);
  // Too few rows for a validation split: boosts the full round budget and still predicts.
  auto small = make_svm_synthetic({.classes = 2, .rows = 30, .seed = 82});
  auto m2 = make_xgboost("xgboost");
  m2->fit(small.X, small.y, 2, FitContext{});
  std::vector<float> p2(2);
  m2->predict_proba(small.X.row(0), p2);
  EXPECT_NEAR(p2[0] + p2[1], 1.0f, 1e-5f);
}

}  // namespace
}  // namespace tracer
