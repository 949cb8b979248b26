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
    stage.first_rows = first_rows;
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
