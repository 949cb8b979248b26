// `tracer report`: re-renders from the policy folder without traces, prints a terminal summary,
// and adds the learning curve from the traces when asked.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "report/report_fixture.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::run_cli;
using testing::TempDir;

// A written policy folder (artifact + report files) from a small Banking77 subset.
std::string write_policy(const TempDir& dir, int labels, int per_label) {
  auto s = testing::fit_jsonl(dir, testing::banking_subset(labels, per_label),
                              testing::small_fit_options());
  const std::string out = dir.file("policy");
  write_artifact(out, s.fit);
  write_report_files(out, s.set, s.fit, testing::report_options(s.options));
  return out;
}

TEST(ReportCli, RendersHtmlAndTextFromTheFolderAlone) {
  TempDir dir;
  const std::string policy = write_policy(dir, 6, 70);
  std::filesystem::remove(dir.file("traces.jsonl"));  // rendering needs no traces
  std::filesystem::remove(policy + "/report.html");

  auto r = run_cli("report " + policy + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string html = testing::read_file(policy + "/report.html");
  EXPECT_NE(html.find("data-metric='coverage'"), std::string::npos);

  r = run_cli("report " + policy + " -o " + dir.file("elsewhere.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::read_file(dir.file("elsewhere.html")), html);
  EXPECT_NE(r.err.find("wrote " + dir.file("elsewhere.html")), std::string::npos) << r.err;

  std::filesystem::remove(policy + "/report.html");
  r = run_cli("report " + policy + " --text");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(policy + "/report.html"));  // --text alone writes no HTML
  const json m = json::parse(testing::read_file(policy + "/manifest.json"));
  for (const char* part : {"Routing policy", "Frontier", "Most confused label pairs",
                           "Why it defers", "Slices", "learning curve not computed"})
    EXPECT_NE(r.out.find(part), std::string::npos) << part << "\n" << r.out;
  const std::string cov =
      fmt::format("{:.1f}%", m["gate"]["certified"]["coverage"].get<double>() * 100);
  EXPECT_NE(r.out.find(cov), std::string::npos) << cov << "\n" << r.out;
}

TEST(ReportCli, ErrorsSayWhatToDo) {
  TempDir dir;
  auto r = run_cli("report " + dir.file("missing"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("tracer fit"), std::string::npos) << r.err;

  const std::string policy = write_policy(dir, 4, 50);
  std::filesystem::remove(dir.file("traces.jsonl"));
  r = run_cli("report " + policy + " --learning-curve");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--traces"), std::string::npos) << r.err;
}

TEST(ReportCli, LearningCurveIsAddedFromTheTraces) {
  if (testing::sanitized()) GTEST_SKIP() << "nine refits: too slow under sanitizers";
  TempDir dir;
  const std::string policy = write_policy(dir, 5, 60);
  auto r = run_cli("report " + policy + " --learning-curve --quiet");  // traces path: manifest
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json q = json::parse(testing::read_file(policy + "/qualitative_report.json"));
  ASSERT_TRUE(q.contains("learning_curve"));
  EXPECT_EQ(q["learning_curve"]["points"].size(), 10u);
  EXPECT_EQ(q["learning_curve"]["points"].back()["traces"], 300);
  EXPECT_TRUE(q.contains("per_label"));  // the rest of the report is kept
  const std::string html = testing::read_file(policy + "/report.html");
  EXPECT_NE(html.find("data-chart='learning-curve'"), std::string::npos);
  // Rendering again keeps the saved curve.
  r = run_cli("report " + policy + " --text");
  EXPECT_NE(r.out.find("Learning curve"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tracer
