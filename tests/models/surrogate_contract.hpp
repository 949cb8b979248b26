#pragma once
// Checks every surrogate must pass (the Surrogate interface contract), shared by the per-model
// test files so each family is held to the same rules.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "models/surrogate.hpp"
#include "models/synthetic.hpp"
#include "util/error.hpp"

namespace tracer::testing {

using SurrogateFactory = std::function<std::unique_ptr<Surrogate>()>;

inline std::string saved(const Surrogate& m) {
  BinaryWriter w;
  m.save(w);
  return w.take();
}

inline std::vector<float> proba(const Surrogate& m, SparseRow x) {
  std::vector<float> p(static_cast<size_t>(m.num_classes()));
  m.predict_proba(x, p);
  return p;
}

inline double accuracy(const Surrogate& m, const SyntheticData& d) {
  size_t hit = 0;
  for (size_t i = 0; i < d.X.rows(); ++i) {
    auto p = proba(m, d.X.row(i));
    hit += static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin()) == d.y[i];
  }
  return static_cast<double>(hit) / static_cast<double>(d.X.rows());
}

// Mean top-1 probability: how confident the model is on these rows.
inline double mean_confidence(const Surrogate& m, const SyntheticData& d) {
  double s = 0;
  for (size_t i = 0; i < d.X.rows(); ++i) {
    auto p = proba(m, d.X.row(i));
    s += *std::max_element(p.begin(), p.end());
  }
  return s / static_cast<double>(d.X.rows());
}

inline void expect_distribution(const std::vector<float>& p, const std::string& what) {
  double sum = 0;
  for (float v : p) {
    ASSERT_TRUE(std::isfinite(v)) << what;
    EXPECT_GE(v, 0.f) << what;
    EXPECT_LE(v, 1.f) << what;
    sum += v;
  }
  EXPECT_NEAR(sum, 1.0, 1e-5) << what;
}

inline std::unique_ptr<Surrogate> fitted(const SurrogateFactory& make, const SyntheticData& d,
                                         uint64_t seed = 7) {
  auto m = make();
  m->fit(d.X, d.y, d.num_classes, FitContext{.seed = seed, .threads = 1});
  return m;
}

inline void check_learns_separable(const SurrogateFactory& make) {
  SyntheticSpec spec;
  auto train = make_synthetic(spec, 1);
  spec.rows = 400;
  auto test = make_synthetic(spec, 2);
  auto m = fitted(make, train);
  EXPECT_EQ(m->num_classes(), spec.classes);
  EXPECT_GE(accuracy(*m, test), 0.95);
}

inline void check_probabilities_well_formed(const SurrogateFactory& make) {
  auto train = make_synthetic({}, 1);
  auto m = fitted(make, train);
  for (size_t i = 0; i < 50; ++i) expect_distribution(proba(*m, train.X.row(i)), "row");

  expect_distribution(proba(*m, SparseRow{}), "empty row");
  const auto dim = static_cast<uint32_t>(train.X.cols());
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const std::vector<uint32_t> idx = {0, 1, 41, dim - 1, dim + 5};  // dim + 5: unknown feature
  const std::vector<std::vector<float>> bad = {
      {1e30f, 3e38f, 1e30f, 2e38f, 1.f},
      {-3e38f, 3e38f, -1e30f, 1e30f, 1.f},
      {kInf, -kInf, 1.f, 1.f, 1.f},
      {std::nanf(""), 1.f, 1.f, 1.f, 1.f},
  };
  for (const auto& val : bad) expect_distribution(proba(*m, SparseRow{idx, val}), "extreme row");

  std::vector<float> wrong(static_cast<size_t>(m->num_classes()) + 1);
  EXPECT_THROW(m->predict_proba(train.X.row(0), wrong), InputError);
}

inline void check_deterministic(const SurrogateFactory& make) {
  auto train = make_synthetic({}, 1);
  const std::string a = saved(*fitted(make, train, 11));
  const std::string b = saved(*fitted(make, train, 11));
  EXPECT_EQ(a, b) << "same data and seed must give identical models";
  EXPECT_NE(a, saved(*fitted(make, train, 12))) << "the seed should matter";
}

