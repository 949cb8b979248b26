// End-to-end: fit and update write versions, a refit that refuses is kept out of service,
// `tracer versions` lists them and `tracer rollback` re-activates one (and tells a server).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "serve/serve_test_util.hpp"
#include "test_util.hpp"

namespace tracer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::read_file;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

class CliVersions : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string good, noise;
    std::mt19937 rng(3);
    for (const auto& l : testing::banking77_lines(5, 60)) {
      good += l + "\n";
      json j = json::parse(l);
      j["teacher"] = "L" + std::to_string(rng() % 3);  // the LLM answering at random
      noise += j.dump() + "\n";
    }
    write_file(good_ = dir_.file("good.jsonl"), good);
    write_file(noise_ = dir_.file("noise.jsonl"), noise);
    policy_ = dir_.file("policy");
    auto fit = run_cli("fit " + good_ + " -o " + policy_ + " -q --no-report --target 0.8" +
                       testing::fast_zoo());
    ASSERT_EQ(fit.exit_code, 0) << fit.err;
  }
  json versions() const {
    auto r = run_cli("versions " + policy_ + " --json");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }
  std::string served_version() const {
    return json::parse(read_file(policy_ + "/manifest.json"))["policy_version"];
  }
  std::string version_of(int n) const {
    return json::parse(
        read_file(policy_ + "/versions/" + std::to_string(n) + "/manifest.json"))["policy_version"];
  }

  TempDir dir_;
  std::string good_, noise_, policy_;
};

TEST_F(CliVersions, ARefusedUpdateIsWrittenButTheGoodPolicyKeepsServing) {
  const std::string v1 = served_version();
  // The LLM's labels changed (here: to noise): nothing can be certified.
  auto up = run_cli("update " + policy_ + " --no-db --no-report --traces " + noise_);
  EXPECT_EQ(up.exit_code, 4) << up.out << up.err;
  EXPECT_NE(up.out.find("version 2 is NOT active, version 1 stays active"), std::string::npos)
      << up.out;
  EXPECT_NE(up.out.find("tracer rollback"), std::string::npos) << up.out;
  EXPECT_EQ(served_version(), v1);
  auto p = run_cli("predict " + policy_ + " 'my card has not arrived'");
  ASSERT_EQ(p.exit_code, 0) << p.err;

  const json v = versions();
  EXPECT_EQ(v["active"], 1);
  ASSERT_EQ(v["versions"].size(), 2u);
  EXPECT_EQ(v["versions"][0]["event"], "fit");
  EXPECT_EQ(v["versions"][1]["event"], "update");
  EXPECT_FALSE(v["versions"][1]["deployed"].get<bool>());
  EXPECT_FALSE(v["versions"][1]["activated_when_written"].get<bool>());
  EXPECT_NE(v["versions"][1]["reason"].get<std::string>().find("nothing was certified"),
            std::string::npos);
  const json h = json::parse(read_file(policy_ + "/history.json"));
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[1]["version"], 2);
  EXPECT_FALSE(h[1]["activated"].get<bool>());

  // The table says the same in words.
  auto table = run_cli("versions " + policy_);
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("ACTIVE"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("not activated"), std::string::npos) << table.out;
}

TEST_F(CliVersions, RollbackActivatesAVersionThatLoadsAndSaysSo) {
  const std::string v1 = served_version();
  auto second = run_cli("fit " + good_ + " -o " + policy_ + " -q --no-report --target 0.85" +
                        testing::fast_zoo());
  ASSERT_TRUE(second.exit_code == 0 || second.exit_code == 4) << second.err;
  auto forced =
      run_cli("update " + policy_ + " -q --no-db --no-report --promote always --traces " + noise_);
  EXPECT_EQ(forced.exit_code, 4) << forced.err;
  EXPECT_EQ(served_version(), version_of(3));
  // Back to the version active before (2), then to 1 by number.
  auto back = run_cli("rollback " + policy_);
  EXPECT_EQ(back.exit_code, 0) << back.err;
  EXPECT_NE(back.out.find("version 2"), std::string::npos) << back.out;
  EXPECT_EQ(served_version(), version_of(2));
  auto one = run_cli("rollback " + policy_ + " 1");
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(served_version(), v1);
  auto same = run_cli("rollback " + policy_ + " 1");
  EXPECT_EQ(same.exit_code, 0);
  EXPECT_NE(same.out.find("already active"), std::string::npos) << same.out;
  const json h = json::parse(read_file(policy_ + "/history.json"));
  ASSERT_EQ(h.size(), 5u);  // three versions, two rollbacks
  EXPECT_EQ(h[3]["event"], "rollback");
  EXPECT_EQ(h[3]["version"], 2);
  EXPECT_EQ(h[3]["previous_active"], 3);
  EXPECT_EQ(h[4]["version"], 1);

  // Errors: a version that does not exist, one that does not load, a folder without versions.
  auto missing = run_cli("rollback " + policy_ + " 9");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("tracer versions"), std::string::npos) << missing.err;
  write_file(policy_ + "/versions/2/model.bin", "garbage");
  auto broken = run_cli("rollback " + policy_ + " 2");
  EXPECT_EQ(broken.exit_code, 3) << broken.err;
  EXPECT_NE(broken.err.find("versions/2/model.bin"), std::string::npos) << broken.err;
  EXPECT_EQ(served_version(), v1);  // nothing changed
  fs::create_directory(dir_.file("empty"));
  auto empty = run_cli("rollback " + dir_.file("empty"));
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_NE(empty.err.find("no versions"), std::string::npos) << empty.err;
  auto usage = run_cli("rollback " + policy_ + " zero");
  EXPECT_EQ(usage.exit_code, 2);
}

