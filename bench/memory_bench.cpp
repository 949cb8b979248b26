// Memory-tier benchmark (issue 16): heavy-tailed repeated traffic over LLM-labelled Banking77.
//
// Replay: the distinct qwen3_8b-labelled Banking77 texts (train + test) in a seeded random order
// get Zipf(1.1) popularity; 16,000 calls are drawn; the first 8,000 are the logged traces a
// policy is fit on (target alpha), the other 8,000 are fresh traffic routed by it. Reported per
// seed: coverage of the fresh calls, agreement of handled calls with the LLM, the share answered
// from memory, with the memory tier on and off.
//
// Noisy teacher: every call (logged and fresh) has its label replaced by a uniformly random label
// with probability 0.10, so the LLM disagrees with itself on repeats; many seeds, violations
// counted as in the validity re-splits (raw: handled agreement < alpha; significant: its
// one-sided 95% Clopper–Pearson upper bound < alpha).
//
// Lookup: the router's cost for a memory hit and a miss (ns per call, p50 and p99 over batches).
//
//   build/memory_bench [--seeds 5] [--noisy-seeds 100] [--json-out FILE]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "bench_util.hpp"
#include "fit/fitter.hpp"
#include "gate/bounds.hpp"
#include "io/traces.hpp"
#include "runtime/router.hpp"

using namespace tracer;
using nlohmann::json;

