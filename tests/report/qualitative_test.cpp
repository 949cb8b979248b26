// qualitative_report.json: every number on held-out rows, consistent with the manifest, with
// real examples; plus the pieces it is built from (PCA map, clipping, options round trip).
#include "report/qualitative.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <sstream>

#include "fit/split.hpp"
#include "report/projection.hpp"
#include "report/report_fixture.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::TempDir;

const json* find_label(const json& rows, const std::string& name) {
  for (const auto& r : rows)
    if (r["label"] == name) return &r;
  return nullptr;
}

TEST(ReportQualitative, NumbersMatchTheManifestOnHeldOutRows) {
  TempDir dir;
  auto s = testing::fit_jsonl(dir, testing::banking_subset(8, 80), testing::small_fit_options());
  ASSERT_TRUE(s.fit.deployed) << s.fit.manifest["gate"].dump();
  json q = build_qualitative_report(s.set, s.fit, testing::report_options(s.options));

  EXPECT_EQ(q["split"], "calibrate");
  EXPECT_FALSE(q.contains("learning_curve"));  // off unless asked for
  const json& cert = s.fit.manifest["gate"]["certified"];
  EXPECT_EQ(q["totals"]["rows"], cert["rows"]);
  EXPECT_EQ(q["totals"]["handled"], cert["accepted"]);
  EXPECT_DOUBLE_EQ(q["totals"]["coverage"].get<double>(), cert["coverage"].get<double>());
  EXPECT_DOUBLE_EQ(q["totals"]["agreement"].get<double>(), cert["agreement"].get<double>());
  EXPECT_DOUBLE_EQ(q["totals"]["lower_bound"].get<double>(), cert["lower_bound"].get<double>());
  EXPECT_EQ(q["totals"]["traces"], s.set.size());
  EXPECT_EQ(q["headline"]["deployed"], true);

  // Per label: the manifest's held-out numbers, plus counts that add up to the split.
  ASSERT_EQ(q["per_label"].size(), s.set.labels.size());
  size_t traces = 0, train = 0, cal = 0;
  for (const auto& m : s.fit.manifest["per_label"]) {
    const json* r = find_label(q["per_label"], m["label"]);
    ASSERT_NE(r, nullptr) << m["label"];
    EXPECT_EQ((*r)["calibrate_rows"], m["calibrate_rows"]);
    EXPECT_EQ((*r)["handled"], m["handled"]);
    EXPECT_EQ((*r)["coverage"], m["coverage"]);
    EXPECT_EQ((*r)["agreement"], m["agreement"]);
    EXPECT_EQ((*r)["lower_bound"], m["lower_bound"]);
    EXPECT_EQ((*r)["status"] == "fully_handled", m["status"] == "handled") << m["label"];
    traces += (*r)["traces"].get<size_t>();
    train += (*r)["train_traces"].get<size_t>();
    cal += (*r)["calibrate_rows"].get<size_t>();
  }
  EXPECT_TRUE(q["train_traces_exact"].get<bool>());
  EXPECT_EQ(traces, s.set.size());
  EXPECT_EQ(train, s.fit.manifest["split"]["train"].get<size_t>());
  EXPECT_EQ(cal, s.fit.calibrate_rows.size());

  // Frontier copied whole; map covers the calibrate rows.
  EXPECT_EQ(q["frontier"].size(), s.fit.frontier["rows"].size());
  ASSERT_TRUE(q["map"]["available"].get<bool>());
  EXPECT_EQ(q["map"]["points"].size(), s.fit.calibrate_rows.size());
  const double e0 = q["map"]["explained_variance"][0], e1 = q["map"]["explained_variance"][1];
  EXPECT_GT(e0, 0.0);
  EXPECT_GE(e0, e1);
  EXPECT_LT(e0 + e1, 1.0);
}

