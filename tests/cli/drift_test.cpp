// End-to-end: `tracer drift` on real files, as a user would run it.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <ranges>

#include "test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::read_file;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

std::string lines_file(const TempDir& dir, const std::string& name,
                       const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  write_file(dir.file(name), out);
  return dir.file(name);
}

class CliDrift : public ::testing::Test {
 protected:
  void SetUp() override {
    // Fit on the first 60 traces of 8 labels; later traces of those labels are "like the
    // traces", traces of 20 other labels are traffic the policy was never certified on.
    auto all = testing::banking77_lines(28, 120);
    std::vector<std::string> train, like, other;
    std::map<std::string, int> seen;
    for (const auto& l : all) {
      const std::string label = json::parse(l)["teacher"];
      const int i = seen[label]++;
      if (label_index(label) < 8) {
        (i < 60 ? train : like).push_back(l);
      } else {
        other.push_back(l);
      }
    }
    traces_ = lines_file(dir_, "traces.jsonl", train);
    like_ = lines_file(dir_, "like.jsonl", like);
    like_rows_ = like.size();
    other_ = lines_file(dir_, "other.jsonl", other);
    policy_ = dir_.file("policy");
    auto fit = run_cli("fit " + traces_ + " -o " + policy_ +
                       " --target 0.8 --quiet --no-report --zoo logreg_strong");
    ASSERT_TRUE(fit.exit_code == 0 || fit.exit_code == 4) << fit.err;
  }
  int label_index(const std::string& label) {
    auto [it, fresh] = order_.try_emplace(label, static_cast<int>(order_.size()));
    return it->second;
  }
  TempDir dir_;
  std::map<std::string, int> order_;
  std::string traces_, like_, other_, policy_;
  size_t like_rows_ = 0;
};

TEST_F(CliDrift, TrafficLikeTheTracesIsNotDrift) {
  auto r = run_cli("drift " + policy_ + " -i " + like_ + " --min-rows 50 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_TRUE(j["available"].get<bool>());
  EXPECT_FALSE(j["drift"].get<bool>()) << j.dump(2);
  EXPECT_GT(like_rows_, 300u);
  EXPECT_EQ(j["rows"], like_rows_);
  // The file carries the LLM's labels: agreement on handled texts with bounds.
  ASSERT_TRUE(j.contains("labels"));
  EXPECT_EQ(j["labels"]["labelled_rows"], like_rows_);
  EXPECT_LE(j["labels"]["lower_bound"].get<double>(), j["labels"]["agreement"].get<double>());
}

TEST_F(CliDrift, OtherTopicsAreDriftAndFailOnDriftExitsFive) {
  auto r = run_cli("drift " + policy_ + " -i " + other_ + " --min-rows 50");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("drift: live inputs score lower"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("BELOW the target"), std::string::npos) << r.out;
  auto strict = run_cli("drift " + policy_ + " -i " + other_ + " --min-rows 50 --fail-on-drift");
  EXPECT_EQ(strict.exit_code, 5) << strict.err;
  auto calm = run_cli("drift " + policy_ + " -i " + like_ + " --min-rows 50 --fail-on-drift");
  EXPECT_EQ(calm.exit_code, 0) << calm.out;
}

// A trace-store export holds the deferred requests at full rate: only its rows of the traffic
// sample ("sampled": true) are compared, like with like (docs/trace_store.md).
TEST_F(CliDrift, StoreRowsOutsideTheTrafficSampleAreLeftOut) {
  std::vector<std::string> rows;
  size_t sampled = 0, i = 0;
  for (const auto& l : read_file(like_) | std::views::split('\n')) {
    std::string line(l.begin(), l.end());
    if (line.empty()) continue;
    json j = json::parse(line);
    // Other topics, recorded because the policy deferred them: not a sample of traffic.
    j["metadata"] = {{"decision", "deferred"}, {"source", "proxy"}};
    if (i++ % 2 == 0) {
      j["metadata"]["sampled"] = true;  // the requests that drew the audit coin
      ++sampled;
    }
    rows.push_back(j.dump());
  }
  for (const auto& l : read_file(other_) | std::views::split('\n')) {
    std::string line(l.begin(), l.end());
    if (line.empty()) continue;
    json j = json::parse(line);
    j["metadata"] = {{"decision", "deferred"}, {"source", "proxy"}};
    rows.push_back(j.dump());
  }
  const std::string store = lines_file(dir_, "store_export.jsonl", rows);
  auto r = run_cli("drift " + policy_ + " -i " + store + " --min-rows 50 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["rows"], sampled);
  EXPECT_EQ(j["not_traffic_rows"], rows.size() - sampled);
  EXPECT_FALSE(j["drift"].get<bool>()) << j.dump(2);
  auto text = run_cli("drift " + policy_ + " -i " + store + " --min-rows 50");
  EXPECT_NE(text.out.find("left out " + std::to_string(rows.size() - sampled) +
                          " trace-store rows outside the traffic sample"),
            std::string::npos)
      << text.out;

  // Nothing sampled at all: a clear error rather than a false alarm.
  std::vector<std::string> deferred_only(rows.begin() + 1, rows.begin() + 2);
  deferred_only.push_back(rows.back());
  auto none =
      run_cli("drift " + policy_ + " -i " + lines_file(dir_, "deferred.jsonl", deferred_only));
  EXPECT_EQ(none.exit_code, 2) << none.err;
  EXPECT_NE(none.err.find("not a sample of traffic"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("--audit-share"), std::string::npos) << none.err;
}

TEST_F(CliDrift, UnlabelledAndTooFewTexts) {
  std::string plain = lines_file(dir_, "plain.jsonl", {"\"where is my card\"", "\"hello\""});
  auto r = run_cli("drift " + policy_ + " -i " + plain + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_FALSE(j["available"].get<bool>());
  EXPECT_FALSE(j.contains("labels"));
  EXPECT_NE(j["message"].get<std::string>().find("2 of 200"), std::string::npos);
}

TEST_F(CliDrift, ClearErrors) {
  std::string bad = lines_file(dir_, "bad.jsonl", {"{\"input\": 3}"});
  auto r = run_cli("drift " + policy_ + " -i " + bad);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bad.jsonl:1"), std::string::npos) << r.err;
  std::string empty = lines_file(dir_, "empty.jsonl", {});
  EXPECT_EQ(run_cli("drift " + policy_ + " -i " + empty).exit_code, 2);
  // A manifest from before drift references existed: refit, says the error.
  json m = json::parse(read_file(policy_ + "/manifest.json"));
  m.erase("drift");
  write_file(policy_ + "/manifest.json", m.dump());
  auto old = run_cli("drift " + policy_ + " -i " + like_);
  EXPECT_EQ(old.exit_code, 2);
  EXPECT_NE(old.err.find("refit"), std::string::npos) << old.err;
  EXPECT_NE(run_cli("drift " + policy_).exit_code, 0);  // --input is required
}

}  // namespace
}  // namespace tracer
