// End-to-end: `tracer update` refits a policy folder on its traces plus the trace store, with the
// last fit's options, and can tell a running server to reload.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/trace_store.hpp"
#include "serve/serve_test_util.hpp"
#include "test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::read_file;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

class CliUpdate : public ::testing::Test {
 protected:
  void SetUp() override {
    // Banking77 traces of 8 labels, alternately into the first fit's file and the trace store.
    std::string a, b, handled;
    int i = 0;
    for (const auto& l : testing::banking77_lines(8, 80)) {
      const bool to_store = i++ % 2 == 1;
      (to_store ? b : a) += l + "\n";
      b_rows_ += to_store;
    }
    // Answers of the surrogate itself (recorded with --record-handled): never training data.
    json h = json::parse(testing::banking77_lines(8, 80).front());
    h["metadata"] = {{"decision", "handled"}, {"source", "proxy"}};
    for (int k = 0; k < 7; ++k) handled += h.dump() + "\n";
    write_file(a_ = dir_.file("a.jsonl"), a);
    write_file(dir_.file("b.jsonl"), b + handled);
    policy_ = dir_.file("policy");
    auto fit = run_cli("fit " + a_ + " -o " + policy_ + " -q --no-report --target 0.9 --seed 7" +
                       testing::fast_zoo());
    ASSERT_TRUE(fit.exit_code == 0 || fit.exit_code == 4) << fit.err;
    auto imp = run_cli("traces import " + dir_.file("b.jsonl") + " --db " + policy_ + "/traces.db");
    ASSERT_EQ(imp.exit_code, 0) << imp.err;
    first_ = json::parse(read_file(policy_ + "/manifest.json"));
  }
  json manifest() const { return json::parse(read_file(policy_ + "/manifest.json")); }

  TempDir dir_;
  std::string a_, policy_;
  size_t b_rows_ = 0;
  json first_;
};

TEST_F(CliUpdate, RefitsOnTracesPlusStoreWithTheLastOptions) {
  auto r = run_cli("update " + policy_ + " -q --no-report --promote always");
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 4) << r.err;
  json m = manifest();
  // The first file's traces plus the store's LLM-labelled ones; the 7 handled rows are left out.
  EXPECT_EQ(m["traces"]["accepted"].get<size_t>(),
            first_["traces"]["accepted"].get<size_t>() + b_rows_);
  EXPECT_EQ(m["traces"]["store"]["rows"].get<size_t>(), b_rows_);
  EXPECT_EQ(m["traces"]["paths"], first_["traces"]["paths"]);  // no temporary file recorded
  EXPECT_NE(m["policy_version"], first_["policy_version"]);
  EXPECT_EQ(m["options"]["target"], 0.9);
  EXPECT_EQ(m["options"]["seed"], 7);
  EXPECT_EQ(m["options"], first_["options"]);
  EXPECT_EQ(json::parse(read_file(policy_ + "/history.json")).size(), 2u);
  // Per-label changes against the version active before (temporal deltas).
  ASSERT_TRUE(m.contains("changes"));
  EXPECT_EQ(m["changes"]["against_version"], 1);
  EXPECT_TRUE(m["changes"]["per_label"].is_array());
  const json last = json::parse(read_file(policy_ + "/history.json")).back();
  EXPECT_EQ(last["changes"]["against_version"], 1);
  EXPECT_TRUE(last["changes"]["labels_gained"].is_array());
  EXPECT_FALSE(first_.contains("changes"));  // the first version has nothing to compare with
  for (const auto& e : std::filesystem::directory_iterator(policy_))
    EXPECT_EQ(e.path().filename().string().rfind(".update-traces", 0), std::string::npos)
        << "temporary export left behind: " << e.path();
  // A second update reads the same sources again (the store is cumulative, not consumed).
  auto again = run_cli("update " + policy_ + " -q --no-report --promote always");
  ASSERT_TRUE(again.exit_code == 0 || again.exit_code == 4) << again.err;
  EXPECT_EQ(manifest()["traces"]["accepted"], m["traces"]["accepted"]);
  EXPECT_EQ(json::parse(read_file(policy_ + "/history.json")).size(), 3u);
}

TEST_F(CliUpdate, TracesInBothTheFilesAndTheStoreAreUsedOnce) {
  // Every trace of this data is its own (input, label) pair, so the counts below are exact.
  std::set<std::pair<std::string, std::string>> pairs;
  size_t a_rows = 0;
  for (const auto& l : testing::banking77_lines(8, 80)) {
    const json j = json::parse(l);
    pairs.emplace(j["input"], j["teacher"]);
  }
  ASSERT_EQ(pairs.size(), testing::banking77_lines(8, 80).size());
  const json repeated = json::parse(testing::banking77_lines(8, 80).front());  // a line of a.jsonl
  {
    std::istringstream in(read_file(a_));
    for (std::string line; std::getline(in, line);) a_rows += !line.empty();
  }
  // The store now also holds the first fit's file (imported), and the proxy recorded one of its
  // questions twice more since (the LLM answering as the file says): new traffic.
  auto imp = run_cli("traces import " + a_ + " --db " + policy_ + "/traces.db");
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  {
    TraceStore store(policy_ + "/traces.db");
    for (int k = 0; k < 2; ++k) {
      StoredTrace row;
      row.input = repeated["input"];
      row.teacher = repeated["teacher"];
      row.source = "proxy";
      row.decision = "deferred";
      store.append(row);
    }
  }
  auto r = run_cli("update " + policy_ + " --no-report --threads 2 --promote always");
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 4) << r.err;
  // The file's lines are in the store too: each is used once. The question's store copies are
  // its imported line (dropped) and the two recorded since (kept).
  EXPECT_NE(r.err.find("+ " + std::to_string(b_rows_ + 2) + " trace(s) from"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("(" + std::to_string(a_rows) + " dropped as already in the trace files)"),
            std::string::npos)
      << r.err;
  const json m = manifest();
  EXPECT_EQ(m["traces"]["accepted"].get<size_t>(), a_rows + b_rows_ + 2);
  EXPECT_EQ(m["traces"]["accepted"], first_["traces"]["accepted"].get<size_t>() + b_rows_ + 2);
  EXPECT_EQ(m["traces"]["store"]["rows"].get<size_t>(), b_rows_ + 2);
  EXPECT_EQ(m["units"]["traces"], m["traces"]["accepted"]);
}

