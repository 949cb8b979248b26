#include "gate/acceptor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"
#include "util/binio.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

// ---------------------------------------------------------------------------------------------
// compute_signals

TEST(ComputeSignals, ValuesOfAThreeClassPrediction) {
  const std::vector<float> probs = {0.2f, 0.7f, 0.1f};
  const std::vector<float> prior = {0.5f, 0.93f, 0.1f};
  int predicted = -1;
  const Signals s = compute_signals(probs, prior, 0.8f, 20.f, &predicted);
  EXPECT_EQ(predicted, 1);
  EXPECT_FLOAT_EQ(s.v[0], 0.7f);
  EXPECT_FLOAT_EQ(s.v[1], 0.2f);
  EXPECT_FLOAT_EQ(s.v[2], 0.5f);
  const double h = -(0.2 * std::log(0.2) + 0.7 * std::log(0.7) + 0.1 * std::log(0.1));
  EXPECT_NEAR(s.v[3], 1 - h / std::log(3.0), 1e-6);
  EXPECT_FLOAT_EQ(s.v[4], 0.93f);
  EXPECT_FLOAT_EQ(s.v[5], 0.8f);
  EXPECT_NEAR(s.v[6], std::log(21.0) / 5, 1e-6);
}

TEST(ComputeSignals, TwoClassesZerosAndTies) {
  int predicted = -1;
  const std::vector<float> sure = {0.f, 1.f};
  Signals s = compute_signals(sure, {}, 1.f, 0.f, &predicted);
  EXPECT_EQ(predicted, 1);
  EXPECT_FLOAT_EQ(s.v[0], 1.f);
  EXPECT_FLOAT_EQ(s.v[1], 0.f);
  EXPECT_FLOAT_EQ(s.v[2], 1.f);
  EXPECT_FLOAT_EQ(s.v[3], 1.f);   // no uncertainty; the zero does not produce NaN
  EXPECT_FLOAT_EQ(s.v[4], 0.5f);  // no priors given
  EXPECT_FLOAT_EQ(s.v[6], 0.f);
  const std::vector<float> coin = {0.5f, 0.5f};
  s = compute_signals(coin, {}, 1.f, 3.f, &predicted);
  EXPECT_EQ(predicted, 0);  // lowest index on a tie
  EXPECT_FLOAT_EQ(s.v[2], 0.f);
  EXPECT_NEAR(s.v[3], 0.f, 1e-6);  // maximal entropy
  const std::vector<float> one = {1.f};
  s = compute_signals(one, {}, 1.f, 3.f, &predicted);
  EXPECT_EQ(predicted, 0);
  EXPECT_FLOAT_EQ(s.v[0], 1.f);
  EXPECT_FLOAT_EQ(s.v[1], 0.f);
  EXPECT_FLOAT_EQ(s.v[3], 1.f);
}

TEST(ComputeSignals, RobustToUnnormalisedAndBrokenInput) {
  int predicted = -1;
  const std::vector<float> raw = {2.f, 1.f, 1.f};
  const std::vector<float> norm = {0.5f, 0.25f, 0.25f};
  const Signals a = compute_signals(raw, {}, 0.5f, 4.f);
  const Signals b = compute_signals(norm, {}, 0.5f, 4.f);
  for (int i = 0; i < Signals::kCount; ++i) EXPECT_NEAR(a.v[i], b.v[i], 1e-6) << i;

  const std::vector<float> nan = {std::nanf(""), 0.3f, 0.7f, -1.f};
  const std::vector<float> short_prior = {0.9f};
  const Signals c = compute_signals(nan, short_prior, std::nanf(""), -3.f, &predicted);
  EXPECT_EQ(predicted, 2);
  EXPECT_FLOAT_EQ(c.v[0], 0.7f);
  EXPECT_FLOAT_EQ(c.v[4], 0.5f);  // label 2 beyond the prior table
  EXPECT_FLOAT_EQ(c.v[5], 0.f);
  EXPECT_FLOAT_EQ(c.v[6], 0.f);
  for (float v : c.v) EXPECT_TRUE(std::isfinite(v));

  const std::vector<float> zeros = {0.f, 0.f, 0.f, 0.f};
  const Signals d = compute_signals(zeros, {}, 2.f, 1.f, &predicted);
  EXPECT_FLOAT_EQ(d.v[0], 0.25f);  // no information: uniform
  EXPECT_NEAR(d.v[3], 0.f, 1e-6);
  EXPECT_FLOAT_EQ(d.v[5], 1.f);  // clamped
  for (float v : d.v) EXPECT_TRUE(std::isfinite(v));

  EXPECT_THROW(compute_signals({}, {}, 1.f, 1.f), InputError);
}

// ---------------------------------------------------------------------------------------------
// Synthetic acceptor data: a K-class surrogate whose agreement with the teacher depends on its
// margin (and, in the second world, on how much of the text the vocabulary knew).

struct Data {
  std::vector<Signals> signals;
  std::vector<uint8_t> agree;
};

double uniform(std::mt19937_64& rng) { return (rng() >> 11) * 0x1.0p-53; }

