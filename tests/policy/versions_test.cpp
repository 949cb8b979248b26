// A policy folder's versions: numbering, atomic activation, adoption of flat folders, pruning,
// clean-up after killed writers, and the promotion rule.
#include "policy/versions.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

// A manifest as far as promotion reads it.
json manifest(bool deployed, double target, double coverage, double memory_share = -1) {
  json m{{"gate",
          {{"deployed", deployed},
           {"method", deployed ? "l2d" : "none"},
           {"target", target},
           {"certified", {{"coverage", deployed ? coverage : 0.0}}}}}};
  if (memory_share >= 0) m["memory"] = {{"certified", true}, {"hit_share", memory_share}};
  return m;
}

// Writes a version whose files say which one it is.
int write_version(PolicyFolder& folder, const std::string& tag) {
  auto d = folder.begin_version();
  write_file((d.staging / "model.bin").string(), "model " + tag);
  write_file((d.staging / "manifest.json").string(), json{{"tag", tag}}.dump());
  folder.commit_version(d);
  return d.number;
}

std::string tag_of(const std::string& dir) {
  return json::parse(read_file(dir + "/manifest.json"))["tag"];
}

TEST(HandledShare, CombinesTheMemoryTierAndTheGate) {
  EXPECT_DOUBLE_EQ(handled_share(manifest(true, 0.9, 0.6)), 0.6);
  EXPECT_DOUBLE_EQ(handled_share(manifest(false, 0.9, 0.6)), 0.0);
  EXPECT_DOUBLE_EQ(handled_share(manifest(true, 0.9, 0.5, 0.2)), 0.2 + 0.8 * 0.5);
  EXPECT_DOUBLE_EQ(handled_share(manifest(false, 0.9, 0.5, 0.2)), 0.2);
  EXPECT_DOUBLE_EQ(handled_share(json()), 0.0);
  EXPECT_DOUBLE_EQ(handled_share(json{{"gate", "x"}}), 0.0);
}

TEST(Promotion, KeepsTheBetterCertifiedPolicy) {
  PromotionRule strict;
  strict.max_coverage_drop = 0.0;
  // No active version: anything is activated, so the folder is loadable.
  EXPECT_TRUE(decide_promotion(manifest(false, 0.9, 0), json(), strict).activate);
  // A refusal never replaces a certified policy, whatever the drop allowed.
  PromotionRule loose;
  EXPECT_FALSE(decide_promotion(manifest(false, 0.9, 0), manifest(true, 0.9, 0.5), loose).activate);
  EXPECT_TRUE(decide_promotion(manifest(false, 0.9, 0), manifest(false, 0.9, 0), strict).activate);
  EXPECT_TRUE(decide_promotion(manifest(true, 0.9, 0.1), manifest(false, 0.9, 0), strict).activate);
  // Same target: compared on the share of traffic answered.
  const auto worse = decide_promotion(manifest(true, 0.9, 0.49), manifest(true, 0.9, 0.5), strict);
  EXPECT_FALSE(worse.activate);
  EXPECT_NE(worse.reason.find("49.0%"), std::string::npos) << worse.reason;
  EXPECT_NE(worse.reason.find("--max-coverage-drop"), std::string::npos) << worse.reason;
  EXPECT_TRUE(
      decide_promotion(manifest(true, 0.9, 0.5), manifest(true, 0.9, 0.5), strict).activate);
  PromotionRule two_points;
  two_points.max_coverage_drop = 0.02;
  EXPECT_TRUE(
      decide_promotion(manifest(true, 0.9, 0.485), manifest(true, 0.9, 0.5), two_points).activate);
  EXPECT_FALSE(
      decide_promotion(manifest(true, 0.9, 0.47), manifest(true, 0.9, 0.5), two_points).activate);
  // The memory tier counts: less gate coverage but more traffic answered is better.
  EXPECT_TRUE(
      decide_promotion(manifest(true, 0.9, 0.4, 0.3), manifest(true, 0.9, 0.5), strict).activate);
  // The active version's audit tripped: its guarantee is gone, any certified version replaces
  // it (a refusal still does not).
  PromotionRule tripped = strict;
  tripped.active_audit_tripped = true;
  const auto after_trip =
      decide_promotion(manifest(true, 0.9, 0.2), manifest(true, 0.9, 0.5), tripped);
  EXPECT_TRUE(after_trip.activate);
  EXPECT_NE(after_trip.reason.find("audit tripped"), std::string::npos) << after_trip.reason;
  EXPECT_FALSE(
      decide_promotion(manifest(false, 0.9, 0), manifest(true, 0.9, 0.5), tripped).activate);
  // Another target: not comparable, a certified version is activated.
  EXPECT_TRUE(
      decide_promotion(manifest(true, 0.95, 0.2), manifest(true, 0.9, 0.5), strict).activate);
  // The modes.
  PromotionRule always;
  always.mode = PromotionRule::Mode::kAlways;
  EXPECT_TRUE(decide_promotion(manifest(false, 0.9, 0), manifest(true, 0.9, 0.9), always).activate);
  PromotionRule never;
  never.mode = PromotionRule::Mode::kNever;
  EXPECT_FALSE(decide_promotion(manifest(true, 0.9, 0.9), json(), never).activate);
  EXPECT_EQ(parse_promotion_mode("auto"), PromotionRule::Mode::kAuto);
  EXPECT_THROW(parse_promotion_mode("sometimes"), InputError);
}

