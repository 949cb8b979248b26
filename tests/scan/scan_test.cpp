// `tracer scan` as a library: sane estimates on real traces, nothing promised on random labels,
// and a prediction checked against an actual fit.
#include "scan/scan.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "fit/fitter.hpp"
#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using nlohmann::json;

TraceSet traces_of(const std::vector<std::string>& lines) {
  testing::TempDir dir;
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  testing::write_file(dir.file("t.jsonl"), all);
  return read_traces(dir.file("t.jsonl"));
}

ScanOptions quick() {
  ScanOptions o;
  o.seeds = testing::sanitized() ? 1 : 2;
  o.draws = 200;
  o.threads = 2;
  return o;
}

void expect_sane(const ScanEstimate& e, const std::string& what) {
  EXPECT_GE(e.low, 0.0) << what;
  EXPECT_LE(e.high, 1.0) << what;
  EXPECT_LE(e.low, e.value + 1e-12) << what;
  EXPECT_LE(e.value, e.high + 1e-12) << what;
}

TEST(Scan, SaneEstimatesOnShippedBanking77) {
  const TraceSet set = traces_of(testing::banking77_lines(20, 40));
  Progress quiet(false);
  const ScanOptions o = quick();
  const ScanResult r = scan_traces(set, o, quiet);
  EXPECT_EQ(r.traces, set.size());
  EXPECT_EQ(r.labels, 20u);
  EXPECT_EQ(r.fits.size(), 3u * o.seeds);
  ASSERT_EQ(r.horizons.size(), 4u);
  EXPECT_EQ(r.horizons[0].multiple, 1.0);
  EXPECT_EQ(r.horizons[2].traces, 5 * set.size());
  for (size_t h = 0; h < r.horizons.size(); ++h) {
    ASSERT_EQ(r.horizons[h].coverage.size(), o.targets.size());
    expect_sane(r.horizons[h].agreement, "agreement");
    for (size_t t = 0; t < o.targets.size(); ++t) {
      const auto& e = r.horizons[h].coverage[t];
      expect_sane(e, "coverage");
      if (t > 0) {
        EXPECT_GE(r.horizons[h].coverage[t - 1].value, e.value);  // looser >= stricter
      }
      if (h > 0) {
        EXPECT_GE(e.value, r.horizons[h - 1].coverage[t].value);  // more traces >= fewer
      }
    }
  }
  // 40 traces per label of a 20-label Banking77 subset certify something at 0.8 already.
  EXPECT_GT(r.horizons[0].coverage[0].value, 0.3);
  EXPECT_GT(r.horizons[0].agreement.value, 0.7);
  EXPECT_EQ(r.label_rows.size(), 20u);
  for (const auto& l : r.label_rows) {
    EXPECT_TRUE(l.status == "ok" || l.status == "needs_traces" || l.status == "unlikely" ||
                l.status == "too_few_traces")
        << l.status;
    expect_sane(l.agreement, l.label);
  }
  const json j = r.to_json();
  EXPECT_EQ(j["format"], "tracer-scan");
  ASSERT_EQ(j["targets"].size(), o.targets.size());
  for (const auto& t : j["targets"]) {
    EXPECT_TRUE(t["now"].contains("observed"));
    ASSERT_EQ(t["at"].size(), 3u);
    for (const auto& a : t["at"]) {
      EXPECT_GE(a["low"].get<double>(), 0.0);
      EXPECT_LE(a["high"].get<double>(), 1.0);
    }
  }
  EXPECT_FALSE(j["verdict"].empty());
  const std::string text = r.to_text();
  EXPECT_NE(text.find("Certified coverage"), std::string::npos);
  EXPECT_NE(text.find("10x"), std::string::npos);
}