double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

Data make_data(int n, uint64_t seed, bool ood_matters) {
  std::mt19937_64 rng(seed);
  constexpr int K = 6;
  const std::vector<float> prior = {0.95f, 0.9f, 0.8f, 0.85f, 0.7f, 0.9f};
  Data d;
  std::vector<float> probs(K);
  for (int i = 0; i < n; ++i) {
    const double temp = 0.3 + 3 * uniform(rng);
    double sum = 0;
    for (int c = 0; c < K; ++c) {
      // Box–Muller from two uniforms keeps the stream portable across standard libraries.
      const double g = std::sqrt(-2 * std::log(1 - uniform(rng))) *
                       std::cos(2 * std::numbers::pi * uniform(rng));
      probs[c] = static_cast<float>(std::exp(temp * g + (c == 0 ? 1.0 : 0.0)));
      sum += probs[c];
    }
    for (auto& p : probs) p = static_cast<float>(p / sum);
    const float known = static_cast<float>(uniform(rng));
    const float ngrams = static_cast<float>(5 + 100 * uniform(rng));
    const Signals s = compute_signals(probs, prior, known, ngrams);
    double z = -1.5 + 7 * s.v[2];
    if (ood_matters) z += 4 * (known - 0.5);
    d.signals.push_back(s);
    d.agree.push_back(uniform(rng) < sigmoid(z) ? 1 : 0);
  }
  return d;
}

