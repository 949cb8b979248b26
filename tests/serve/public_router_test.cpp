// The public embedding header include/tracer/router.hpp agrees with the internal router and is
// safe to share between threads.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <thread>

#include "fit/fitter.hpp"
#include "io/traces.hpp"
#include "runtime/router.hpp"
#include "test_util.hpp"
#include "tracer/router.hpp"

namespace tracer {
namespace {

using nlohmann::json;

// Fits a small Banking77 policy (6 labels) into dir/policy; returns the test texts to route.
std::vector<std::string> fit_small_policy(const testing::TempDir& dir) {
  std::ifstream in(testing::source_path("data/banking77/train.jsonl"));
  std::map<std::string, int> seen;
  std::string line, out;
  while (std::getline(in, line)) {
    std::string t = json::parse(line)["teacher"];
    if (!seen.count(t) && seen.size() >= 6) continue;
    if (seen[t]++ < 60) out += line + "\n";
  }
  testing::write_file(dir.file("train.jsonl"), out);
  FitOptions fo;
  fo.zoo = {"complement_nb"};
  fo.target = 0.8;
  fo.ensemble_members = 0;
  Progress quiet(false);
  FitResult r = fit_policy(read_traces(dir.file("train.jsonl")), fo, quiet);
  write_artifact(dir.file("policy"), r);
  std::vector<std::string> texts;
  std::ifstream test(testing::source_path("data/banking77/test.jsonl"));
  while (std::getline(test, line) && texts.size() < 200)
    texts.push_back(json::parse(line)["input"].get<std::string>());
  texts.push_back("");
  texts.push_back("zzqx vvkw plorp");
  return texts;
}

TEST(PublicRouter, MatchesTheInternalRouterAndIsThreadSafe) {
  testing::TempDir dir;
  std::vector<std::string> texts = fit_small_policy(dir);
  auto router = api::Router::load(dir.file("policy"));
  Router internal = Router::load(dir.file("policy"));
  RouteScratch s = internal.make_scratch();
  EXPECT_EQ(router.labels().size(), 6u);
  EXPECT_EQ(router.policy_version(), internal.policy().policy_version);
  EXPECT_FALSE(router.policy_version().empty());

  std::vector<api::Decision> serial;
  size_t handled = 0, deferred = 0;
  for (const auto& t : texts) {
    api::Decision d = router.route(t);
    RouteResult r = internal.route(t, s);
    EXPECT_EQ(d.label, internal.label_name(r.label)) << t;
    EXPECT_EQ(d.handled, r.handled) << t;
    EXPECT_EQ(d.decision, r.handled ? "handled" : "deferred");
    EXPECT_FLOAT_EQ(d.accept_score, r.accept_score);
    EXPECT_FLOAT_EQ(d.probability, r.probability);
    EXPECT_EQ(d.reason, reason_name(r.reason));
    EXPECT_EQ(d.reason.empty(), d.handled);
    (d.handled ? handled : deferred)++;
    serial.push_back(d);
  }
  // Both paths are exercised (the gibberish text at least is deferred).
  EXPECT_GT(handled, 0u);
  EXPECT_GT(deferred, 0u);

  // Four threads share one router; every answer matches the serial one.
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round)
        for (size_t i = t; i < texts.size(); i += 2) {
          api::Decision d = router.route(texts[i]);
          if (d.label != serial[i].label || d.handled != serial[i].handled ||
              d.accept_score != serial[i].accept_score)
            ++mismatches[t];
        }
    });
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);

  // Moves keep working.
  api::Router moved = std::move(router);
  EXPECT_EQ(moved.route(texts[0]).label, serial[0].label);
}

TEST(PublicRouter, MissingFolderIsAClearError) {
  testing::TempDir dir;
  try {
    api::Router::load(dir.file("nope"));
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tracer fit"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tracer