TEST(ReportQualitative, ExamplesAreRealCalibrateInputsOfTheirLabel) {
  TempDir dir;
  auto s = testing::fit_jsonl(dir, testing::banking_subset(8, 80), testing::small_fit_options());
  json q = build_qualitative_report(s.set, s.fit, testing::report_options(s.options));
  std::set<size_t> cal_lines;
  for (const auto& d : s.fit.calibrate_rows) cal_lines.insert(s.set.traces[d.trace].line);
  auto check = [&](const json& e, const std::string& where) {
    const size_t line = e["line"];
    ASSERT_TRUE(cal_lines.count(line)) << where << ": line " << line << " is not a calibrate row";
    const Trace& t = s.set.traces[line - 1];  // one trace per line in this file
    EXPECT_EQ(e["input"], clip_text(t.input, 240)) << where;
    EXPECT_EQ(e["teacher"], t.teacher) << where;
  };
  size_t seen = 0;
  for (const auto& l : q["per_label"]) {
    for (const auto& e : l["examples"]["handled"]) {
      check(e, "handled example");
      EXPECT_TRUE(e["handled"].get<bool>());
      EXPECT_EQ(e["teacher"], l["label"]);
      ++seen;
    }
    for (const auto& e : l["examples"]["deferred"]) {
      check(e, "deferred example");
      EXPECT_FALSE(e["handled"].get<bool>());
      EXPECT_TRUE(e.contains("reason"));
      ++seen;
    }
    EXPECT_LE(l["examples"]["handled"].size(), 3u);
  }
  EXPECT_GT(seen, 8u);
  for (const auto& p : q["boundary_pairs"]["pairs"]) {
    for (const auto& e : p["examples_a"]) {
      check(e, "pair example");
      EXPECT_EQ(e["teacher"], p["a"]);
      EXPECT_EQ(e["predicted"], p["b"]);
    }
    for (const auto& e : p["examples_b"]) {
      check(e, "pair example");
      EXPECT_EQ(e["teacher"], p["b"]);
      EXPECT_EQ(e["predicted"], p["a"]);
    }
  }
}

TEST(ReportQualitative, PairsReasonsAndSlicesAddUp) {
  TempDir dir;
  auto s = testing::fit_jsonl(dir, testing::banking_subset(8, 80), testing::small_fit_options());
  ReportOptions ro = testing::report_options(s.options);
  ro.top_pairs = 1000;  // all pairs, so the counts can be checked against the rows
  json q = build_qualitative_report(s.set, s.fit, ro);
  const auto& rows = s.fit.calibrate_rows;
  const auto& L = s.set.labels;

  size_t errors = 0, handled_errors = 0, deferred = 0;
  for (const auto& d : rows) {
    errors += d.predicted != d.teacher;
    handled_errors += d.predicted != d.teacher && d.handled;
    deferred += !d.handled;
  }
  const json& b = q["boundary_pairs"];
  EXPECT_EQ(b["errors"], errors);
  EXPECT_EQ(b["handled_errors"], handled_errors);
  size_t sum = 0;
  for (const auto& p : b["pairs"]) {
    size_t a_as_b = 0;
    for (const auto& d : rows) a_as_b += L[d.teacher] == p["a"] && L[d.predicted] == p["b"];
    EXPECT_EQ(p["a_as_b"], a_as_b) << p["a"] << " / " << p["b"];
    EXPECT_EQ(p["count"], p["a_as_b"].get<size_t>() + p["b_as_a"].get<size_t>());
    EXPECT_LT(p["a"].get<std::string>(), p["b"].get<std::string>());  // both directions merged
    sum += p["count"].get<size_t>();
  }
  EXPECT_EQ(sum, errors);
  for (size_t i = 1; i < b["pairs"].size(); ++i)
    EXPECT_GE(b["pairs"][i - 1]["count"], b["pairs"][i]["count"]);

  const json& d = q["defer_reasons"];
  EXPECT_EQ(d["deferred"], deferred);
  size_t by_reason = 0;
  for (const auto& r : d["reasons"]) by_reason += r["count"].get<size_t>();
  EXPECT_EQ(by_reason, deferred);
  size_t low_pairs = 0;
  for (const auto& p : d["low_confidence_pairs"]) low_pairs += p["count"].get<size_t>();
  EXPECT_EQ(low_pairs, d["reasons"][0]["count"].get<size_t>());  // "low_confidence" is first

  // "all" is the totals; the length buckets partition the rows.
  const json& slices = q["slices"];
  EXPECT_EQ(slices[0]["id"], "all");
  EXPECT_EQ(slices[0]["rows"], rows.size());
  EXPECT_EQ(slices[0]["coverage"], q["totals"]["coverage"]);
  size_t by_length = 0;
  for (const auto& sl : slices) {
    if (sl["group"] == "length") by_length += sl["rows"].get<size_t>();
    EXPECT_GT(sl["rows"].get<size_t>(), 0u);
    EXPECT_LE(sl["handled"], sl["rows"]);
  }
  EXPECT_EQ(by_length, rows.size());
  size_t with_question = 0;
  for (const auto& r : rows)
    with_question += s.set.traces[r.trace].input.find('?') != std::string::npos;
  for (const auto& sl : slices) {
    if (sl["id"] == "question") {
      EXPECT_EQ(sl["rows"], with_question);
    }
  }
}