TEST(PolicyFolder, NumbersVersionsAndSwitchesTheActiveOneAtomically) {
  TempDir tmp;
  const std::string dir = tmp.file("p");
  PolicyFolder folder(dir, true);
  EXPECT_EQ(folder.active(), 0);
  EXPECT_EQ(resolve_policy_dir(dir), dir);  // nothing versioned yet: the folder itself
  EXPECT_EQ(write_version(folder, "a"), 1);
  EXPECT_EQ(folder.active(), 0);  // written, not active until activated
  EXPECT_EQ(write_version(folder, "b"), 2);
  folder.activate(2);
  EXPECT_EQ(active_version(dir), 2);
  EXPECT_EQ(tag_of(resolve_policy_dir(dir)), "b");
  EXPECT_EQ(tag_of(dir), "b");  // DIR/manifest.json links through DIR/active
  EXPECT_EQ(read_file(dir + "/model.bin"), "model b");
  folder.activate(1);
  EXPECT_EQ(tag_of(dir), "a");
  EXPECT_EQ(fs::read_symlink(dir + "/active"), fs::path("versions/1"));  // relative: movable
  const auto versions = list_versions(dir);
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_TRUE(versions[0].active);
  EXPECT_FALSE(versions[1].active);
  EXPECT_EQ(versions[1].manifest["tag"], "b");
  EXPECT_THROW(folder.activate(7), InputError);
  // A moved folder still resolves.
  const std::string moved = tmp.file("moved");
  fs::rename(dir, moved);
  EXPECT_EQ(tag_of(moved), "a");
}

TEST(PolicyFolder, AdoptsAFlatFolderAsAVersion) {
  TempDir tmp;
  const std::string dir = tmp.file("p");
  fs::create_directory(dir);
  write_file(dir + "/model.bin", "model flat");
  write_file(dir + "/manifest.json", json{{"tag", "flat"}}.dump());
  write_file(dir + "/history.json", "[]");
  PolicyFolder folder(dir, false);
  EXPECT_EQ(folder.adopt_flat_policy(), 1);
  EXPECT_EQ(folder.active(), 1);
  EXPECT_TRUE(fs::is_symlink(dir + "/model.bin"));
  EXPECT_EQ(read_file(dir + "/model.bin"), "model flat");
  EXPECT_EQ(tag_of(dir + "/versions/1"), "flat");
  EXPECT_FALSE(fs::is_symlink(dir + "/history.json"));  // the folder's own log stays
  EXPECT_EQ(folder.adopt_flat_policy(), 0);             // once
}

