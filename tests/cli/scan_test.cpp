// End-to-end: `tracer scan` on real files, as a user would run it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

std::string subset(const TempDir& dir, int labels, int per_label) {
  std::string out;
  for (const auto& line : testing::banking77_lines(labels, per_label)) out += line + "\n";
  const std::string path = dir.file("traces.jsonl");
  write_file(path, out);
  return path;
}

TEST(CliScan, JsonHasEstimatesForEveryTargetAndMultiple) {
  TempDir dir;
  const std::string traces = subset(dir, 10, 40);
  auto r = run_cli("scan " + traces + " --json --seeds 1 --targets 0.8,0.9 --multiples 2,4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["traces"], 400);
  ASSERT_EQ(j["targets"].size(), 2u);
  EXPECT_EQ(j["targets"][0]["target"], 0.8);
  ASSERT_EQ(j["targets"][0]["at"].size(), 2u);
  EXPECT_EQ(j["targets"][0]["at"][1]["multiple"], 4.0);
  EXPECT_EQ(j["targets"][0]["at"][1]["traces"], 1600);
  for (const auto& t : j["targets"]) {
    for (const auto& e : t["at"]) {
      EXPECT_GE(e["low"].get<double>(), 0.0);
      EXPECT_LE(e["value"].get<double>(), e["high"].get<double>());
      EXPECT_LE(e["high"].get<double>(), 1.0);
    }
  }
  EXPECT_EQ(j["label_rows"].size(), 10u);
  EXPECT_TRUE(j["verdict"].is_array());
  // stderr is not a terminal here: progress comes as whole lines, one per step, stdout stays
  // pure JSON.
  EXPECT_NE(r.err.find("[1/3] reading " + traces + "\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[3/3]"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(" ..."), std::string::npos) << r.err;
}

TEST(CliScan, TextTableAndQuiet) {
  TempDir dir;
  const std::string traces = subset(dir, 6, 50);
  auto r = run_cli("scan " + traces + " --seeds 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Certified coverage"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("0.95"), std::string::npos);
  EXPECT_NE(r.out.find("10x"), std::string::npos);
  EXPECT_EQ(r.out.find("nan"), std::string::npos);
  auto q = run_cli("scan " + traces + " --seeds 1 --quiet");
  EXPECT_EQ(q.exit_code, 0);
  EXPECT_TRUE(q.out.empty());
  EXPECT_TRUE(q.err.empty()) << q.err;  // --quiet: no progress either
}

TEST(CliScan, HelpExplainsTheNumbers) {
  auto r = run_cli("scan --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* word :
       {"--targets", "--multiples", "--zoo", "coverage", "interval", "agreement"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word;
}

TEST(CliScan, BadInputExitCodes) {
  TempDir dir;
  const std::string bad = dir.file("bad.jsonl");
  write_file(bad, "{\"input\": \"a\", \"teacher\": \"x\"}\n{\"input\": \"b\"}\n");
  auto r = run_cli("scan " + bad);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(":2"), std::string::npos) << r.err;

  const std::string one = dir.file("one.jsonl");
  std::string lines;
  for (int i = 0; i < 50; ++i)
    lines += "{\"input\": \"text " + std::to_string(i) + "\", \"teacher\": \"only\"}\n";
  write_file(one, lines);
  r = run_cli("scan " + one);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("two labels"), std::string::npos) << r.err;

  r = run_cli("scan " + one + " --targets 1.5");  // a usage error, caught by the parser
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--targets"), std::string::npos) << r.err;
  r = run_cli("scan " + dir.file("missing.jsonl"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace tracer
