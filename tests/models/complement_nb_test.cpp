#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "models/factories.hpp"
#include "models/surrogate_contract.hpp"

namespace tracer {
namespace {

using namespace tracer::testing;

SurrogateFactory cnb() {
  return [] { return make_complement_nb("complement_nb"); };
}

TEST(ComplementNB, LearnsSeparableProblem) { check_learns_separable(cnb()); }
TEST(ComplementNB, ProbabilitiesWellFormedEvenForExtremeRows) {
  check_probabilities_well_formed(cnb());
}
TEST(ComplementNB, DeterministicGivenSeed) { check_deterministic(cnb()); }
TEST(ComplementNB, SaveLoadRoundTrip) { check_round_trip(cnb()); }
TEST(ComplementNB, CorruptFileThrowsFormatError) { check_corrupt_input_throws(cnb()); }
TEST(ComplementNB, RejectsBadTrainingInput) { check_rejects_bad_training_input(cnb()); }
TEST(ComplementNB, ConcurrentPredictIsConsistent) { check_concurrent_predict(cnb()); }
TEST(ComplementNB, FitsTinyProblem) { check_tiny_problem(cnb()); }

double saved_temperature(const Surrogate& m) {
  const std::string bytes = saved(m);
  BinaryReader r(bytes);
  r.get<uint32_t>();
  return r.get<double>();
}

// scikit-learn ComplementNB(alpha=1, norm=False) joint log-likelihood, written out in double.
std::vector<double> reference_jll(const SyntheticData& d, SparseRow x) {
  const size_t C = static_cast<size_t>(d.num_classes), D = d.X.cols();
  std::vector<std::vector<double>> count(C, std::vector<double>(D, 0.0));
  for (size_t i = 0; i < d.X.rows(); ++i) {
    SparseRow r = d.X.row(i);
    for (size_t k = 0; k < r.nnz(); ++k) count[static_cast<size_t>(d.y[i])][r.idx[k]] += r.val[k];
  }
  std::vector<double> all(D, 0.0);
  for (size_t c = 0; c < C; ++c)
    for (size_t j = 0; j < D; ++j) all[j] += count[c][j];
  std::vector<double> jll(C, 0.0);
  for (size_t c = 0; c < C; ++c) {
    std::vector<double> comp(D);
    double total = 0;
    for (size_t j = 0; j < D; ++j) total += comp[j] = all[j] + 1.0 - count[c][j];
    for (size_t k = 0; k < x.nnz(); ++k) jll[c] += x.val[k] * -std::log(comp[x.idx[k]] / total);
  }
  return jll;
}

TEST(ComplementNB, MatchesScikitLearnFormulaUpToTemperature) {
  // 150 rows: the temperature is fitted in-sample on the same weights the model keeps, so
  // log p_a - log p_b must equal beta * (jll_a - jll_b) exactly (up to float rounding).
  auto d = make_synthetic({.rows = 150, .flip = 0.2}, 3);
  auto m = fitted(cnb(), d);
  const double beta = saved_temperature(*m);
  ASSERT_GT(beta, 0.0);
  for (size_t i = 0; i < 20; ++i) {
    auto jll = reference_jll(d, d.X.row(i));
    auto p = proba(*m, d.X.row(i));
    for (size_t c = 1; c < jll.size(); ++c) {
      const double want = beta * (jll[c] - jll[0]);
      EXPECT_NEAR(std::log(p[c]) - std::log(p[0]), want, 1e-3 * (1 + std::abs(want)));
    }
  }
}

TEST(ComplementNB, TemperatureMakesConfidenceHonest) {
  // Noisy labels: raw CNB scores would be far off; the fitted temperature should bring the
  // mean top-1 probability close to the actual held-out accuracy.
  SyntheticSpec spec{.rows = 1500, .flip = 0.35};
  auto train = make_synthetic(spec, 1);
  spec.rows = 1000;
  auto test = make_synthetic(spec, 2);
  auto m = fitted(cnb(), train);
  const double acc = accuracy(*m, test), conf = mean_confidence(*m, test);
  EXPECT_GT(acc, 0.5);
  EXPECT_NEAR(conf, acc, 0.08);
}

TEST(ComplementNB, RejectsNegativeFeatures) {
  SparseMatrix X(2);
  const std::vector<uint32_t> idx = {0, 1};
  const std::vector<float> pos = {0.5f, 0.5f}, neg = {-0.5f, 0.5f};
  X.add_row({idx, pos});
  X.add_row({idx, neg});
  auto m = make_complement_nb("complement_nb");
  EXPECT_THROW(m->fit(X, std::vector<int>{0, 1}, 2, {}), InputError);
}

}  // namespace
}  // namespace tracer