namespace {

struct Pool {
  std::vector<Trace> distinct;  // one trace per distinct text, with its LLM label
  std::vector<std::string> labels;
};

Pool load_pool(const std::string& dir) {
  Pool p;
  std::unordered_set<std::string> seen;
  std::set<std::string> labels;
  for (const char* f : {"train.jsonl", "test.jsonl"}) {
    TraceSet s = read_traces(dir + "/" + f);
    for (auto& t : s.traces)
      if (seen.insert(t.input).second) {
        labels.insert(t.teacher);
        p.distinct.push_back(t);
      }
  }
  p.labels.assign(labels.begin(), labels.end());
  return p;
}

TraceSet to_set(const std::vector<Trace>& calls, const std::vector<std::string>& labels) {
  TraceSet s;
  std::map<std::string, int> idx;
  for (const auto& t : calls) idx[t.teacher] = 0;
  for (auto& [l, i] : idx) i = static_cast<int>(s.labels.size()), s.labels.push_back(l);
  for (const auto& t : calls) s.y.push_back(idx[t.teacher]);
  s.traces = calls;
  (void)labels;
  return s;
}

// 16,000 calls of Zipf(1.1) traffic; with `noise`, each call's label is replaced by a uniformly
// random label with that probability.
std::vector<Trace> draw_calls(const Pool& pool, size_t n, uint64_t seed, double noise) {
  std::mt19937_64 rng(seed);
  std::vector<size_t> order(pool.distinct.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<double> w(order.size());
  for (size_t k = 0; k < w.size(); ++k) w[k] = std::pow(double(k + 1), -1.1);
  std::discrete_distribution<size_t> zipf(w.begin(), w.end());
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<Trace> calls;
  calls.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Trace t = pool.distinct[order[zipf(rng)]];
    if (noise > 0 && u(rng) < noise) t.teacher = pool.labels[rng() % pool.labels.size()];
    calls.push_back(std::move(t));
  }
  return calls;
}

struct Replay {
  bool ok = false;
  std::string error;
  bool gate_deployed = false, memory_certified = false;
  double coverage = 0, memory_share = 0, agreement = 0, fit_seconds = 0;
  size_t handled = 0, agreed = 0, repeats = 0;
  double self_consistency = 0, memory_bound = 0;
};

Replay replay(const Pool& pool, uint64_t seed, double noise, double alpha, bool memory,
              const std::vector<std::string>& zoo, int threads, size_t logged, size_t fresh) {
  Replay r;
  std::vector<Trace> calls = draw_calls(pool, logged + fresh, seed, noise);
  std::vector<Trace> log(calls.begin(), calls.begin() + static_cast<long>(logged));
  FitOptions fo;
  fo.target = alpha;
  fo.threads = threads;
  fo.zoo = zoo;
  fo.seed = seed;
  fo.memory.enabled = memory;
  try {
    Progress quiet(false);
    auto t0 = std::chrono::steady_clock::now();
    FitResult f = fit_policy(to_set(log, pool.labels), fo, quiet);
    r.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.gate_deployed = f.manifest["gate"]["deployed"];
    r.memory_certified = f.memory.certified;
    if (f.memory.certified) {
      const MemoryStep& s = f.memory.steps[static_cast<size_t>(f.memory.served_step)];
      r.self_consistency = double(s.agreed) / double(s.hits);
      r.memory_bound = s.bound;
    }
    Router router(std::move(f.policy), std::move(f.manifest));
    RouteScratch scratch = router.make_scratch();
    std::unordered_set<std::string> logged_inputs;
    for (const auto& t : log) logged_inputs.insert(t.input);
    size_t from_memory = 0;
    for (size_t i = logged; i < calls.size(); ++i) {
      r.repeats += logged_inputs.count(calls[i].input);
      RouteResult d = router.route(calls[i].input, scratch);
      if (!d.handled) continue;
      ++r.handled;
      from_memory += d.stage == 0;
      r.agreed += router.label_name(d.label) == calls[i].teacher;
    }
    r.coverage = double(r.handled) / double(fresh);
    r.memory_share = double(from_memory) / double(fresh);
    r.agreement = r.handled ? double(r.agreed) / double(r.handled) : 1;
    r.ok = true;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

json replay_json(const Replay& r, uint64_t seed) {
  return json{{"seed", seed},
              {"ok", r.ok},
              {"error", r.error},
              {"gate_deployed", r.gate_deployed},
              {"memory_certified", r.memory_certified},
              {"coverage", r.coverage},
              {"memory_share", r.memory_share},
              {"agreement", r.agreement},
              {"handled", r.handled},
              {"agreed", r.agreed},
              {"fresh_repeat_share", double(r.repeats) / 8000.0},
              {"self_consistency", r.self_consistency},
              {"memory_bound", r.memory_bound},
              {"fit_seconds", r.fit_seconds}};
}

// ns per route() call: p50 and p99 over batches of 1,000 calls.
std::pair<double, double> route_cost(const Router& router, const std::vector<std::string>& texts) {
  RouteScratch scratch = router.make_scratch();
  std::vector<double> per_call;
  size_t sink = 0;
  for (int rep = 0; rep < 200; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < 1000; ++i) sink += router.route(texts[i % texts.size()], scratch).stage;
    per_call.push_back(
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
        1000);
  }
  if (sink == 42) std::printf(" ");
  return {bench::percentile(per_call, 0.5), bench::percentile(per_call, 0.99)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Memory-tier benchmark (issue 16): Zipf-repeated qwen3_8b Banking77 traffic"};
  std::string data = bench::shared_data_dir();
  std::string out = bench::default_result_path("memory_bench");
  int seeds = 5, noisy_seeds = 100, threads = 2;
  double alpha = 0.90, noise = 0.10, noisy_alpha = 0.85;
  std::string noisy_zoo = "logreg_strong,linear_svm";
  app.add_option("--data", data, "Folder holding banking77_open_intent_ollama/");
  app.add_option("--seeds", seeds, "Seeds of the deterministic replay (memory on and off)");
  app.add_option("--noisy-seeds", noisy_seeds, "Seeds of the noisy-teacher replay (0: skip)");
  app.add_option("--noise", noise, "Share of calls relabelled at random in the noisy replay");
  app.add_option("--noisy-zoo", noisy_zoo,
                 "Surrogates of the noisy replay's fits (a fast zoo keeps 100 fits short; the "
                 "certificate's honesty does not depend on it)");
  app.add_option("--alpha", alpha, "Target agreement of the deterministic replay");
  app.add_option("--noisy-alpha", noisy_alpha,
                 "Target agreement of the noisy replay (at 0.90 the LLM's self-consistency, "
                 "0.90 + 0.10/77, leaves nothing to certify: every tier refuses, which tests "
                 "nothing)");
  app.add_option("--threads", threads, "Fit threads");
  app.add_option("--json-out", out);
  CLI11_PARSE(app, argc, argv);

  const Pool pool = load_pool(data + "/banking77_open_intent_ollama/qwen3_8b");
  std::printf("pool: %zu distinct texts, %zu labels; 8000 logged + 8000 fresh calls, Zipf(1.1)\n",
              pool.distinct.size(), pool.labels.size());
  json result{{"alpha", alpha}, {"logged", 8000}, {"fresh", 8000}, {"zipf_exponent", 1.1}};

  // 1. Deterministic replay, memory on and off.
  std::printf("\nReplay (alpha %.2f): fresh-call coverage and agreement on handled calls\n", alpha);
  std::printf("%5s %7s | %8s %8s %8s %7s | %8s %8s %7s\n", "seed", "repeat", "cov", "mem", "agr",
              "fit_s", "cov_off", "agr_off", "fit_s");
  json det = json::array();
  for (int s = 1; s <= seeds; ++s) {
    Replay on = replay(pool, uint64_t(s), 0, alpha, true, {}, threads, 8000, 8000);
    Replay off = replay(pool, uint64_t(s), 0, alpha, false, {}, threads, 8000, 8000);
    std::printf("%5d %7.3f | %8.3f %8.3f %8.4f %7.1f | %8.3f %8.4f %7.1f %s%s\n", s,
                double(on.repeats) / 8000, on.coverage, on.memory_share, on.agreement,
                on.fit_seconds, off.coverage, off.agreement, off.fit_seconds,
                on.ok ? "" : on.error.c_str(), off.ok ? "" : off.error.c_str());
    std::fflush(stdout);
    det.push_back({{"memory_on", replay_json(on, uint64_t(s))},
                   {"memory_off", replay_json(off, uint64_t(s))}});
    result["replay"] = det;
    bench::write_result(out, result);
  }

  // 2. Noisy teacher: honesty over many seeds.
  if (noisy_seeds > 0) {
    std::vector<std::string> zoo;
    for (size_t b = 0, e; b <= noisy_zoo.size(); b = e + 1) {
      e = noisy_zoo.find(',', b);
      if (e == std::string::npos) e = noisy_zoo.size();
      if (e > b) zoo.push_back(noisy_zoo.substr(b, e - b));
    }
    int certified = 0, raw = 0, sig = 0, mem_cert = 0, errors = 0;
    double cov_sum = 0, agr_sum = 0, mem_sum = 0, sc_sum = 0;
    json runs = json::array();
    std::printf(
        "\nNoisy teacher (%.0f%% of calls relabelled at random), alpha %.2f, %d seeds, "
        "zoo %s\n",
        noise * 100, noisy_alpha, noisy_seeds, noisy_zoo.c_str());
    for (int s = 1; s <= noisy_seeds; ++s) {
      Replay r =
          replay(pool, uint64_t(1000 + s), noise, noisy_alpha, true, zoo, threads, 8000, 8000);
      runs.push_back(replay_json(r, uint64_t(1000 + s)));
      if (!r.ok) {
        ++errors;
        continue;
      }
      if (r.handled == 0) continue;
      ++certified;
      mem_cert += r.memory_certified;
      cov_sum += r.coverage;
      agr_sum += r.agreement;
      mem_sum += r.memory_share;
      sc_sum += r.self_consistency;
      raw += r.agreement < noisy_alpha;
      sig += clopper_pearson_upper(int(r.handled), int(r.agreed), 0.95) < noisy_alpha;
      std::fprintf(stderr, "noisy seed %d: cov %.3f mem %.3f agr %.4f sc %.4f%s\n", s, r.coverage,
                   r.memory_share, r.agreement, r.self_consistency,
                   r.agreement < noisy_alpha ? "  (below alpha)" : "");
    }
    json summary{{"seeds", noisy_seeds},
                 {"alpha", noisy_alpha},
                 {"noise", noise},
                 {"zoo", zoo},
                 {"runs_with_handled_calls", certified},
                 {"memory_certified_runs", mem_cert},
                 {"raw_violations", raw},
                 {"significant_violations", sig},
                 {"errors", errors},
                 {"mean_coverage", certified ? cov_sum / certified : 0},
                 {"mean_memory_share", certified ? mem_sum / certified : 0},
                 {"mean_agreement", certified ? agr_sum / certified : 0},
                 {"mean_self_consistency_memory", mem_cert ? sc_sum / mem_cert : 0},
                 {"runs", runs}};
    std::printf("%8s %8s %6s %6s %7s %8s %8s %8s\n", "handled", "mem_cert", "raw_v", "sig_v",
                "errors", "mean_cov", "mean_mem", "mean_agr");
    std::printf("%8d %8d %6d %6d %7d %8.3f %8.3f %8.4f\n", certified, mem_cert, raw, sig, errors,
                summary["mean_coverage"].get<double>(), summary["mean_memory_share"].get<double>(),
                summary["mean_agreement"].get<double>());
    result["noisy"] = summary;
    bench::write_result(out, result);
  }

  // 3. Lookup cost on a policy fit on the seed-1 log.
  {
    std::vector<Trace> calls = draw_calls(pool, 8000, 1, 0);
    FitOptions fo;
    fo.target = alpha;
    fo.threads = threads;
    fo.zoo = {"logreg_strong"};
    Progress quiet(false);
    FitResult f = fit_policy(to_set(calls, pool.labels), fo, quiet);
    const size_t entries = f.policy.memory_inputs.size();
    Router router(std::move(f.policy), std::move(f.manifest));
    RouteScratch scratch = router.make_scratch();
    std::vector<std::string> hits, misses;
    std::unordered_set<std::string> logged;
    for (const auto& t : calls) logged.insert(t.input);
    for (const auto& t : calls)
      if (router.route(t.input, scratch).stage == 0) hits.push_back(t.input);
    for (const auto& t : pool.distinct)
      if (!logged.count(t.input)) misses.push_back(t.input);
    auto [hit50, hit99] = route_cost(router, hits);
    auto [miss50, miss99] = route_cost(router, misses);
    const double bytes = double(sizeof(uint64_t) + sizeof(int32_t));
    std::printf(
        "\nLookup (%zu entries): memory hit %.0f ns p50, %.0f ns p99; miss (full route) "
        "%.0f ns p50, %.0f ns p99; %.0f bytes per entry (8-byte key + 4-byte label)\n",
        entries, hit50, hit99, miss50, miss99, bytes);
    result["lookup"] = {{"entries", entries},    {"hit_ns_p50", hit50},
                        {"hit_ns_p99", hit99},   {"miss_ns_p50", miss50},
                        {"miss_ns_p99", miss99}, {"bytes_per_entry", bytes}};
  }
  std::printf("wrote %s\n", bench::write_result(out, result).c_str());
  return 0;
}