// --window: only traces recorded in the window (by metadata.time_ms); the first fit's file has no
// times, so it is left out. --max-traces caps what is left.
TEST_F(CliUpdate, WindowAndCapSelectRecentTraces) {
  auto r = run_cli("update " + policy_ + " --no-report --promote always --window 1h");
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 4) << r.err;
  EXPECT_NE(r.err.find("traces recorded in the last 1h only"), std::string::npos) << r.err;
  const size_t a_rows = first_["traces"]["accepted"].get<size_t>();
  EXPECT_NE(
      r.err.find("kept " + std::to_string(b_rows_) + " of " + std::to_string(a_rows + b_rows_) +
                 " traces: " + std::to_string(a_rows) + " without a time"),
      std::string::npos)
      << r.err;
  json m = manifest();
  EXPECT_EQ(m["traces"]["selection"]["kept"].get<size_t>(), b_rows_);
  EXPECT_EQ(m["traces"]["selection"]["undated"].get<size_t>(), a_rows);
  EXPECT_TRUE(m["traces"]["selection"].contains("since_ms"));
  EXPECT_EQ(m["units"]["traces"].get<size_t>(), b_rows_);

  auto capped = run_cli("update " + policy_ + " -q --no-report --promote always --max-traces 300");
  ASSERT_TRUE(capped.exit_code == 0 || capped.exit_code == 4) << capped.err;
  m = manifest();
  EXPECT_EQ(m["traces"]["selection"]["kept"], 300);
  EXPECT_EQ(m["traces"]["selection"]["capped"].get<size_t>(), a_rows + b_rows_ - 300);
  EXPECT_EQ(m["units"]["traces"], 300);

  auto future = run_cli("update " + policy_ + " -q --no-report --window 0d");
  EXPECT_EQ(future.exit_code, 2) << future.err;
  EXPECT_NE(future.err.find("--window must be a positive duration"), std::string::npos)
      << future.err;
}

TEST_F(CliUpdate, NoDbAndExplicitTraces) {
  auto r = run_cli("update " + policy_ + " -q --no-report --no-db --promote always");
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 4) << r.err;
  EXPECT_EQ(manifest()["traces"]["accepted"], first_["traces"]["accepted"]);
  EXPECT_FALSE(manifest()["traces"].contains("store"));
  auto both = run_cli("update " + policy_ + " -q --no-report --no-db --promote always --traces " +
                      a_ + " " + dir_.file("b.jsonl"));
  ASSERT_TRUE(both.exit_code == 0 || both.exit_code == 4) << both.err;
  // Given files are read whole (the handled rows too: they are the user's choice here).
  EXPECT_EQ(manifest()["traces"]["accepted"].get<size_t>(),
            first_["traces"]["accepted"].get<size_t>() + b_rows_ + 7);
}

TEST_F(CliUpdate, ClearErrors) {
  auto none = run_cli("update " + dir_.path().string());
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("tracer fit"), std::string::npos) << none.err;
  auto db = run_cli("update " + policy_ + " --db " + dir_.file("nope.db"));
  EXPECT_EQ(db.exit_code, 2);
  EXPECT_NE(db.err.find("nope.db"), std::string::npos) << db.err;
  std::filesystem::remove(a_);
  auto gone = run_cli("update " + policy_ + " -q");
  EXPECT_EQ(gone.exit_code, 2);
  EXPECT_NE(gone.err.find("--traces"), std::string::npos) << gone.err;
  EXPECT_EQ(manifest()["policy_version"], first_["policy_version"]);  // nothing was written
}

TEST_F(CliUpdate, ReloadsARunningServer) {
  serve::ServeOptions o;
  o.policy_dir = policy_;
  o.port = 0;
  o.threads = 2;
  testing::RunningServer server(o);
  auto c = server.client();
  EXPECT_EQ(testing::body(c->Get("/v1/policy"))["policy_version"], first_["policy_version"]);
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port());
  auto r = run_cli("update " + policy_ + " -q --no-report --promote always --reload " + url);
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 4) << r.err;
  EXPECT_EQ(testing::body(c->Get("/v1/policy"))["policy_version"], manifest()["policy_version"]);
  EXPECT_NE(manifest()["policy_version"], first_["policy_version"]);
  // A server that is not there: the policy is still updated, and the error says how to reload.
  auto dead =
      run_cli("update " + policy_ + " -q --no-report --promote always --reload http://127.0.0.1:9");
  EXPECT_EQ(dead.exit_code, 2);
  EXPECT_NE(dead.err.find("SIGHUP"), std::string::npos) << dead.err;
}

}  // namespace
}  // namespace tracer
