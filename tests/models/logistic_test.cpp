#include <gtest/gtest.h>

#include <cstring>

#include "models/factories.hpp"
#include "models/linear_math.hpp"
#include "models/surrogate_contract.hpp"

namespace tracer {
namespace {

using namespace tracer::testing;

SurrogateFactory logistic(double l2) {
  return [l2] { return make_logistic("logreg_test", l2); };
}

TEST(Logistic, LearnsSeparableProblem) { check_learns_separable(logistic(1e-5)); }
TEST(Logistic, ProbabilitiesWellFormedEvenForExtremeRows) {
  check_probabilities_well_formed(logistic(1e-5));
}
TEST(Logistic, DeterministicGivenSeed) { check_deterministic(logistic(1e-5)); }
TEST(Logistic, SaveLoadRoundTrip) { check_round_trip(logistic(1e-5)); }
TEST(Logistic, CorruptFileThrowsFormatError) { check_corrupt_input_throws(logistic(1e-5)); }
TEST(Logistic, RejectsBadTrainingInput) { check_rejects_bad_training_input(logistic(1e-5)); }
TEST(Logistic, ConcurrentPredictIsConsistent) { check_concurrent_predict(logistic(1e-5)); }
TEST(Logistic, FitsTinyProblem) { check_tiny_problem(logistic(1e-5)); }

TEST(Logistic, NameAndHugePenaltyStayFinite) {
  auto m = make_logistic("logreg_strong", 1e3);
  EXPECT_EQ(m->name(), "logreg_strong");
  auto d = make_synthetic({}, 1);
  m->fit(d.X, d.y, d.num_classes, {});
  expect_distribution(proba(*m, d.X.row(0)), "huge l2");
  EXPECT_THROW(make_logistic("x", -1.0), InputError);
}

// Squared norm of the weights, read back from the saved model (format: version, l2, layer).
double weight_norm2(const Surrogate& m) {
  const std::string bytes = saved(m);
  BinaryReader r(bytes);
  EXPECT_EQ(r.get<uint32_t>(), 1u);
  r.get<double>();
  models::Affine layer;
  layer.load(r, "test", 0, 0);
  return layer.weight_norm2();
}

TEST(Logistic, StrongerPenaltyGivesSmallerWeightsAndLessConfidence) {
  SyntheticSpec spec{.flip = 0.1};
  auto train = make_synthetic(spec, 1);
  auto test = make_synthetic(spec, 2);
  auto strong = fitted(logistic(1e-2), train);
  auto weak = fitted(logistic(1e-5), train);
  EXPECT_LT(weight_norm2(*strong), 0.5 * weight_norm2(*weak));
  EXPECT_LT(mean_confidence(*strong, test), mean_confidence(*weak, test) - 0.05);
  EXPECT_GE(accuracy(*strong, test), 0.8);  // still a useful classifier
}

TEST(Logistic, LoadRejectsImplausibleShapes) {
  auto m = fitted(logistic(1e-5), make_synthetic({}, 1));
  std::string bytes = saved(*m);
  const size_t dim_at = sizeof(uint32_t) + sizeof(double);
  const size_t classes_at = dim_at + sizeof(uint64_t);
  for (auto [at, value] : {std::pair{dim_at, uint64_t{1} << 40}, {classes_at, uint64_t{1} << 40},
                           {classes_at, uint64_t{1}}, {classes_at, uint64_t{0}}}) {
    std::string bad = bytes;
    std::memcpy(bad.data() + at, &value, sizeof value);
    auto fresh = make_logistic("x", 1e-5);
    BinaryReader r(bad);
    EXPECT_THROW(fresh->load(r), FormatError) << "offset " << at << " value " << value;
  }
}

}  // namespace
}  // namespace tracer