// Area under the ROC curve (Mann–Whitney, ties count half).
double auc(const std::vector<float>& score, const std::vector<uint8_t>& y) {
  std::vector<size_t> idx(score.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
  double rank_sum = 0;
  size_t pos = 0, i = 0;
  while (i < idx.size()) {
    size_t j = i;
    while (j < idx.size() && score[idx[j]] == score[idx[i]]) ++j;
    const double mid_rank = (i + j + 1) / 2.0;  // ranks i+1..j
    for (size_t t = i; t < j; ++t) {
      if (y[idx[t]]) {
        rank_sum += mid_rank;
        ++pos;
      }
    }
    i = j;
  }
  const double neg = static_cast<double>(score.size() - pos);
  return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

std::vector<float> scores_of(const Acceptor& a, const Data& d) {
  std::vector<float> out;
  for (const auto& s : d.signals) out.push_back(a.score(s));
  return out;
}

std::vector<float> top1_of(const Data& d) {
  std::vector<float> out;
  for (const auto& s : d.signals) out.push_back(s.v[0]);
  return out;
}

TEST(Acceptor, RanksAtLeastAsWellAsTopOneWhenMarginDrivesAgreement) {
  const int n = testing::sanitized() ? 2000 : 5000;
  const Data train = make_data(n, 1, false);
  const Data test = make_data(20000, 2, false);
  Acceptor a;
  a.fit(train.signals, train.agree);
  ASSERT_FALSE(a.is_fallback());
  const double auc_acceptor = auc(scores_of(a, test), test.agree);
  const double auc_top1 = auc(top1_of(test), test.agree);
  std::printf("  margin world: AUC acceptor %.4f, top-1 %.4f\n", auc_acceptor, auc_top1);
  EXPECT_GT(auc_acceptor, 0.7);
  EXPECT_GE(auc_acceptor, auc_top1 - 0.01);
}

TEST(Acceptor, UsesSignalsBeyondTopOne) {
  const int n = testing::sanitized() ? 2000 : 5000;
  const Data train = make_data(n, 3, true);
  const Data test = make_data(20000, 4, true);
  Acceptor a;
  a.fit(train.signals, train.agree);
  const double auc_acceptor = auc(scores_of(a, test), test.agree);
  const double auc_top1 = auc(top1_of(test), test.agree);
  std::printf("  margin+OOD world: AUC acceptor %.4f, top-1 %.4f\n", auc_acceptor, auc_top1);
  EXPECT_GT(auc_acceptor, auc_top1 + 0.03);
  // Calibrated-ish: mean score near the agreement rate.
  double mean_score = 0, rate = 0;
  const auto sc = scores_of(a, test);
  for (size_t i = 0; i < sc.size(); ++i) {
    mean_score += sc[i];
    rate += test.agree[i];
  }
  EXPECT_NEAR(mean_score / sc.size(), rate / sc.size(), 0.02);
}

TEST(Acceptor, ScoreRisesWithConfidenceAndStaysInRange) {
  const Data train = make_data(4000, 5, false);
  Acceptor a;
  a.fit(train.signals, train.agree);
  ASSERT_FALSE(a.is_fallback());
  const std::vector<float> prior(6, 0.85f);
  float prev = -1;
  for (int i = 0; i <= 20; ++i) {
    const float top = 0.2f + 0.04f * i;
    std::vector<float> probs(6, (1 - top) / 5);
    probs[0] = top;
    const float sc = a.score(compute_signals(probs, prior, 0.5f, 50.f));
    EXPECT_GE(sc, prev - 1e-3f) << "top1=" << top;
    prev = sc;
  }
  // Out-of-range and garbage signals still give a score in [0, 1]; NaN defers.
  Signals wild;
  wild.v.fill(1e30f);
  const float w = a.score(wild);
  EXPECT_GE(w, 0.f);
  EXPECT_LE(w, 1.f);
  Signals bad;
  bad.v.fill(std::nanf(""));
  EXPECT_EQ(a.score(bad), 0.f);
}

TEST(Acceptor, FallsBackToTopOneWithoutBothOutcomes) {
  Acceptor fresh;
  EXPECT_TRUE(fresh.is_fallback());
  Signals s;
  s.v[0] = 0.73f;
  EXPECT_FLOAT_EQ(fresh.score(s), 0.73f);

  Data d = make_data(500, 6, false);
  Acceptor all;
  std::vector<uint8_t> ones(d.agree.size(), 1);
  all.fit(d.signals, ones);
  EXPECT_TRUE(all.is_fallback());
  for (size_t i = 0; i < 20; ++i) EXPECT_FLOAT_EQ(all.score(d.signals[i]), d.signals[i].v[0]);

  // 19 disagreements: too few to learn from.
  std::vector<uint8_t> few(d.agree.size(), 1);
  for (int i = 0; i < Acceptor::kMinRowsPerClass - 1; ++i) few[i * 7] = 0;
  Acceptor sparse;
  sparse.fit(d.signals, few);
  EXPECT_TRUE(sparse.is_fallback());
  few[1] = 0;  // 20: enough
  sparse.fit(d.signals, few);
  EXPECT_FALSE(sparse.is_fallback());

  // A fitted acceptor refitted on one outcome falls back again.
  Acceptor refit;
  refit.fit(d.signals, d.agree);
  ASSERT_FALSE(refit.is_fallback());
  refit.fit(d.signals, ones);
  EXPECT_TRUE(refit.is_fallback());
  EXPECT_FLOAT_EQ(refit.score(s), 0.73f);

  EXPECT_THROW(all.fit(d.signals, std::vector<uint8_t>(3, 1)), InputError);
}

TEST(Acceptor, DeterministicFit) {
  const Data d = make_data(3000, 7, true);
  Acceptor a, b;
  a.fit(d.signals, d.agree, 1);
  b.fit(d.signals, d.agree, 99);
  BinaryWriter wa, wb;
  a.save(wa);
  b.save(wb);
  EXPECT_EQ(wa.bytes(), wb.bytes());
}

TEST(Acceptor, SaveLoadRoundTrip) {
  const Data d = make_data(3000, 8, true);
  Acceptor a;
  a.fit(d.signals, d.agree);
  BinaryWriter w;
  a.save(w);
  w.put<uint32_t>(12345);  // whatever follows in the model file stays readable
  Acceptor b;
  BinaryReader r(w.bytes());
  b.load(r);
  EXPECT_EQ(r.get<uint32_t>(), 12345u);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(b.is_fallback(), a.is_fallback());
  for (const auto& s : d.signals) ASSERT_EQ(a.score(s), b.score(s));

  Acceptor fb;
  BinaryWriter w2;
  fb.save(w2);
  Acceptor c;
  c.fit(d.signals, d.agree);
  BinaryReader r2(w2.bytes());
  c.load(r2);
  EXPECT_TRUE(c.is_fallback());
  EXPECT_FLOAT_EQ(c.score(d.signals[0]), d.signals[0].v[0]);
}

TEST(Acceptor, LoadRejectsGarbageAndKeepsItsState) {
  const Data d = make_data(2000, 9, false);
  Acceptor a;
  a.fit(d.signals, d.agree);
  BinaryWriter w;
  a.save(w);
  const std::string good = w.bytes();
  const float before = a.score(d.signals[0]);

  auto expect_format_error = [&](const std::string& bytes, const char* what) {
    BinaryReader r(bytes);
    EXPECT_THROW(a.load(r), FormatError) << what;
    EXPECT_EQ(a.score(d.signals[0]), before) << what;
  };
  expect_format_error("", "empty");
  expect_format_error(good.substr(0, good.size() / 2), "truncated");
  expect_format_error(good.substr(0, good.size() - 1), "one byte short");
  std::mt19937_64 rng(10);
  for (int t = 0; t < 50; ++t) {
    std::string junk(good.size(), '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng() & 0xff);
    expect_format_error(junk, "random bytes");
  }
  std::string version = good;
  version[4] = 2;  // format version follows the 4-byte tag
  expect_format_error(version, "future version");
  std::string flag = good;
  flag[8] = 7;
  expect_format_error(flag, "bad flag");
  std::string nan = good;
  const double q = std::nan("");
  std::memcpy(&nan[nan.size() - sizeof(double)], &q, sizeof(double));  // the bias
  expect_format_error(nan, "non-finite weight");
}

TEST(Acceptor, ConcurrentScoringMatchesSerial) {
  const Data d = make_data(3000, 11, true);
  Acceptor a;
  a.fit(d.signals, d.agree);
  const auto serial = scores_of(a, d);
  std::vector<std::vector<float>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { got[t] = scores_of(a, d); });
  }
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, serial);
}

}  // namespace
}  // namespace tracer
