// End-to-end: `tracer simulate` through the real binary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::read_file;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

TEST(CliSimulate, PrintsADayTableAndWritesJson) {
  TempDir dir;
  std::string lines;
  const auto rows = testing::banking77_lines(6, 150);
  for (const auto& l : rows) lines += l + "\n";
  const size_t requests = rows.size() - 300;
  const std::string traces = dir.file("t.jsonl"), out = dir.file("sim.json");
  write_file(traces, lines);
  auto r = run_cli("simulate " + traces +
                   " --days 3 --seed-traces 300 --target 0.9 --zoo complement_nb --threads 2 "
                   "--json " +
                   out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Simulating 3 days of " + traces), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("coverage"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("total: " + std::to_string(requests) + " requests"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("wrote " + out), std::string::npos) << r.out;
  const json j = json::parse(read_file(out));
  ASSERT_EQ(j["days"].size(), 4u);
  EXPECT_EQ(j["traces"], traces);
  EXPECT_EQ(j["options"]["target"], 0.9);
  size_t traffic = 0;
  for (const auto& d : j["days"]) traffic += d["traffic"].get<size_t>();
  EXPECT_EQ(traffic, requests);
}

TEST(CliSimulate, ImpossibleOptionsExitTwoAndSayWhy) {
  TempDir dir;
  std::string lines;
  for (const auto& l : testing::banking77_lines(3, 20)) lines += l + "\n";
  const std::string traces = dir.file("t.jsonl");
  write_file(traces, lines);
  auto few = run_cli("simulate " + traces + " --seed-traces 500");
  EXPECT_EQ(few.exit_code, 2);
  EXPECT_NE(few.err.find("cannot give 500 seed traces"), std::string::npos) << few.err;
  auto flip =
      run_cli("simulate " + traces + " --seed-traces 20 --days 2 --flip-labels 2 --flip-day 5");
  EXPECT_EQ(flip.exit_code, 2);
  EXPECT_NE(flip.err.find("--flip-day must be between 1 and --days (2)"), std::string::npos)
      << flip.err;
  auto day_alone = run_cli("simulate " + traces + " --seed-traces 20 --days 2 --flip-day 1");
  EXPECT_EQ(day_alone.exit_code, 2);
  EXPECT_NE(day_alone.err.find("--flip-day needs --flip-labels"), std::string::npos)
      << day_alone.err;
  auto target = run_cli("simulate " + traces + " --target 1.5");
  EXPECT_EQ(target.exit_code, 2) << target.err;
}

}  // namespace
}  // namespace tracer
