#include <gtest/gtest.h>

#include <vector>

#include "models/factories.hpp"
#include "models/linear_math.hpp"
#include "models/surrogate_contract.hpp"

namespace tracer {
namespace {

using namespace tracer::testing;

SurrogateFactory mlp() {
  return [] { return make_mlp("mlp"); };
}

TEST(Mlp, LearnsSeparableProblem) { check_learns_separable(mlp()); }
TEST(Mlp, ProbabilitiesWellFormedEvenForExtremeRows) { check_probabilities_well_formed(mlp()); }
TEST(Mlp, DeterministicGivenSeed) { check_deterministic(mlp()); }
TEST(Mlp, SaveLoadRoundTrip) { check_round_trip(mlp()); }
TEST(Mlp, CorruptFileThrowsFormatError) { check_corrupt_input_throws(mlp()); }
TEST(Mlp, RejectsBadTrainingInput) { check_rejects_bad_training_input(mlp()); }
TEST(Mlp, ConcurrentPredictIsConsistent) { check_concurrent_predict(mlp()); }
TEST(Mlp, FitsTinyProblem) { check_tiny_problem(mlp()); }

// XOR of two features (plus noise): no linear model can separate it, one hidden layer can.
SyntheticData xor_data(size_t rows, uint64_t seed) {
  models::Rng rng(seed);
  SyntheticData d{SparseMatrix(12), {}, 2};
  for (size_t i = 0; i < rows; ++i) {
    const bool a = rng.uniform() < 0.5, b = rng.uniform() < 0.5;
    std::vector<uint32_t> idx;
    std::vector<float> val;
    if (a) idx.push_back(0), val.push_back(1.f);
    if (b) idx.push_back(1), val.push_back(1.f);
    idx.push_back(static_cast<uint32_t>(2 + rng.below(10)));  // noise feature
    val.push_back(0.3f);
    d.X.add_row({idx, val});
    d.y.push_back(a != b ? 1 : 0);
  }
  return d;
}

TEST(Mlp, LearnsWhatNoLinearModelCan) {
  auto train = xor_data(400, 1), test = xor_data(400, 2);
  auto net = fitted(mlp(), train);
  EXPECT_GE(accuracy(*net, test), 0.97);
  auto linear = fitted([] { return make_logistic("logreg", 1e-5); }, train);
  EXPECT_LE(accuracy(*linear, test), 0.85);  // shows the problem really is non-linear
}

TEST(Mlp, LoadRejectsTooWideHiddenLayer) {
  // A hidden layer wider than the stack buffer predict_proba uses must not load.
  models::Affine l1, l2;
  l1.resize(4, 600);
  l2.resize(600, 3);
  BinaryWriter w;
  w.put<uint32_t>(1);
  l1.save(w);
  l2.save(w);
  auto m = make_mlp("mlp");
  BinaryReader r(w.bytes());
  EXPECT_THROW(m->load(r), FormatError);
}

TEST(Mlp, LoadRejectsMismatchedLayers) {
  models::Affine l1, l2;
  l1.resize(4, 16);
  l2.resize(15, 3);  // expects 16 inputs
  BinaryWriter w;
  w.put<uint32_t>(1);
  l1.save(w);
  l2.save(w);
  auto m = make_mlp("mlp");
  BinaryReader r(w.bytes());
  EXPECT_THROW(m->load(r), FormatError);
}

}  // namespace
}  // namespace tracer
