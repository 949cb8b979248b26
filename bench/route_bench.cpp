// Route benchmark (issue: serve). Routes every Banking77 test text in-process through a policy fit
// on Banking77 train (or loaded with --policy): latency per text (p50/p90/p99/max), single-thread
// throughput and 2-thread throughput (each thread with its own scratch, one shared Router).
// Budgets (DESIGN.md): p50 <= 20 us, p99 <= 100 us. Writes bench/results/route_bench.json.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

#include "bench_util.hpp"
#include "fit/fitter.hpp"
#include "io/traces.hpp"
#include "runtime/router.hpp"

using namespace tracer;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Texts routed per second by `threads` threads sharing `router`, each routing all texts `passes`
// times.
double throughput(const Router& router, const std::vector<std::string>& texts, int threads,
                  int passes) {
  std::vector<std::thread> pool;
  std::vector<size_t> handled(threads, 0);
  auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      RouteScratch s = router.make_scratch();
      for (int p = 0; p < passes; ++p)
        for (const auto& text : texts) handled[t] += router.route(text, s).handled;
    });
  for (auto& th : pool) th.join();
  return static_cast<double>(texts.size()) * passes * threads / since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Route benchmark: in-process latency per text and throughput"};
  std::string train_path = std::string(TRACER_SOURCE_DIR) + "/data/banking77/train.jsonl";
  std::string test_path = std::string(TRACER_SOURCE_DIR) + "/data/banking77/test.jsonl";
  std::string policy_dir;
  std::string out = bench::default_result_path("route_bench");
  std::string zoo;
  int passes = 5;
  app.add_option("--train", train_path);
  app.add_option("--test", test_path);
  app.add_option("--policy", policy_dir, "Load this policy folder instead of fitting on --train");
  app.add_option("--zoo", zoo, "Comma-separated zoo for the fit (default: the default zoo)");
  app.add_option("--passes", passes, "Passes over the test texts per measurement");
  app.add_option("--json-out", out);
  CLI11_PARSE(app, argc, argv);

  TraceSet test = read_traces(test_path);
  std::vector<std::string> texts;
  for (const auto& t : test.traces) texts.push_back(t.input);
  nlohmann::json result;

  auto t_load = Clock::now();
  std::unique_ptr<Router> router;
  if (!policy_dir.empty()) {
    router = std::make_unique<Router>(Router::load(policy_dir));
    result["policy"] = policy_dir;
  } else {
    FitOptions fo;
    if (!zoo.empty()) {
      std::stringstream ss(zoo);
      for (std::string z; std::getline(ss, z, ',');) fo.zoo.push_back(z);
    }
    Progress quiet(false);
    FitResult fit = fit_policy(read_traces(train_path), fo, quiet);
    router = std::make_unique<Router>(std::move(fit.policy), fit.manifest);
    result["train"] = train_path;
  }
  double load_s = since(t_load);
  result["fit_or_load_seconds"] = load_s;
  result["method"] = method_name(router->policy().method);
  result["labels"] = router->policy().labels.size();
  result["test_texts"] = texts.size();
  std::printf("policy: %s, %zu labels, %s in %.1f s; %zu test texts\n",
              method_name(router->policy().method).c_str(), router->policy().labels.size(),
              policy_dir.empty() ? "fit" : "loaded", load_s, texts.size());

  // Latency per call, after one warm-up pass so scratch buffers have grown.
  RouteScratch s = router->make_scratch();
  size_t handled = 0, agree = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    RouteResult r = router->route(texts[i], s);
    if (r.handled) {
      ++handled;
      agree += router->label_name(r.label) == test.traces[i].teacher;
    }
  }
  std::vector<double> us;
  us.reserve(texts.size() * passes);
  long label_sum = 0;  // uses every result
  for (int p = 0; p < passes; ++p)
    for (const auto& text : texts) {
      auto t0 = Clock::now();
      RouteResult r = router->route(text, s);
      us.push_back(since(t0) * 1e6);
      label_sum += r.label;
    }
  double p50 = bench::percentile(us, 0.50), p90 = bench::percentile(us, 0.90),
         p99 = bench::percentile(us, 0.99), mx = bench::percentile(us, 1.0);
  double mean = 0;
  for (double v : us) mean += v;
  mean /= static_cast<double>(us.size());
  // The known-input check alone (normalise, hash, binary search), paid by every handled request:
  // on the test texts (mostly misses) and on the train texts (hits when the policy was fit here).
  auto lookup_p50 = [&](const std::vector<std::string>& list) {
    std::vector<double> t;
    t.reserve(list.size());
    const Policy& pol = router->policy();
    for (const auto& text : list) {
      auto t0 = Clock::now();
      label_sum += pol.known_label(known_input_key(*pol.featurizer, text));
      t.push_back(since(t0) * 1e6);
    }
    return bench::percentile(t, 0.5);
  };
  std::vector<std::string> train_texts;
  if (policy_dir.empty())
    for (const auto& t : read_traces(train_path).traces) train_texts.push_back(t.input);
  const double lookup_miss = lookup_p50(texts);
  const double lookup_hit = train_texts.empty() ? 0 : lookup_p50(train_texts);
  double tput1 = throughput(*router, texts, 1, passes);
  double tput2 = throughput(*router, texts, 2, passes);

  std::printf("\n%-28s %10s %8s\n", "measure", "value", "budget");
  std::printf("%-28s %10.1f %8s\n", "latency p50 (us)", p50, "<= 20");
  std::printf("%-28s %10.1f %8s\n", "latency p90 (us)", p90, "");
  std::printf("%-28s %10.1f %8s\n", "latency p99 (us)", p99, "<= 100");
  std::printf("%-28s %10.1f %8s\n", "latency max (us)", mx, "");
  std::printf("%-28s %10.1f %8s\n", "latency mean (us)", mean, "");
  std::printf("%-28s %10.2f %8s\n", "known-input lookup p50 (us)", lookup_miss, "");
  if (!train_texts.empty())
    std::printf("%-28s %10.2f %8s\n", "  on train texts (hits)", lookup_hit, "");
  std::printf("%-28s %10.0f %8s\n", "throughput 1 thread (/s)", tput1, "");
  std::printf("%-28s %10.0f %8s\n", "throughput 2 threads (/s)", tput2, "");
  double coverage = static_cast<double>(handled) / texts.size();
  double agreement = handled ? static_cast<double>(agree) / handled : 0;
  std::printf("%-28s %10.3f\n%-28s %10.3f\n", "test coverage", coverage, "test agreement",
              agreement);

  result["latency_us"] = {{"p50", p50}, {"p90", p90}, {"p99", p99}, {"max", mx}, {"mean", mean}};
  result["throughput_per_s"] = {{"threads_1", tput1}, {"threads_2", tput2}};
  result["known_inputs"] = router->policy().known_inputs.size();
  result["known_input_lookup_p50_us"] = {
      {"test_texts", lookup_miss},
      {"train_texts", train_texts.empty() ? nlohmann::json() : nlohmann::json(lookup_hit)}};
  result["test_coverage"] = coverage;
  result["test_agreement"] = agreement;
  result["budgets"] = {{"p50_us", 20}, {"p99_us", 100}};
  result["within_budget"] = p50 <= 20 && p99 <= 100;
  result["label_checksum"] = label_sum;
  result["hardware_threads"] = std::thread::hardware_concurrency();
  std::printf("\nwrote %s\n", bench::write_result(out, result).c_str());
  return 0;
}