TEST(ReportQualitative, RareLabelsAndRefusalsAreNamedAsSuch) {
  TempDir dir;
  auto s = testing::fit_jsonl(dir, testing::banking_subset(8, 80), testing::small_fit_options());
  ReportOptions ro = testing::report_options(s.options);
  ro.rare_label_train_traces = 100000;  // every label is "rare"
  json q = build_qualitative_report(s.set, s.fit, ro);
  size_t below = 0;
  for (const auto& d : s.fit.calibrate_rows) below += d.reason == DeferReason::kBelowThreshold;
  for (const auto& r : q["defer_reasons"]["reasons"]) {
    if (r["reason"] == "low_confidence") {
      EXPECT_EQ(r["count"], 0);
    } else if (r["reason"] == "rare_label") {
      EXPECT_EQ(r["count"], below);
    }
  }

  // Random labels: nothing certifies, every row is deferred because the method was refused.
  std::istringstream in(testing::banking_subset(5, 60));
  std::mt19937 rng(7);
  std::string noise;
  for (std::string l; std::getline(in, l);) {
    auto j = json::parse(l);
    j["teacher"] = "L" + std::to_string(rng() % 3);
    noise += j.dump() + "\n";
  }
  TempDir dir2;
  auto r = testing::fit_jsonl(dir2, noise, testing::small_fit_options(0.95));
  ASSERT_FALSE(r.fit.deployed);
  json rq = build_qualitative_report(r.set, r.fit, testing::report_options(r.options));
  EXPECT_EQ(rq["headline"]["deployed"], false);
  EXPECT_NE(rq["headline"]["explanation"].get<std::string>().find("95%"), std::string::npos);
  EXPECT_NE(rq["headline"]["verdict"].get<std::string>().find("Not deployed"), std::string::npos);
  EXPECT_EQ(rq["totals"]["handled"], 0);
  for (const auto& reason : rq["defer_reasons"]["reasons"])
    EXPECT_DOUBLE_EQ(reason["share"].get<double>(), reason["reason"] == "no_policy" ? 1.0 : 0.0);
  for (const auto& l : rq["per_label"]) EXPECT_EQ(l["status"], "deferred");
}

TEST(ReportQualitative, RejectsTracesThatAreNotTheFittedOnes) {
  TempDir dir;
  auto s = testing::fit_jsonl(dir, testing::banking_subset(6, 60), testing::small_fit_options());
  TraceSet other = s.set;
  other.traces.resize(other.size() / 2);
  other.y.resize(other.traces.size());
  EXPECT_THROW(build_qualitative_report(other, s.fit, testing::report_options(s.options)),
               InputError);
  TraceSet relabelled = s.set;
  relabelled.labels[0] = "something_else";
  EXPECT_THROW(build_qualitative_report(relabelled, s.fit, testing::report_options(s.options)),
               InputError);
}

TEST(ReportQualitative, LearningCurveEndsAtThePolicyAndGrows) {
  TempDir dir;
  auto s = testing::fit_jsonl(dir, testing::banking_subset(6, 80), testing::small_fit_options());
  ReportOptions ro = testing::report_options(s.options);
  ro.learning_curve = true;
  ro.curve_shares = {0.5, 0.75};
  std::vector<std::string> notes;
  ro.note = [&](const std::string& n) { notes.push_back(n); };
  json q = build_qualitative_report(s.set, s.fit, ro);
  ASSERT_TRUE(q.contains("learning_curve"));
  const json& c = q["learning_curve"];
  ASSERT_EQ(c["points"].size(), 3u);  // 1.0 is always added, from the policy itself
  EXPECT_EQ(notes.size(), 2u);
  const json& last = c["points"][2];
  EXPECT_EQ(last["traces"], s.set.size());
  EXPECT_EQ(last["coverage"], s.fit.manifest["gate"]["certified"]["coverage"]);
  size_t prev = 0;
  for (const auto& p : c["points"]) {
    EXPECT_GT(p["traces"].get<size_t>(), prev);
    prev = p["traces"];
    EXPECT_TRUE(p.contains("error") || p.contains("coverage"));
  }
  // Stratified: half the traces of every label (6 labels × 40).
  EXPECT_EQ(c["points"][0]["traces"], 240);
  EXPECT_EQ(c["labels"].size(), s.set.labels.size());
  for (const auto& l : c["labels"]) EXPECT_EQ(l["coverage"].size(), 3u);
  EXPECT_TRUE(c["assessment"].contains("status"));
  EXPECT_FALSE(c["assessment"]["message"].get<std::string>().empty());
  // Refits ran on the policy's own surrogates.
  ASSERT_TRUE(c["zoo"].is_array());
  for (const auto& n : c["zoo"])
    EXPECT_NE(std::find(s.options.zoo.begin(), s.options.zoo.end(), n.get<std::string>()),
              s.options.zoo.end());
}

