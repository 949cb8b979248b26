#include "fit/gate_search.hpp"

#include <gtest/gtest.h>

namespace tracer {
namespace {

// A calibrate split whose strictest threshold accepts only 40 rows: all agree, but 40 rows can
// not pass at alpha 0.95 (0.95^40 = 0.13 > delta), so testing that step would end the walk.
struct Fixture {
  std::vector<Candidate> zoo;
  HeldOut cal;
  ScoredStage stage;
  Plan plan;
  Fixture(int first_rows) {
    zoo.resize(1);
    for (int i = 0; i < 1000; ++i) {
      float score = i < 40 ? 0.995f : (i < 400 ? 0.985f : 0.3f);
      bool agree = i < 400 || i % 2 == 0;
      stage.cal_score.push_back(score);
      cal.y.push_back(1);
      zoo[0].calib_pred.push_back(agree ? 1 : 0);
    }
    stage.cal_ood.assign(1000, 0);
    plan.start_rows = first_rows;
    plan.method = Method::kL2D;
    plan.s1 = &stage;
    plan.steps = {{0.99f}, {0.98f}, {0.2f}};
  }
};

TEST(WalkPlan, SkipsStepsSmallerThanThePlannedFirstStep) {
  WalkParams wp{0.95, 0.05, 30};
  Fixture planned(100);
  WalkResult w = walk_plan(planned.plan, planned.zoo, planned.cal, false, wp);
  ASSERT_TRUE(w.certified);
  EXPECT_EQ(w.step, 1);
  EXPECT_EQ(w.n, 400);
  EXPECT_TRUE(w.trace[0].skipped);
  EXPECT_FALSE(w.trace[2].passed);  // 700/1000 agree: fails, the walk stops there

  // Without a planned first step the 40-row step is tested, fails, and nothing certifies.
  Fixture unplanned(0);
  WalkResult u = walk_plan(unplanned.plan, unplanned.zoo, unplanned.cal, false, wp);
  EXPECT_FALSE(u.certified);
  ASSERT_FALSE(u.trace.empty());
  EXPECT_FALSE(u.trace[0].skipped);
  EXPECT_FALSE(u.trace[0].passed);
}

TEST(WalkPlan, TheLoosestStepsReservedShareRescuesAWalkStoppedEarly) {
  // A walk from the 40-row step fails at once (0.95^40 > delta); with a fifth of delta held by
  // the loosest step, that step is still tested: at alpha 0.6, 700/1000 agreeing passes at 0.01.
  WalkParams wp{0.6, 0.05, 10};
  Fixture f(0);
  f.cal.y.assign(1000, 1);
  for (int i = 0; i < 40; ++i) f.zoo[0].calib_pred[static_cast<size_t>(i)] = i < 20 ? 1 : 0;
  WalkResult stopped = walk_plan(f.plan, f.zoo, f.cal, false, wp);
  EXPECT_FALSE(stopped.certified);
  f.plan.last_share = 0.2;
  WalkResult rescued = walk_plan(f.plan, f.zoo, f.cal, false, wp);
  ASSERT_TRUE(rescued.certified);
  EXPECT_EQ(rescued.step, 2);
  EXPECT_NEAR(rescued.trace[2].level, 0.01, 1e-12);
  EXPECT_EQ(rescued.trace[1].level, 0.0);  // untested: the walk had stopped
}

TEST(WalkPlan, GlobalPlansAreNeverSkipped) {
  WalkParams wp{0.6, 0.05, 30};
  Fixture f(5000);  // a first step larger than the split: global must still be tested
  f.plan.method = Method::kGlobal;
  f.plan.steps = {{0.f}};
  WalkResult w = walk_plan(f.plan, f.zoo, f.cal, false, wp);
  ASSERT_TRUE(w.certified);
  EXPECT_EQ(w.n, 1000);
}

}  // namespace
}  // namespace tracer