TEST_F(CliVersions, KeepPrunesOldVersionsButNeverTheActiveOne) {
  for (int i = 0; i < 3; ++i) {
    auto r = run_cli("update " + policy_ + " -q --no-db --no-report --promote never --keep 2");
    EXPECT_EQ(r.exit_code, 5) << r.err;  // certified, not activated
  }
  json v = versions();
  EXPECT_EQ(v["active"], 1);
  std::vector<int> left;
  for (const auto& r : v["versions"]) left.push_back(r["version"]);
  EXPECT_EQ(left, (std::vector<int>{1, 3, 4}));
  auto pruned = run_cli("versions " + policy_ + " --keep 1 --json");
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  v = json::parse(pruned.out);
  EXPECT_EQ(v["pruned"], (json{3}));
  EXPECT_EQ(v["versions"].size(), 2u);  // the newest and the active one
}

TEST_F(CliVersions, AFolderFromBeforeVersionsIsAdoptedAsVersionOne) {
  // Flatten the folder as an older tracer wrote it: regular files, no versions.
  const std::string flat = dir_.file("flat");
  fs::create_directory(flat);
  for (const char* f : {"model.bin", "manifest.json", "frontier.json", "history.json"})
    fs::copy_file(policy_ + "/" + f, flat + "/" + f);
  const std::string v1 = json::parse(read_file(flat + "/manifest.json"))["policy_version"];
  ASSERT_EQ(run_cli("predict " + flat + " hello").exit_code, 0);
  EXPECT_TRUE(json::parse(run_cli("versions " + flat + " --json").out)["versions"].empty());
  auto up = run_cli("update " + flat + " --no-db --no-report --promote never");
  EXPECT_EQ(up.exit_code, 5) << up.err;
  EXPECT_NE(up.err.find("it is now version 1"), std::string::npos) << up.err;
  EXPECT_EQ(json::parse(read_file(flat + "/manifest.json"))["policy_version"], v1);
  EXPECT_TRUE(fs::is_symlink(flat + "/manifest.json"));
  EXPECT_EQ(json::parse(run_cli("versions " + flat + " --json").out)["versions"].size(), 2u);
}

TEST_F(CliVersions, UpdateAndRollbackReloadARunningServerOnlyWhenTheActiveVersionChanges) {
  serve::ServeOptions o;
  o.policy_dir = policy_;
  o.port = 0;
  o.threads = 2;
  testing::RunningServer server(o);
  auto c = server.client();
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port());
  const std::string v1 = served_version();
  auto policy_on_server = [&] {
    return testing::body(c->Get("/v1/policy"))["policy_version"].get<std::string>();
  };
  // Refused: not activated, so not reloaded (a dead URL would fail loudly if it were called).
  auto kept = run_cli("update " + policy_ + " --no-db --no-report --traces " + noise_ +
                      " --reload http://127.0.0.1:9");
  EXPECT_EQ(kept.exit_code, 4) << kept.err;
  EXPECT_NE(kept.out.find("not reloading"), std::string::npos) << kept.out;
  auto to2 = run_cli("rollback " + policy_ + " 2 --reload " + url);
  EXPECT_EQ(to2.exit_code, 0) << to2.err;
  EXPECT_EQ(policy_on_server(), version_of(2));
  json d = testing::body(
      c->Post("/v1/route", R"({"text":"my card has not arrived"})", "application/json"));
  EXPECT_EQ(d["decision"], "deferred");
  auto to1 = run_cli("rollback " + policy_ + " --reload " + url);
  EXPECT_EQ(to1.exit_code, 0) << to1.err;
  EXPECT_EQ(policy_on_server(), v1);
}

}  // namespace
}  // namespace tracer
