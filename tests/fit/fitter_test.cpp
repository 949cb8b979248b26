#include "fit/fitter.hpp"

#include <gtest/gtest.h>

#include "gate/bounds.hpp"
#include "runtime/drift.hpp"
#include "runtime/router.hpp"
#include "synthetic_traces.hpp"
#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using nlohmann::json;

FitOptions small_options(double target) {
  FitOptions o;
  o.target = target;
  o.zoo = {"logreg_strong", "complement_nb"};
  o.threads = 2;
  return o;
}

FitResult fit_quiet(const TraceSet& set, const FitOptions& o) {
  Progress quiet(false);
  return fit_policy(set, o, quiet);
}

TEST(Fitter, CertifiedPolicyIsConsistentWithTheRouter) {
  TraceSet set = testing::synthetic_traces(6, 250, 0.05, 1);
  FitResult r = fit_quiet(set, small_options(0.9));
  ASSERT_TRUE(r.deployed) << r.manifest["gate"].dump(2);
  const auto& cert = r.manifest["gate"]["certified"];
  EXPECT_GE(cert["lower_bound"].get<double>(), 0.9);
  EXPECT_GT(cert["coverage"].get<double>(), 0.5);

  // The policy as the router runs it (after a save/load round trip) decides every calibrate
  // row exactly as the certification counted it.
  Policy loaded = decode_policy(encode_policy(r.policy), "test");
  Router router(std::move(loaded), r.manifest);
  RouteScratch scratch = router.make_scratch();
  int handled = 0, agree = 0;
  for (const auto& d : r.calibrate_rows) {
    RouteResult rr = router.route(set.traces[d.trace].input, scratch);
    ASSERT_EQ(rr.handled, d.handled) << set.traces[d.trace].input;
    if (rr.handled) {
      ASSERT_EQ(rr.label, d.predicted);
      ++handled;
      agree += rr.label == d.teacher;
    }
  }
  EXPECT_EQ(handled, cert["accepted"].get<int>());
  EXPECT_EQ(agree, cert["agreeing"].get<int>());

  // The drift reference is the calibrate rows' stage-1 scores as routed: routing the calibrate
  // rows again is, by construction, no drift at all.
  DriftReference ref = DriftReference::from_json(r.manifest["drift"]);
  ASSERT_FALSE(ref.empty());
  EXPECT_EQ(ref.rows, static_cast<int64_t>(r.calibrate_rows.size()));
  EXPECT_NEAR(ref.handled_share, cert["coverage"].get<double>(), 1e-4);  // rounded there
  std::vector<float> scores;
  size_t handled_again = 0;
  for (const auto& d : r.calibrate_rows) {
    RouteResult rr = router.route(set.traces[d.trace].input, scratch);
    scores.push_back(rr.stage1_score);
    handled_again += rr.handled;
  }
  DriftReport same = compare_drift(ref, scores, handled_again, 0, DriftOptions{0, 50, 1e-4});
  EXPECT_TRUE(same.available);
  EXPECT_LT(same.ks, 0.02);
  EXPECT_FALSE(same.drift);
}

TEST(Fitter, FrontierCoverageNeverIncreasesWithTheTarget) {
  TraceSet set = testing::synthetic_traces(5, 300, 0.08, 2);
  FitResult r = fit_quiet(set, small_options(0.9));
  std::map<std::string, std::vector<std::pair<double, double>>> by_method;
  for (const auto& row : r.frontier["rows"])
    by_method[row["method"]].emplace_back(row["target"].get<double>(), row.value("coverage", 0.0));
  ASSERT_EQ(by_method.size(), 3u);
  for (auto& [method, rows] : by_method) {
    std::sort(rows.begin(), rows.end());
    for (size_t i = 1; i < rows.size(); ++i)
      EXPECT_LE(rows[i].second, rows[i - 1].second + 1e-12)
          << method << " at target " << rows[i].first;
  }
}