TEST(PolicyFolder, PrunesTheOldestButNeverTheActiveVersion) {
  TempDir tmp;
  const std::string dir = tmp.file("p");
  PolicyFolder folder(dir, true);
  for (int i = 1; i <= 6; ++i) write_version(folder, std::to_string(i));
  folder.activate(2);
  EXPECT_EQ(folder.prune(3), (std::vector<int>{1, 3}));
  std::vector<int> left;
  for (const auto& v : list_versions(dir)) left.push_back(v.number);
  EXPECT_EQ(left, (std::vector<int>{2, 4, 5, 6}));
  EXPECT_EQ(tag_of(dir), "2");
  EXPECT_EQ(write_version(folder, "7"), 7);  // numbers are never reused
  EXPECT_TRUE(folder.prune(10).empty());
}

TEST(PolicyFolder, CleansWhatKilledWritersLeftBehind) {
  TempDir tmp;
  const std::string dir = tmp.file("p");
  PolicyFolder folder(dir, true);
  write_version(folder, "a");
  folder.activate(1);
  // A process that is gone: a child that exited and was reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  const std::string dead = std::to_string(child), alive = std::to_string(::getppid());
  fs::create_directories(dir + "/versions/.staging-2-" + dead);
  write_file(dir + "/versions/.staging-2-" + dead + "/model.bin", "half");
  fs::create_directories(dir + "/versions/.trash-0-" + dead);
  write_file(dir + "/model.bin.tmp." + dead, "x");
  write_file(dir + "/.update-traces-" + dead + ".jsonl", "x");
  write_file(dir + "/versions/1/report.html.tmp." + dead, "x");
  write_file(dir + "/history.json.tmp." + alive, "a live writer's file");
  write_file(dir + "/notes.txt", "the user's");
  EXPECT_EQ(folder.clean_leftovers(), 5u);
  EXPECT_FALSE(fs::exists(dir + "/versions/.staging-2-" + dead));
  EXPECT_FALSE(fs::exists(dir + "/model.bin.tmp." + dead));
  EXPECT_TRUE(fs::exists(dir + "/history.json.tmp." + alive));
  EXPECT_TRUE(fs::exists(dir + "/notes.txt"));
  EXPECT_EQ(write_version(folder, "b"), 2);  // the staging number is free again
}

TEST(PolicyFolder, SaysWhatToDoWhenTheActiveVersionIsGone) {
  TempDir tmp;
  const std::string dir = tmp.file("p");
  PolicyFolder folder(dir, true);
  write_version(folder, "a");
  folder.activate(1);
  fs::remove_all(dir + "/versions/1");
  try {
    resolve_policy_dir(dir);
    FAIL() << "resolved a missing version";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tracer rollback"), std::string::npos) << e.what();
  }
}

TEST(PolicyFolder, ReplacesAnActiveFolderCopiedByFollowingLinks) {
  TempDir tmp;
  const std::string dir = tmp.file("p");
  {
    PolicyFolder folder(dir, true);
    write_version(folder, "a");
    folder.activate(1);
  }
  const std::string copy = tmp.file("copy");
  fs::copy(dir, copy, fs::copy_options::recursive);  // follows links: `active` becomes a folder
  ASSERT_FALSE(fs::is_symlink(copy + "/active"));
  EXPECT_EQ(tag_of(copy), "a");
  PolicyFolder folder(copy, false);
  EXPECT_EQ(write_version(folder, "b"), 2);
  folder.activate(2);
  EXPECT_TRUE(fs::is_symlink(copy + "/active"));
  EXPECT_EQ(tag_of(copy), "b");
}

}  // namespace
}  // namespace tracer