// A folder fitted before manifest.json recorded "options": the report's learning curve
// rebuilds them from the manifest and frontier (round trips: tests/fit/fitter_test.cpp).
TEST(ReportQualitative, FitOptionsFallbackFromAnOlderManifest) {
  TempDir dir;
  auto s =
      testing::fit_jsonl(dir, testing::banking_subset(5, 60), testing::small_fit_options(0.85));
  FitOptions rebuilt = fit_options_from(json(), s.fit.manifest, s.fit.frontier);
  EXPECT_EQ(rebuilt.target, 0.85);
  EXPECT_EQ(rebuilt.seed, s.options.seed);
  EXPECT_EQ(rebuilt.methods.size(), 3u);
  // The split was chosen automatically (recorded as such): the rebuilt options choose again.
  EXPECT_FALSE(rebuilt.fractions.has_value());
  EXPECT_THROW(fit_options_from(json(), json::object(), json::object()), FormatError);
}

TEST(ReportText, ClipKeepsUtf8WholeAndFlattensLines) {
  EXPECT_EQ(clip_text("short", 10), "short");
  EXPECT_EQ(clip_text("a\nb\tc", 10), "a b c");
  // "é" is two bytes: a cut inside it backs up to before it.
  EXPECT_EQ(clip_text("h\xc3\xa9llo", 2), "h\u2026");
  EXPECT_EQ(clip_text("h\xc3\xa9llo", 3), "h\xc3\xa9\u2026");
  EXPECT_EQ(clip_text("\xe2\x82\xac\xe2\x82\xac", 4), "\xe2\x82\xac\u2026");
}

TEST(ReportProjection, FindsTheDominantDirections) {
  // Gaussian rows with standard deviations 3, 2, 1 along dimensions 5, 2, 7 of 10.
  std::mt19937_64 rng(3);
  std::normal_distribution<double> g;
  SparseMatrix X(10);
  const int n = 2000;
  std::vector<std::array<double, 3>> raw(n);
  for (int i = 0; i < n; ++i) {
    raw[i] = {3 * g(rng) + 1, 2 * g(rng), g(rng)};
    std::vector<uint32_t> idx = {2, 5, 7};
    std::vector<float> val = {float(raw[i][1]), float(raw[i][0]), float(raw[i][2])};
    X.add_row({idx, val});
  }
  Projection2D p = pca_2d(X);
  ASSERT_EQ(p.points.size(), size_t(n));
  EXPECT_NEAR(p.explained[0], 9.0 / 14, 0.03);
  EXPECT_NEAR(p.explained[1], 4.0 / 14, 0.03);
  // Axis 1 is dimension 5 (centred), up to sign; axis 2 is dimension 2.
  double c0 = 0, c1 = 0;
  for (int i = 0; i < n; ++i) {
    c0 += p.points[i][0] * (raw[i][0] - 1);
    c1 += p.points[i][1] * raw[i][1];
  }
  EXPECT_GT(std::abs(c0) / n, 8.0);
  EXPECT_GT(std::abs(c1) / n, 3.5);
  // Deterministic.
  EXPECT_EQ(pca_2d(X).points, p.points);
  // Degenerate inputs give the origin, not NaN.
  SparseMatrix one(4);
  one.add_row({});
  EXPECT_EQ(pca_2d(one).points.size(), 1u);
  EXPECT_EQ(pca_2d(SparseMatrix(3)).points.size(), 0u);
}

}  // namespace
}  // namespace tracer