inline void check_round_trip(const SurrogateFactory& make) {
  auto train = make_synthetic({}, 1);
  auto m = fitted(make, train);
  const std::string bytes = saved(*m);
  auto copy = make();
  BinaryReader r(bytes);
  copy->load(r);
  EXPECT_TRUE(r.done()) << "load() must consume exactly what save() wrote";
  ASSERT_EQ(copy->num_classes(), m->num_classes());
  EXPECT_EQ(saved(*copy), bytes);
  for (size_t i = 0; i < train.X.rows(); i += 7) {
    EXPECT_EQ(proba(*copy, train.X.row(i)), proba(*m, train.X.row(i))) << "row " << i;
  }
}

inline void check_corrupt_input_throws(const SurrogateFactory& make) {
  auto m = fitted(make, make_synthetic({}, 1));
  const std::string bytes = saved(*m);
  // Every short prefix, then a spread of longer ones up to one byte short.
  std::vector<size_t> cuts;
  for (size_t n = 0; n < std::min<size_t>(bytes.size(), 80); ++n) cuts.push_back(n);
  for (size_t k = 0; k < 40; ++k) cuts.push_back(bytes.size() - 1 - (bytes.size() - 1) * k / 40);
  for (size_t n : cuts) {
    auto fresh = make();
    BinaryReader r(std::string_view(bytes).substr(0, n));
    EXPECT_THROW(fresh->load(r), FormatError) << "prefix of " << n << " bytes";
  }
  std::string wrong_version = bytes;
  const uint32_t v = 999;
  std::memcpy(wrong_version.data(), &v, sizeof v);
  auto fresh = make();
  BinaryReader r(wrong_version);
  EXPECT_THROW(fresh->load(r), FormatError);
}

inline void check_rejects_bad_training_input(const SurrogateFactory& make) {
  auto d = make_synthetic({.rows = 50}, 1);
  auto m = make();
  std::vector<int> y = d.y;
  y[3] = d.num_classes;  // out of range
  EXPECT_THROW(m->fit(d.X, y, d.num_classes, {}), InputError);
  y[3] = -1;
  EXPECT_THROW(m->fit(d.X, y, d.num_classes, {}), InputError);
  std::vector<int> short_y(d.y.begin(), d.y.end() - 1);
  EXPECT_THROW(m->fit(d.X, short_y, d.num_classes, {}), InputError);
  std::vector<int> zeros(d.y.size(), 0);
  EXPECT_THROW(m->fit(d.X, zeros, 1, {}), InputError);
  SparseMatrix nan_x(4);
  const std::vector<uint32_t> idx = {1};
  const std::vector<float> val = {std::nanf("")};
  nan_x.add_row({idx, val});
  nan_x.add_row({idx, val});
  EXPECT_THROW(m->fit(nan_x, std::vector<int>{0, 1}, 2, {}), InputError);
}

inline void check_concurrent_predict(const SurrogateFactory& make) {
  auto d = make_synthetic({}, 1);
  auto m = fitted(make, d);
  std::vector<std::vector<float>> expect;
  for (size_t i = 0; i < d.X.rows(); ++i) expect.push_back(proba(*m, d.X.row(i)));
  std::vector<int> mismatches(2, 0);
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < 2; ++t) {
      pool.emplace_back([&, t] {
        std::vector<float> p(static_cast<size_t>(m->num_classes()));
        for (int rep = 0; rep < 3; ++rep) {
          for (size_t i = 0; i < d.X.rows(); ++i) {
            m->predict_proba(d.X.row(i), p);
            mismatches[static_cast<size_t>(t)] += p != expect[i];
          }
        }
      });
    }
  }
  EXPECT_EQ(mismatches[0] + mismatches[1], 0);
}

// Tiny problems (a handful of rows, two classes) must still fit and predict sensibly.
inline void check_tiny_problem(const SurrogateFactory& make) {
  SparseMatrix X(3);
  const std::vector<uint32_t> a = {0, 2}, b = {1, 2};
  const std::vector<float> v = {0.8f, 0.6f};
  for (int k = 0; k < 3; ++k) {
    X.add_row({a, v});
    X.add_row({b, v});
  }
  const std::vector<int> y = {0, 1, 0, 1, 0, 1};
  auto m = make();
  m->fit(X, y, 2, {});
  auto p0 = proba(*m, X.row(0)), p1 = proba(*m, X.row(1));
  EXPECT_GT(p0[0], p0[1]);
  EXPECT_GT(p1[1], p1[0]);
}

}  // namespace tracer::testing
