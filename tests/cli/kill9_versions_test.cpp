// kill -9 fault injection on a versioned policy folder (docs/versions.md, docs/reliability.md):
// `tracer fit`, `update` and `rollback` are SIGKILLed at random moments (half uniform over the
// command's measured duration, half in its last 30%, where it writes); after every kill the
// folder's active version must load, and the next write must remove every leftover. The
// standalone scripts/kill9_versions.py runs the same experiment for longer.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "runtime/router.hpp"
#include "test_util.hpp"

extern char** environ;

namespace tracer {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Starts the CLI with `args` (stdout and stderr to /dev/null); returns its pid.
pid_t spawn_cli(const std::vector<std::string>& args) {
  std::vector<std::string> all{TRACER_CLI_PATH};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, TRACER_CLI_PATH, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn failed");
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

double run_seconds(const std::vector<std::string>& args) {
  const auto t0 = Clock::now();
  wait_for(spawn_cli(args));
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<std::string> leftovers(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    for (const char* mark : {".staging-", ".trash-", ".tmp.", ".update-traces-"})
      if (name.find(mark) != std::string::npos) out.push_back(e.path().string());
  }
  return out;
}

TEST(KillNineVersions, EveryKillLeavesALoadableActiveVersionAndTheNextWriteCleansUp) {
  testing::TempDir dir;
  // Five Banking77 labels (good) and the same texts with random labels (an update that
  // changes the policy), as scripts/kill9_versions.py.
  std::string good, noise;
  std::mt19937_64 label_rng(3);
  for (const auto& l : testing::banking77_lines(5, 60)) {
    good += l + "\n";
    auto j = nlohmann::json::parse(l);
    j["teacher"] = "L" + std::to_string(label_rng() % 3);
    noise += j.dump() + "\n";
  }
  const std::string g = dir.file("good.jsonl"), n = dir.file("noise.jsonl"), p = dir.file("P");
  testing::write_file(g, good);
  testing::write_file(n, noise);
  const std::vector<std::string> zoo{"--threads", "1",     "--target",
                                     "0.8",       "--zoo", "logreg_strong,complement_nb"};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const std::vector<std::vector<std::string>> ops = {
      with({"fit", g, "-o", p, "-q", "--promote", "always", "--keep", "4"}, zoo),
      {"update", p, "-q", "--no-db", "--threads", "1", "--promote", "always", "--keep", "4",
       "--traces", n},
      {"rollback", p, "-q"}};
  ASSERT_EQ(WEXITSTATUS(wait_for(spawn_cli(with({"fit", g, "-o", p, "-q", "--no-report"}, zoo)))),
            0);
  std::vector<double> seconds;
  for (const auto& op : ops) seconds.push_back(run_seconds(op));

  // Runs until enough kills landed (how many runs that takes depends on the machine's load),
  // with a cap so a machine where nothing can be killed fails rather than loops.
  const int want = testing::sanitized() ? 36 : 210;
  const int max_runs = testing::sanitized() ? 200 : 900;
  std::mt19937_64 rng(20261201);
  std::uniform_real_distribution<double> u(0, 1);
  int runs = 0, killed = 0, unloadable = 0;
  int killed_by[3] = {0, 0, 0};
  auto enough = [&] {
    for (int k = 0; k < 3; ++k)
      if (killed_by[k] < want / 6) return false;
    return killed >= want;
  };
  for (; runs < max_runs && !enough(); ++runs) {
    const int k = runs % 3;
    const double when =
        seconds[static_cast<size_t>(k)] * (u(rng) < 0.5 ? 1.1 * u(rng) : 0.7 + 0.35 * u(rng));
    const pid_t pid = spawn_cli(ops[static_cast<size_t>(k)]);
    std::this_thread::sleep_for(std::chrono::duration<double>(when));
    if (waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      ++killed;
      ++killed_by[k];
    }
    wait_for(pid);
    try {
      Router r = Router::load(p);
      (void)r;
    } catch (const std::exception& e) {
      ++unloadable;
      ADD_FAILURE() << "run " << runs << " (" << ops[static_cast<size_t>(k)][0] << " killed after "
                    << when << " s): the folder does not load: " << e.what();
    }
  }
  std::printf("kill -9: %d runs, %d killed (fit %d, update %d, rollback %d), %d unloadable\n", runs,
              killed, killed_by[0], killed_by[1], killed_by[2], unloadable);
  EXPECT_EQ(unloadable, 0);
  EXPECT_TRUE(enough()) << killed << " kills in " << runs << " runs";
  // The next write removes what killed writers left.
  ASSERT_EQ(WEXITSTATUS(wait_for(spawn_cli(ops[0]))), 0);
  EXPECT_EQ(leftovers(p), std::vector<std::string>{});
}

}  // namespace
}  // namespace tracer
