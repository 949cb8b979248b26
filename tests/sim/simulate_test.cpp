#include "sim/simulate.hpp"

#include <gtest/gtest.h>

#include "fit/synthetic_traces.hpp"
#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

SimulationOptions small(int days) {
  SimulationOptions o;
  o.days = days;
  o.seed_traces = 400;
  o.audit_share = 0.1;
  o.fit.target = 0.9;
  o.fit.zoo = {"complement_nb"};
  o.fit.ensemble_members = 0;
  o.fit.threads = 2;
  o.seed = 3;
  return o;
}

SimulationResult run(const TraceSet& data, const SimulationOptions& o) {
  Progress quiet(false);
  return simulate(data, o, quiet);
}

TEST(Simulate, ReplaysTrafficDayByDayAndCoverageGrows) {
  const TraceSet data = testing::synthetic_traces(6, 400, 0.03, 11);
  const SimulationOptions o = small(4);
  std::vector<int> seen;
  Progress quiet(false);
  const SimulationResult r =
      simulate(data, o, quiet, [&](const SimulatedDay& d) { seen.push_back(d.day); });
  ASSERT_EQ(r.days.size(), 5u);  // day 0 (the seed fit) and 4 days of traffic
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4}));
  size_t traffic = 0;
  for (const auto& d : r.days) {
    traffic += d.traffic;
    EXPECT_EQ(d.traffic, d.handled + d.deferred) << "day " << d.day;
    EXPECT_LE(d.audited, d.handled);
    EXPECT_EQ(d.llm_calls(), d.deferred + d.audited);
    if (d.day > 0) {
      // Each day starts with what the days before recorded: the seed plus deferred and audits.
      const auto& prev = r.days[static_cast<size_t>(d.day - 1)];
      EXPECT_EQ(d.traces_before, prev.traces_before + prev.deferred + prev.audited);
      // Noise 3%: the surrogate answers well, and the promise holds on every day's traffic.
      if (d.handled >= 200) {
        EXPECT_GE(d.agreement(), 0.88) << "day " << d.day;
      }
    }
  }
  EXPECT_EQ(traffic, data.size() - o.seed_traces);
  EXPECT_EQ(r.days[0].traces_before, o.seed_traces);
  EXPECT_EQ(r.days[0].served_by, 0);
  ASSERT_TRUE(r.days[0].certified) << r.days[0].reason;
  EXPECT_TRUE(r.days[0].promoted);
  EXPECT_EQ(r.days[1].served_by, 1);
  EXPECT_GT(r.days.back().coverage(), 0.5);
  EXPECT_GE(r.days.back().coverage() + 0.05, r.days[1].coverage());

  const nlohmann::json j = r.to_json(o);
  EXPECT_EQ(j["format"], "tracer-simulation");
  ASSERT_EQ(j["days"].size(), 5u);
  EXPECT_EQ(j["days"][1]["traffic"], r.days[1].traffic);
  EXPECT_EQ(j["days"][2]["update"]["version"], 3);
  EXPECT_EQ(j["options"]["seed_traces"], 400);
}

TEST(Simulate, DeterministicForASeed) {
  const TraceSet data = testing::synthetic_traces(4, 250, 0.05, 2);
  const SimulationOptions o = small(2);
  const auto a = run(data, o).to_json(o), b = run(data, o).to_json(o);
  for (size_t d = 0; d < a["days"].size(); ++d) {
    EXPECT_EQ(a["days"][d]["handled"], b["days"][d]["handled"]);
    EXPECT_EQ(a["days"][d]["agreed"], b["days"][d]["agreed"]);
  }
}

// The teacher's answers for 3 of 6 labels change on day 2: the audit trips that day (the rest of
// the day is deferred) and a refit on the recent traces (window of one day) is promoted because
// the active version's audit tripped.
TEST(Simulate, ALabelFlipTripsTheAuditAndARefitTakesOver) {
  const TraceSet data = testing::synthetic_traces(6, 500, 0.02, 5);
  SimulationOptions o = small(4);
  o.audit_share = 0.25;
  o.audit_min_rows = 30;
  o.flip_labels = 3;
  o.flip_day = 2;
  o.window_days = 1;
  const SimulationResult r = run(data, o);
  ASSERT_EQ(r.flipped_labels.size(), 3u);
  EXPECT_FALSE(r.days[1].audit_tripped);
  EXPECT_TRUE(r.days[2].audit_tripped);
  EXPECT_LT(r.days[2].coverage(), r.days[1].coverage());  // deferred once tripped
  EXPECT_TRUE(r.days[2].promoted) << r.days[2].reason;
  EXPECT_NE(r.days[2].reason.find("the active version's audit tripped"), std::string::npos)
      << r.days[2].reason;
  // The new version learnt the new answers: the next day's handled traffic agrees again.
  ASSERT_GT(r.days[3].handled, 100u);
  EXPECT_GE(r.days[3].agreement(), 0.85);
}

TEST(Simulate, RejectsImpossibleOptions) {
  const TraceSet data = testing::synthetic_traces(3, 100, 0.0, 1);
  SimulationOptions o = small(2);
  o.seed_traces = 400;  // 300 traces in the file
  EXPECT_THROW(run(data, o), InputError);
  o = small(2);
  o.seed_traces = 50;
  EXPECT_NO_THROW(run(data, o));
  o.flip_labels = 1;
  EXPECT_THROW(run(data, o), InputError);
  o.flip_labels = 2;
  o.flip_day = 5;  // after the last day
  EXPECT_THROW(run(data, o), InputError);
  o = small(0);
  o.seed_traces = 50;
  EXPECT_THROW(run(data, o), InputError);
}

}  // namespace
}  // namespace tracer