// Labels that have nothing to do with the text (like SNLI under TF-IDF: the words cannot tell
// entailment from contradiction): nothing certifies now, nothing is promised for later.
TEST(Scan, RandomLabelsCertifyNothingAndMoreTracesDoNotHelp) {
  auto lines = testing::banking77_lines(20, 40);
  std::mt19937_64 rng(7);
  const char* names[] = {"entailment", "neutral", "contradiction"};
  for (auto& l : lines) {
    json j = json::parse(l);
    j["teacher"] = names[rng() % 3];
    l = j.dump();
  }
  const TraceSet set = traces_of(lines);
  Progress quiet(false);
  const ScanResult r = scan_traces(set, quick(), quiet);
  for (const auto& h : r.horizons)
    for (const auto& e : h.coverage) EXPECT_EQ(e.value, 0.0) << h.multiple;
  EXPECT_FALSE(r.certifiable_now);
  EXPECT_FALSE(r.certifiable_later);
  EXPECT_FALSE(r.more_traces_help);
  EXPECT_LT(r.horizons.back().agreement.value, 0.6);
  std::string verdict;
  for (const auto& v : r.verdict) verdict += v + " ";
  EXPECT_NE(verdict.find("unlikely to help"), std::string::npos) << verdict;
}

// Checked against reality: scan a random quarter of a 30-label Banking77 subset (about 970
// traces), predict what 4x (the whole subset, about 3,900 traces) certifies, then fit the whole
// subset. Tolerance: the actual fit must land inside the scan's 80% interval widened by 5 points
// (the interval already holds the split luck of one fit; the 5 points absorb the grid and the
// design simulation), and the median within 15 points. Measured: see docs/usage.md.
TEST(Scan, PredictionFromAQuarterMatchesTheActualFit) {
  if (testing::sanitized()) GTEST_SKIP() << "two full fits: too slow under sanitizers";
  const auto all = testing::banking77_lines(30, 1000);
  std::vector<std::string> quarter;
  std::mt19937_64 rng(11);
  for (const auto& l : all)
    if (rng() % 4 == 0) quarter.push_back(l);
  ScanOptions o = quick();
  o.multiples = {double(all.size()) / quarter.size()};
  o.targets = {0.85, 0.90, 0.95};
  Progress quiet(false);
  const ScanResult r = scan_traces(traces_of(quarter), o, quiet);

  FitOptions fo;
  fo.zoo = {"linear_svm"};
  fo.ensemble_members = 0;
  fo.methods = {Method::kGlobal, Method::kL2D};
  fo.frontier_targets = o.targets;
  fo.target = 0.95;
  const FitResult actual = fit_policy(traces_of(all), fo, quiet);
  std::vector<double> got(o.targets.size(), 0.0);
  for (const auto& row : actual.frontier["rows"])
    for (size_t t = 0; t < o.targets.size(); ++t)
      if (row.value("certified", false) && std::abs(row.value("target", 0.0) - o.targets[t]) < 1e-9)
        got[t] = std::max(got[t], row.value("coverage", 0.0));
  for (size_t t = 0; t < o.targets.size(); ++t) {
    const ScanEstimate& e = r.horizons.back().coverage[t];
    EXPECT_GE(got[t], e.low - 0.05) << "target " << o.targets[t] << ": " << e.value;
    EXPECT_LE(got[t], e.high + 0.05) << "target " << o.targets[t] << ": " << e.value;
    EXPECT_NEAR(got[t], e.value, 0.15) << "target " << o.targets[t];
  }
}

TEST(Scan, RejectsBadOptions) {
  const TraceSet set = traces_of(testing::banking77_lines(3, 20));
  Progress quiet(false);
  ScanOptions o = quick();
  o.targets = {1.2};
  EXPECT_THROW(scan_traces(set, o, quiet), InputError);
  o = quick();
  o.zoo = {"no_such_model"};
  EXPECT_THROW(scan_traces(set, o, quiet), InputError);
  o = quick();
  o.multiples = {0.5};
  EXPECT_THROW(scan_traces(set, o, quiet), InputError);
}

}  // namespace
}  // namespace tracer