TEST(Fitter, OptionsRoundTripThroughTheManifest) {
  FitOptions o = small_options(0.93);
  o.delta = 0.01;
  o.zoo = {"mlp", "linear_svm"};
  o.methods = {Method::kL2D};
  o.fractions = {0.5, 0.25, 0.25};
  o.seed = 9;
  o.ood = false;
  FitOptions back = fit_options_from(fit_options_json(o), json::object(), json::object());
  EXPECT_EQ(back.target, o.target);
  EXPECT_EQ(back.delta, o.delta);
  EXPECT_EQ(back.zoo, o.zoo);
  EXPECT_EQ(back.methods, o.methods);
  ASSERT_TRUE(back.fractions.has_value());
  EXPECT_EQ(back.fractions->select, 0.25);
  EXPECT_EQ(back.seed, 9u);
  EXPECT_FALSE(back.ood);
  json bad = fit_options_json(o);
  bad["methods"] = json::array({"sideways"});
  EXPECT_THROW(fit_options_from(bad, json(), json()), FormatError);

  // What `tracer update` reads back: the fit records exactly the options it ran with.
  TraceSet set = testing::synthetic_traces(4, 150, 0.05, 5);
  FitOptions run = small_options(0.9);
  run.seed = 11;
  FitResult r = fit_quiet(set, run);
  EXPECT_EQ(r.manifest["options"], fit_options_json(run));
  EXPECT_EQ(fit_options_json(fit_options_from(r.manifest["options"], r.manifest, r.frontier)),
            fit_options_json(run));
}

TEST(Fitter, RandomLabelsAreRefusedWithAReason) {
  TraceSet set = testing::synthetic_traces(4, 150, 1.0, 3);  // teacher is pure noise
  FitResult r = fit_quiet(set, small_options(0.9));
  EXPECT_FALSE(r.deployed);
  EXPECT_EQ(r.policy.method, Method::kNone);
  const auto& refusal = r.manifest["gate"]["refusal"];
  EXPECT_TRUE(refusal["reason"].is_string());
  EXPECT_LT(refusal["surrogate_agreement_on_calibrate"].get<double>(), 0.9);
  for (const auto& d : r.calibrate_rows) {
    EXPECT_FALSE(d.handled);
    EXPECT_EQ(d.reason, DeferReason::kNoPolicy);
  }
}

TEST(Fitter, TooFewTracesIsAClearError) {
  TraceSet set = testing::synthetic_traces(2, 10, 0.0, 4);
  EXPECT_THROW(fit_quiet(set, small_options(0.9)), InputError);
}

// The promise itself, end to end: fit on traces, route fresh traffic from the same
// distribution, and count runs whose handled traffic agrees less than the target. Violations
// are judged by the test sample's one-sided 95% upper bound (so test-set noise alone does not
// count), and must stay within what δ = 0.05 allows.
TEST(Fitter, GuaranteeHoldsOnFreshTrafficOverManySeeds) {
  const int runs = testing::sanitized() ? 8 : 40;
  const double alpha = 0.88;
  int violations = 0, deployed = 0;
  for (int run = 0; run < runs; ++run) {
    TraceSet all = testing::synthetic_traces(5, 800, 0.06, 100 + run);
    // Half the traces to fit, the other half as fresh traffic (interleaved by label).
    TraceSet train, fresh;
    train.labels = fresh.labels = all.labels;
    for (size_t i = 0; i < all.size(); ++i) {
      TraceSet& dst = (i % 2 == 0) ? train : fresh;
      dst.traces.push_back(all.traces[i]);
      dst.y.push_back(all.y[i]);
    }
    FitOptions o = small_options(alpha);
    o.zoo = {"complement_nb"};  // fast; the promise does not depend on the surrogate
    o.ensemble_members = 0;
    o.seed = run;
    FitResult r = fit_quiet(train, o);
    if (!r.deployed) continue;
    ++deployed;
    Router router(std::move(r.policy), r.manifest);
    RouteScratch scratch = router.make_scratch();
    int n = 0, k = 0;
    for (size_t i = 0; i < fresh.size(); ++i) {
      RouteResult rr = router.route(fresh.traces[i].input, scratch);
      if (!rr.handled) continue;
      ++n;
      k += rr.label == fresh.y[i];
    }
    if (n > 0 && clopper_pearson_upper(n, k, 0.95) < alpha) ++violations;
  }
  EXPECT_GE(deployed, runs / 2) << "the fixture should usually certify something";
  // 99.9% quantile of Binomial(40, 0.05) is 7.
  EXPECT_LE(violations, testing::sanitized() ? 3 : 7);
  std::printf("guarantee check: %d deployed of %d runs, %d violations\n", deployed, runs,
              violations);
}

}  // namespace
}  // namespace tracer
