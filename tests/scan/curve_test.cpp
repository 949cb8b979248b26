// The saturating learning-curve fit shared by `tracer scan` and the report's learning curve.
#include "scan/curve.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "report/qualitative.hpp"

namespace tracer {
namespace {

double truth(double n) { return 0.9 - 0.3 * std::pow(n / 1000.0, -0.6); }

std::vector<CurvePoint> sample(const std::vector<double>& ns, double noise, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> eps(0, noise);
  std::vector<CurvePoint> pts;
  for (double n : ns) pts.push_back({n, truth(n) + (noise > 0 ? eps(rng) : 0.0), 1.0});
  return pts;
}

TEST(LearningCurve, RecoversAKnownSaturatingCurve) {
  const auto pts = sample({250, 500, 1000, 2000, 4000, 8000}, 0, 1);
  CurveOptions o;
  o.min_sd = 0.002;
  const LearningCurve c = fit_learning_curve(pts, o);
  ASSERT_TRUE(c.fitted());
  EXPECT_NEAR(c.plateau(), 0.9, 0.02);
  EXPECT_NEAR(c.exponent(), 0.6, 0.06);
  for (double n : {300.0, 3000.0, 16000.0, 80000.0}) {
    const CurvePrediction p = c.at(n);
    EXPECT_NEAR(p.value, truth(n), 0.01) << n;
    // The exponent grid is 8% apart: the region holds the truth to within that resolution.
    EXPECT_LE(p.low, truth(n) + 0.005) << n;
    EXPECT_GE(p.high, truth(n) - 0.005) << n;
  }
}

TEST(LearningCurve, NoisyPointsKeepTheTruthInsideTheInterval) {
  // Extrapolating 2x and 4x beyond the data from noisy points: the 80% interval should hold the
  // truth in most of 40 repetitions.
  int inside = 0, total = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    const auto pts = sample({250, 500, 1000, 2000}, 0.01, seed);
    CurveOptions o;
    const LearningCurve c = fit_learning_curve(pts, o);
    for (double n : {4000.0, 8000.0}) {
      const CurvePrediction p = c.at(n);
      inside += p.low <= truth(n) && truth(n) <= p.high;
      ++total;
      EXPECT_LE(p.high - p.low, 0.5);
    }
  }
  EXPECT_GE(double(inside) / total, 0.7) << inside << " of " << total;
}

TEST(LearningCurve, PredictionsStayInsideTheRange) {
  // Steeply rising points: a straight line in log(n) would leave [0, 1] within a few doublings.
  std::vector<CurvePoint> pts = {{100, 0.0, 1}, {200, 0.0, 1}, {400, 0.2, 1}, {800, 0.6, 1}};
  const LearningCurve c = fit_learning_curve(pts, {});
  for (double n = 50; n < 1e7; n *= 3) {
    const CurvePrediction p = c.at(n);
    EXPECT_GE(p.low, 0.0);
    EXPECT_LE(p.high, 1.0);
    EXPECT_LE(p.low, p.value);
    EXPECT_LE(p.value, p.high);
  }
  CurveOptions narrow;
  narrow.lower = 0.1, narrow.upper = 0.7;
  narrow.plateau_min = 0.1, narrow.plateau_max = 0.7;
  const LearningCurve d = fit_learning_curve(pts, narrow);
  for (double n = 50; n < 1e7; n *= 3) {
    EXPECT_GE(d.at(n).low, 0.1);
    EXPECT_LE(d.at(n).high, 0.7);
  }
}

TEST(LearningCurve, IsMonotoneInTracesEvenOnFallingPoints) {
  std::vector<CurvePoint> pts = {{100, 0.6, 1}, {200, 0.55, 1}, {400, 0.5, 1}, {800, 0.52, 1}};
  const LearningCurve c = fit_learning_curve(pts, {});
  ASSERT_TRUE(c.fitted());
  CurvePrediction prev = c.at(10);
  for (double n = 20; n < 1e6; n *= 1.7) {
    const CurvePrediction p = c.at(n);
    EXPECT_GE(p.value, prev.value - 1e-12) << n;
    EXPECT_GE(p.low, prev.low - 1e-12) << n;
    EXPECT_GE(p.high, prev.high - 1e-12) << n;
    prev = p;
  }
  EXPECT_GE(c.scale(), 0.0);
}

TEST(LearningCurve, PrefersAnImprovingCurveOnlyWhenTheDataAllowIt) {
  // Agreement rising like 1 - 0.3 (n / 1000)^-0.5: plateau 1 is plausible and preferred.
  std::vector<CurvePoint> rising;
  for (double n : {500.0, 1000.0, 2000.0})
    rising.push_back({n, 1 - 0.3 * std::pow(n / 1000, -0.5), 1000.0});
  CurveOptions o;
  o.inverse_variance_weights = true;
  o.prefer_high_plateau = true;
  EXPECT_NEAR(fit_learning_curve(rising, o).plateau(), 1.0, 1e-9);
  // Flat at 0.4 with tight weights: a curve heading for 1 does not fit; the plateau stays low.
  std::vector<CurvePoint> flat = {{500, 0.40, 5e4}, {1000, 0.40, 5e4}, {2000, 0.40, 5e4}};
  const LearningCurve f = fit_learning_curve(flat, o);
  EXPECT_LT(f.plateau(), 0.6);
  EXPECT_LT(f.at(20000).high, 0.5);
}

TEST(LearningCurve, TracesForInvertsThePointCurve) {
  const auto pts = sample({250, 500, 1000, 2000, 4000}, 0, 3);
  const LearningCurve c = fit_learning_curve(pts, {});
  const double n = c.traces_for(0.8);
  ASSERT_TRUE(std::isfinite(n));
  EXPECT_NEAR(c.at(n).value, 0.8, 1e-6);
  EXPECT_TRUE(std::isinf(c.traces_for(0.95)));  // above the plateau
  EXPECT_LT(c.traces_for(0.3), 400.0);          // already reached early on
  std::vector<CurvePoint> flat = {{100, 0.5, 1}, {200, 0.5, 1}, {400, 0.5, 1}};
  EXPECT_EQ(fit_learning_curve(flat, {}).traces_for(0.4), 0.0);
}

TEST(LearningCurve, OneDistinctSizeIsNotATrend) {
  std::vector<CurvePoint> pts = {{1000, 0.5, 1}, {1000, 0.6, 1}};
  const LearningCurve c = fit_learning_curve(pts, {});
  EXPECT_FALSE(c.fitted());
  EXPECT_NEAR(c.at(5000).value, 0.55, 1e-9);
  EXPECT_EQ(c.at(5000).low, 0.0);
  EXPECT_EQ(c.at(5000).high, 1.0);
  EXPECT_FALSE(fit_learning_curve({}, {}).fitted());
}

TEST(LearningCurve, NormalQuantile) {
  EXPECT_NEAR(normal_quantile_two_sided(0.8), 1.2816, 1e-3);
  EXPECT_NEAR(normal_quantile_two_sided(0.95), 1.96, 1e-3);
}

// The report's learning curve used to extend a straight line in log(traces) through refused
// refits (0%) and the certified policy: "doubling the traces would add about 74 points" from
// 42% coverage. The curve fit keeps the projection within [0, 100%] and states its interval.
TEST(ReportLearningCurve, DoublingNeverPromisesMoreThanIsLeft) {
  using nlohmann::json;
  json points = json::array();
  const std::vector<double> cov = {0, 0, 0, 0, 0, 0, 0.1, 0.25, 0.35, 0.42};
  for (size_t i = 0; i < cov.size(); ++i)
    points.push_back(
        {{"traces", 150 * (i + 1)}, {"coverage", cov[i]}, {"surrogate_agreement", 0.9}});
  const json a = learning_curve_assessment(points, true, 0.95);
  ASSERT_TRUE(a.contains("coverage_gain_per_doubling")) << a.dump();
  const double gain = a["coverage_gain_per_doubling"];
  EXPECT_GE(gain, 0.0);
  EXPECT_LE(gain, 1 - 0.42 + 1e-9);
  EXPECT_LE(a["coverage_gain_interval"][1].get<double>(), 1 - 0.42 + 1e-9);
  const json& at2 = a["coverage_at_double"];
  EXPECT_LE(at2["high"].get<double>(), 1.0);
  EXPECT_GE(at2["low"].get<double>(), 0.42 - 1e-9);
  const std::string msg = a["message"];
  EXPECT_NE(msg.find("interval"), std::string::npos) << msg;

  // After a refusal, the agreement curve decides; a flat 40% never reaches 0.95.
  json flat = json::array();
  for (int i = 1; i <= 10; ++i)
    flat.push_back({{"traces", 150 * i}, {"coverage", 0.0}, {"surrogate_agreement", 0.40}});
  const json r = learning_curve_assessment(flat, false, 0.95);
  EXPECT_EQ(r["status"], "plateau") << r.dump();
}

}  // namespace
}  // namespace tracer
