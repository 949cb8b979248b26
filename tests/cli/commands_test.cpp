// Usage conventions over every command: usage errors exit 2 with the flag's name, every
// floating-point option refuses NaN and infinities up front, --help and --version exit 0.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "test_util.hpp"

namespace tracer {
namespace {

using testing::run_cli;
using testing::TempDir;
using testing::write_file;

// The long names of the options whose value type is FLOAT in `tracer COMMAND --help`, and how
// many values each takes (`FLOAT x 3`).
std::vector<std::pair<std::string, int>> float_options(const std::string& command) {
  auto help = run_cli(command + " --help");
  EXPECT_EQ(help.exit_code, 0) << command << ": " << help.err;
  std::vector<std::pair<std::string, int>> out;
  const std::regex line(R"((--[a-z0-9-]+) FLOAT(?: x (\d+))?)");
  for (std::sregex_iterator it(help.out.begin(), help.out.end(), line), end; it != end; ++it)
    out.emplace_back((*it)[1].str(), (*it)[2].matched ? std::stoi((*it)[2].str()) : 1);
  return out;
}

TEST(CliConventions, EveryFloatOptionRefusesNanAndInfinityWithExitTwo) {
  TempDir tmp;
  const std::string file = tmp.file("traces.jsonl"), dir = tmp.path().string();
  write_file(file, "{\"input\": \"a\", \"label\": \"x\"}\n");
  // Each command with arguments that pass their own checks, so the option is what fails.
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"fit", "fit " + file},
      {"demo", "demo"},
      {"serve", "serve " + dir},
      {"drift", "drift " + dir + " -i " + file},
      {"scan", "scan " + file},
      {"predict", "predict " + dir + " hello"},
      {"report", "report " + dir},
      {"update", "update " + dir},
      {"traces import", "traces import " + file + " --db " + tmp.file("t.db")}};
  size_t checked = 0;
  std::set<std::string> commands_with_floats;
  for (const auto& [command, args] : commands) {
    for (const auto& [flag, arity] : float_options(command)) {
      for (const char* bad : {"nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400"}) {
        std::string values;
        for (int i = 0; i < arity; ++i) values += i == 0 ? bad : std::string(" 0.5");
        auto r = run_cli(args + " " + flag + " " + values);
        EXPECT_EQ(r.exit_code, 2) << args << " " << flag << " " << values << ": " << r.err;
        EXPECT_NE(r.err.find(flag), std::string::npos) << flag << ": " << r.err;
        ++checked;
      }
      commands_with_floats.insert(command);
    }
  }
  // fit, demo, serve, drift and scan have floating-point options today.
  EXPECT_GE(commands_with_floats.size(), 5u);
  EXPECT_GE(checked, 5u * 21u);
}

TEST(CliConventions, UsageErrorsExitTwoHelpAndVersionExitZero) {
  TempDir tmp;
  const std::string file = tmp.file("traces.jsonl");
  write_file(file, "{\"input\": \"a\", \"label\": \"x\"}\n");
  for (const std::string& bad :
       {std::string("fit ") + file + " --bogus", std::string("fit ") + file + " --target 1.5",
        std::string("fit ") + file + " --target lots", std::string("fit"), std::string("nope"),
        std::string(""), std::string("fit ") + tmp.file("missing.jsonl"),
        // Unsigned sizes must not wrap "-1" into "no limit"; money and volume are not negative.
        "serve " + tmp.path().string() + " --max-body-bytes -1",
        "serve " + tmp.path().string() + " --max-batch -1",
        "serve " + tmp.path().string() + " --max-text-bytes 0",
        "serve " + tmp.path().string() + " --drift-window -1",
        "serve " + tmp.path().string() + " --upstream-timeout -5",
        std::string("demo --price-per-call -5"), std::string("demo --daily-volume -5")}) {
    auto r = run_cli(bad);
    EXPECT_EQ(r.exit_code, 2) << "`tracer " << bad << "`: " << r.err;
    EXPECT_FALSE(r.err.empty()) << bad;
    // A bad flag value is reported as such, naming the flag (not as a later, other error).
    if (const size_t at = bad.find(" --"); at != std::string::npos) {
      const std::string flag = bad.substr(at + 1, bad.find(' ', at + 1) - at - 1);
      EXPECT_NE(r.err.find(flag), std::string::npos) << "`tracer " << bad << "`: " << r.err;
    }
  }
  EXPECT_EQ(run_cli("--help").exit_code, 0);
  EXPECT_EQ(run_cli("fit --help").exit_code, 0);
  auto v = run_cli("--version");
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("tracer"), std::string::npos);
}

// A misspelt command is named as unknown, with the closest command, not "a subcommand is
// required".
TEST(CliConventions, UnknownCommandSuggestsTheClosest) {
  struct Case {
    std::string typed, suggested;
  };
  for (const Case& c : std::vector<Case>{{"fitt", "fit"},
                                         {"simulat", "simulate"},
                                         {"serv", "serve"},
                                         {"rolback", "rollback"},
                                         {"predcit", "predict"},
                                         {"xyzzy", ""}}) {
    auto r = run_cli(c.typed + " x");
    EXPECT_EQ(r.exit_code, 2) << c.typed;
    EXPECT_NE(r.err.find("unknown command '" + c.typed + "'"), std::string::npos) << r.err;
    if (c.suggested.empty())
      EXPECT_EQ(r.err.find("did you mean"), std::string::npos) << r.err;
    else
      EXPECT_NE(r.err.find("did you mean '" + c.suggested + "'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("Commands: "), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace tracer
